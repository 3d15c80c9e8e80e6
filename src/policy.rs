//! Permission rules and the one function that applies them. Pure: no I/O, no protocol, so the same
//! user with the same rules gets the same answer over SFTP, FTP and HTTP.
//!
//! CONTRACT.md: a user's rules are the union of their own and their groups'; for a path the rule
//! with the longest matching path decides (own rules win a tie); no rule means deny. Rule paths
//! are in the user's view (inside `home`).

use std::fmt;

use crate::vfs::VPath;

/// What a request wants to do to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// List a directory (and stat inside it).
    List,
    /// Read a file.
    Read,
    /// Create a new file.
    Write,
    /// Replace an existing file.
    Overwrite,
    /// Delete a file or an empty directory.
    Delete,
    /// Create a directory.
    Mkdir,
    /// Rename (checked on both source and target).
    Rename,
}

impl Action {
    /// Every action, in contract order.
    pub const ALL: [Action; 7] = [
        Action::List,
        Action::Read,
        Action::Write,
        Action::Overwrite,
        Action::Delete,
        Action::Mkdir,
        Action::Rename,
    ];

    /// The config word for this action.
    pub fn word(self) -> &'static str {
        match self {
            Action::List => "list",
            Action::Read => "read",
            Action::Write => "write",
            Action::Overwrite => "overwrite",
            Action::Delete => "delete",
            Action::Mkdir => "mkdir",
            Action::Rename => "rename",
        }
    }

    /// Parses a config word; `"*"` is not accepted (spell the permissions out).
    pub fn parse(word: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.word() == word)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A set of actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionSet(u8);

impl ActionSet {
    /// Every action.
    pub fn all() -> Self {
        Action::ALL.into_iter().collect()
    }

    /// Membership.
    pub fn contains(self, a: Action) -> bool {
        self.0 & a.bit() != 0
    }

    /// Adds one action.
    pub fn insert(&mut self, a: Action) {
        self.0 |= a.bit();
    }

    /// Set union.
    pub fn union(self, other: ActionSet) -> ActionSet {
        ActionSet(self.0 | other.0)
    }

    /// Whether every action of `other` is in this set.
    pub fn contains_all(self, other: ActionSet) -> bool {
        self.0 & other.0 == other.0
    }
}

impl FromIterator<Action> for ActionSet {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Self {
        let mut s = ActionSet::default();
        for a in iter {
            s.insert(a);
        }
        s
    }
}

/// One permission rule, in the user's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Applies to this path and everything under it.
    pub path: VPath,
    /// What it allows.
    pub allow: ActionSet,
    /// The user's own rule (wins a tie against group rules).
    pub own: bool,
}

/// Why an action was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No rule covers the path.
    NoRule,
    /// The deciding rule does not allow the action.
    NotAllowed,
}

/// The answer for one (path, action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refuse.
    Deny(DenyReason),
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn is_allow(self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// Decides `action` on `path` (in the user's view) under `rules`.
///
/// Among the rules whose path is a component-wise prefix of `path`, the longest decides; at equal
/// length own rules beat group rules, and rules of the same standing at the same path are merged.
pub fn decide(rules: &[Rule], path: &VPath, action: Action) -> Decision {
    let mut best: Option<(usize, bool, ActionSet)> = None;
    for rule in rules.iter().filter(|r| path.starts_with(&r.path)) {
        let len = rule.path.depth();
        best = match best {
            None => Some((len, rule.own, rule.allow)),
            Some((blen, bown, ballow)) => {
                if len > blen || (len == blen && rule.own && !bown) {
                    Some((len, rule.own, rule.allow))
                } else if len == blen && rule.own == bown {
                    Some((blen, bown, ballow.union(rule.allow)))
                } else {
                    Some((blen, bown, ballow))
                }
            }
        };
    }
    match best {
        None => Decision::Deny(DenyReason::NoRule),
        Some((_, _, allow)) if allow.contains(action) => Decision::Allow,
        Some(_) => Decision::Deny(DenyReason::NotAllowed),
    }
}

/// Everything `rules` allow at `path`.
pub fn granted(rules: &[Rule], path: &VPath) -> ActionSet {
    Action::ALL
        .into_iter()
        .filter(|a| decide(rules, path, *a).is_allow())
        .collect()
}

/// Whether moving the whole subtree at `top` as one unit keeps every rule inside it: true when
/// each rule strictly below `top` grants at least what `top` grants. A stricter rule below
/// (`/projects/legal` read-only under a writable `/projects`) would stop applying once its
/// files sit under another name, so a directory rename across it must be refused, on the
/// source side and on the target side alike.
pub fn subtree_is_uniform(rules: &[Rule], top: &VPath) -> bool {
    let at_top = granted(rules, top);
    rules
        .iter()
        .filter(|r| r.path != *top && r.path.starts_with(top))
        .all(|r| granted(rules, &r.path).contains_all(at_top))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use proptest::prelude::*;

    fn rule(path: &str, allow: &[Action], own: bool) -> Rule {
        Rule {
            path: VPath::parse(path).unwrap(),
            allow: allow.iter().copied().collect(),
            own,
        }
    }

    /// The contract's example: group `partners` plus acme's own `/outbox` rule.
    fn acme() -> Vec<Rule> {
        vec![
            rule("/outbox", &[List, Read, Delete], true),
            rule("/", &[List, Read], false),
            rule("/inbox", &[List, Read, Write, Mkdir], false),
        ]
    }

    #[test]
    fn contract_example_table() {
        let rules = acme();
        let cases: &[(&str, Action, bool)] = &[
            ("/", List, true),
            ("/", Write, false),
            ("/readme.txt", Read, true),
            ("/readme.txt", Delete, false),
            ("/inbox", List, true),
            ("/inbox/m.csv", Write, true),
            ("/inbox/m.csv", Overwrite, false),
            ("/inbox/sub", Mkdir, true),
            ("/inbox/m.csv", Delete, false),
            ("/inboxes/x", Write, false),
            ("/outbox/inv.pdf", Read, true),
            ("/outbox/inv.pdf", Delete, true),
            ("/outbox/inv.pdf", Write, false),
            ("/outbox", Rename, false),
        ];
        for (path, action, want) in cases {
            let got = decide(&rules, &VPath::parse(path).unwrap(), *action).is_allow();
            assert_eq!(got, *want, "{action} on {path}");
        }
    }

    #[test]
    fn no_rule_is_deny() {
        let rules = vec![rule("/inbox", &[Read], false)];
        assert_eq!(
            decide(&rules, &VPath::parse("/other").unwrap(), Read),
            Decision::Deny(DenyReason::NoRule)
        );
        assert_eq!(
            decide(&[], &VPath::root(), List),
            Decision::Deny(DenyReason::NoRule)
        );
    }

    #[test]
    fn own_rule_wins_a_tie() {
        let rules = vec![
            rule("/data", &[List, Read, Write, Delete], false),
            rule("/data", &[List], true),
        ];
        let p = VPath::parse("/data/x").unwrap();
        assert!(decide(&rules, &p, List).is_allow());
        assert_eq!(
            decide(&rules, &p, Read),
            Decision::Deny(DenyReason::NotAllowed)
        );
    }

    #[test]
    fn group_rules_at_one_path_merge() {
        let rules = vec![rule("/d", &[Read], false), rule("/d", &[Write], false)];
        let p = VPath::parse("/d/f").unwrap();
        assert!(decide(&rules, &p, Read).is_allow());
        assert!(decide(&rules, &p, Write).is_allow());
    }

    #[test]
    fn longer_rule_can_take_away() {
        let rules = vec![rule("/", &Action::ALL, true), rule("/secret", &[], false)];
        assert!(!decide(&rules, &VPath::parse("/secret/x").unwrap(), Read).is_allow());
        assert!(decide(&rules, &VPath::parse("/secretive").unwrap(), Read).is_allow());
    }

    #[test]
    fn a_stricter_rule_below_makes_a_subtree_non_uniform() {
        let rules = vec![
            rule("/", &Action::ALL, true),
            rule("/projects/legal", &[List, Read], true),
            rule("/open/more", &Action::ALL, false),
        ];
        let p = |s: &str| VPath::parse(s).unwrap();
        assert!(!subtree_is_uniform(&rules, &p("/projects")));
        assert!(!subtree_is_uniform(&rules, &p("/")));
        assert!(subtree_is_uniform(&rules, &p("/projects/legal")));
        assert!(subtree_is_uniform(&rules, &p("/p2")));
        // A rule below that grants as much (or more) keeps it uniform.
        assert!(subtree_is_uniform(&rules, &p("/open")));
        assert_eq!(
            granted(&rules, &p("/projects/legal/x")),
            [List, Read].into_iter().collect()
        );
    }

    #[test]
    fn words_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.word()), Some(a));
        }
        assert_eq!(Action::parse("upload"), None);
    }

    proptest! {
        /// Adding a rule for an unrelated subtree never changes a decision elsewhere.
        #[test]
        fn unrelated_rules_do_not_matter(name in "[a-z]{1,6}", action in 0usize..7) {
            let action = Action::ALL[action];
            let base = acme();
            let path = VPath::parse(&format!("/inbox/{name}")).unwrap();
            let mut more = base.clone();
            more.push(rule(&format!("/zz{name}"), &Action::ALL, true));
            prop_assert_eq!(decide(&base, &path, action), decide(&more, &path, action));
        }
    }
}
