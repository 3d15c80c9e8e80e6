//! Validation before commit (`[[validate]]`): an upload whose virtual path matches a rule is
//! checked while it streams (CSV row by row, JSON in a buffer bounded by `max_size_mib`) and
//! becomes visible only if it passes. Every door asks the same [`Rules`] through `vfs::Upload`,
//! so the answer is the same over SFTP, FTP and HTTP.

mod csv;
pub mod json;

use std::sync::Arc;

pub use csv::{Columns, CsvSpec};

use crate::pathglob::PathGlob;

/// Errors reported per refused file (the first ones; the rest are not parsed for).
pub const MAX_DETAILS: usize = 10;

/// Default size limit of a JSON rule: the document is parsed in memory.
pub const DEFAULT_JSON_MAX_MIB: u64 = 16;

/// What a file must be.
#[derive(Debug, Clone)]
pub enum Format {
    /// A JSON document valid against this schema.
    Json(json::Schema),
    /// CSV with this layout.
    Csv(CsvSpec),
    /// Only the size is checked.
    Any,
}

/// One `[[validate]]` rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Which virtual paths it applies to.
    pub glob: PathGlob,
    /// Most bytes a file may have.
    pub max_size: Option<u64>,
    /// What the content must be.
    pub format: Format,
}

/// Why a file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The file exceeded `max_size_mib` (FTP answers 552 for it).
    pub too_large: bool,
    /// The first problems, each naming its line or JSON pointer.
    pub details: Vec<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "validation failed: {}", self.details.join("; "))
    }
}

/// The configured rules, in config order; the first that matches a path applies.
#[derive(Debug, Clone, Default)]
pub struct Rules(Arc<Vec<Rule>>);

impl Rules {
    /// Rules in config order.
    pub fn new(rules: Vec<Rule>) -> Self {
        Self(Arc::new(rules))
    }

    /// The rule for a full virtual path.
    pub fn for_path(&self, path: &str) -> Option<&Rule> {
        self.0.iter().find(|r| r.glob.matches(path))
    }

    /// A check for a file written at `path`, if a rule applies.
    pub fn check(&self, path: &str) -> Option<Check> {
        self.for_path(path).map(|r| Check::new(r.clone()))
    }

    /// Whether some rule could apply to a path at or below `dir` (a directory being moved
    /// there must not bring unchecked files along). Compares the patterns' literal prefixes, so
    /// it errs on the side of yes.
    pub fn may_apply_below(&self, dir: &str) -> bool {
        let dir = dir.trim_end_matches('/');
        self.0.iter().any(|r| {
            let text = r.glob.as_str();
            let lit = text.find(['*', '?', '[', '{']).map_or(text, |i| &text[..i]);
            lit.starts_with(dir) || dir.starts_with(lit.trim_end_matches('/'))
        })
    }

    /// No rules at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

enum State {
    Json(Vec<u8>),
    Csv(Box<csv::CsvCheck>),
    Any,
}

/// One file being checked as it streams.
pub struct Check {
    rule: Rule,
    size: u64,
    state: State,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Check({}, {} bytes)", self.rule.glob.as_str(), self.size)
    }
}

impl Check {
    fn new(rule: Rule) -> Self {
        let state = match &rule.format {
            Format::Json(_) => State::Json(Vec::new()),
            Format::Csv(spec) => State::Csv(Box::new(csv::CsvCheck::new(spec, MAX_DETAILS))),
            Format::Any => State::Any,
        };
        Self {
            rule,
            size: 0,
            state,
        }
    }

    /// The same check from the start (a file written out of order is checked again at
    /// commit, from what was staged).
    pub fn fresh(&self) -> Self {
        Self::new(self.rule.clone())
    }

    /// A refusal if a file reaching `end` bytes is over the limit.
    pub fn refuse_end(&self, end: u64) -> Option<Refusal> {
        let max = self.rule.max_size?;
        (end > max).then(|| Refusal {
            too_large: true,
            details: vec![format!(
                "larger than the {} MiB allowed for {}",
                max / (1024 * 1024),
                self.rule.glob.as_str()
            )],
        })
    }

    /// Takes the next bytes of the file. Refuses at once when the file grows past the limit,
    /// so nothing more is staged or buffered.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), Refusal> {
        self.size += data.len() as u64;
        if let Some(r) = self.refuse_end(self.size) {
            return Err(r);
        }
        match &mut self.state {
            State::Json(buf) => buf.extend_from_slice(data),
            State::Csv(c) => {
                if !c.full() {
                    c.feed(data);
                }
            }
            State::Any => {}
        }
        Ok(())
    }

    /// The verdict on the whole file.
    pub fn finish(self) -> Result<(), Refusal> {
        let details = match (self.state, &self.rule.format) {
            (State::Json(buf), Format::Json(schema)) => json::check(schema, &buf, MAX_DETAILS),
            (State::Csv(mut c), _) => {
                if !c.full() {
                    c.feed(&[]);
                }
                c.errors
            }
            _ => Vec::new(),
        };
        if details.is_empty() {
            Ok(())
        } else {
            Err(Refusal {
                too_large: false,
                details,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(glob: &str, max: Option<u64>, format: Format) -> Rule {
        Rule {
            glob: PathGlob::new(glob).unwrap(),
            max_size: max,
            format,
        }
    }

    #[test]
    fn the_first_matching_rule_applies_and_size_is_refused_early() {
        let rules = Rules::new(vec![
            rule("/in/*.bin", Some(10), Format::Any),
            rule("/in/**", None, Format::Any),
        ]);
        let mut c = rules.check("/in/a.bin").unwrap();
        c.feed(b"12345").unwrap();
        let r = c.feed(b"123456").unwrap_err();
        assert!(r.too_large);
        assert!(rules.check("/out/a.bin").is_none());
        let mut other = rules.check("/in/x/y.txt").unwrap();
        other.feed(&[0; 100]).unwrap();
        other.finish().unwrap();
    }

    #[test]
    fn directories_that_could_hold_checked_files_are_known() {
        let rules = Rules::new(vec![rule("/partners/*/inbox/*.json", None, Format::Any)]);
        assert!(rules.may_apply_below("/partners/acme/inbox"));
        assert!(rules.may_apply_below("/partners"));
        assert!(!rules.may_apply_below("/archive/old"));
    }
}
