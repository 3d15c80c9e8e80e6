//! Key paths (`users[2].groups[0]`) and finding the line they sit on in the original document.

use std::fmt;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A path to a key in the document, printed as `users[2].groups[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// The document root.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path plus a key.
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        Self(v)
    }

    /// This path plus an index.
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        Self(v)
    }

    /// Converts serde_path_to_error's path.
    pub fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        Self(
            path.iter()
                .filter_map(|s| match s {
                    Segment::Map { key } => Some(Seg::Key(key.clone())),
                    Segment::Seq { index } => Some(Seg::Index(*index)),
                    Segment::Enum { .. } | Segment::Unknown => None,
                })
                .collect(),
        )
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write_key(f, k)?;
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A key as TOML writes it: bare when it can be, else quoted (an empty key, or one with a dot
/// or a space, would otherwise vanish or read as several keys).
fn write_key(f: &mut fmt::Formatter<'_>, k: &str) -> fmt::Result {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        f.write_str(k)
    } else {
        write!(f, "{k:?}")
    }
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The byte span of the deepest element of `path` that exists in the document.
pub fn span_of(doc: &Spanned<DeTable<'_>>, path: &KeyPath) -> Option<std::ops::Range<usize>> {
    let mut span: Option<std::ops::Range<usize>> = None;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
    for seg in &path.0 {
        let next: Option<&Spanned<DeValue<'_>>> = match seg {
            Seg::Key(k) => table.and_then(|t| {
                t.iter()
                    .find(|(key, _)| key.get_ref().as_ref() == k.as_str())
                    .map(|(key, v)| {
                        // Tables opened by a header span the whole section; the key names the line.
                        span = Some(key.span());
                        v
                    })
            }),
            Seg::Index(i) => array.and_then(|a| a.get(*i)),
        };
        let Some(v) = next else { break };
        if !matches!(v.get_ref(), DeValue::Table(_)) || matches!(seg, Seg::Index(_)) {
            span = Some(v.span());
        }
        table = None;
        array = None;
        match v.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_paths() {
        let p = KeyPath::root().key("users").index(2).key("groups").index(0);
        assert_eq!(p.to_string(), "users[2].groups[0]");
        // Keys that are not bare are quoted, as TOML writes them (an empty key named nothing).
        let p = KeyPath::root()
            .key("http")
            .key("")
            .key("a.b")
            .key("s3-lake_2");
        assert_eq!(p.to_string(), r#"http.""."a.b".s3-lake_2"#);
    }

    #[test]
    fn finds_lines() {
        let text = "[gateway]\nstate_dir = \"x\"\n\n[[users]]\nname = \"a\"\n[[users]]\nname = \"b\"\ngroups = [\"g\", \"h\"]\n";
        let doc = DeTable::parse(text).unwrap();
        let line = |p: KeyPath| span_of(&doc, &p).map(|s| line_of(text, s.start));
        assert_eq!(
            line(KeyPath::root().key("gateway").key("state_dir")),
            Some(2)
        );
        assert_eq!(
            line(KeyPath::root().key("users").index(1).key("name")),
            Some(7)
        );
        assert_eq!(
            line(KeyPath::root().key("users").index(1).key("groups").index(1)),
            Some(8)
        );
        // A missing key falls back to its parent.
        assert_eq!(
            line(KeyPath::root().key("users").index(1).key("nope")),
            Some(6)
        );
    }
}
