//! Policy evaluation: rules and paths built from the input; decisions are deterministic, a longer
//! matching rule always decides, and adding a rule outside a path never changes its decision.
#![no_main]

use gatehouse::policy::{Action, ActionSet, Rule, decide, granted, subtree_is_uniform};
use gatehouse::vfs::VPath;
use libfuzzer_sys::fuzz_target;

fn path_of(bytes: &[u8]) -> VPath {
    let segs: Vec<String> = bytes
        .iter()
        .take(4)
        .map(|b| format!("{}", (b % 5) as char as u32))
        .collect();
    VPath::parse(&format!("/{}", segs.join("/"))).unwrap_or_else(|_| VPath::root())
}

fuzz_target!(|data: &[u8]| {
    let mut chunks = data.chunks(6);
    let Some(target) = chunks.next() else { return };
    let path = path_of(target);
    let mut rules = Vec::new();
    for c in chunks.take(12) {
        let allow: ActionSet = Action::ALL
            .into_iter()
            .enumerate()
            .filter(|(i, _)| c.first().is_some_and(|b| b & (1 << i) != 0))
            .map(|(_, a)| a)
            .collect();
        rules.push(Rule {
            path: path_of(&c[1.min(c.len())..]),
            allow,
            own: c.len() % 2 == 0,
        });
    }
    for a in Action::ALL {
        let d = decide(&rules, &path, a);
        assert_eq!(d, decide(&rules, &path, a));
        assert_eq!(d.is_allow(), granted(&rules, &path).contains(a));
        // A rule for an unrelated subtree does not change the decision.
        let mut more = rules.clone();
        more.push(Rule {
            path: VPath::parse("/zz-unrelated").unwrap(),
            allow: ActionSet::all(),
            own: true,
        });
        if !path.starts_with(&VPath::parse("/zz-unrelated").unwrap()) {
            assert_eq!(d, decide(&more, &path, a));
        }
    }
    let _ = subtree_is_uniform(&rules, &path);
});
