//! `PathGlob`: a glob over virtual paths, as `[[validate]]` and `[[events]]` write them: `*` (and
//! `?`, `[a-z]`, `{a,b}`) stay inside one segment, `**` spans any depth. Built on `globset` with
//! `literal_separator`, so the meaning is globset's, documented and tested there.

use globset::{GlobBuilder, GlobMatcher};

/// A compiled path glob.
#[derive(Debug, Clone)]
pub struct PathGlob {
    text: String,
    matcher: GlobMatcher,
}

impl PathGlob {
    /// Compiles `text`, which must be an absolute virtual path pattern.
    pub fn new(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err("must be an absolute virtual path pattern (start with '/')".into());
        }
        if text.contains('\0') || text.contains('\\') {
            return Err("must not contain NUL or backslashes".into());
        }
        let glob = GlobBuilder::new(text)
            .literal_separator(true)
            .backslash_escape(false)
            .build()
            .map_err(|e| e.kind().to_string())?;
        Ok(Self {
            text: text.to_string(),
            matcher: glob.compile_matcher(),
        })
    }

    /// Whether the full virtual path matches.
    pub fn matches(&self, path: &str) -> bool {
        self.matcher.is_match(path)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::PathGlob;

    #[test]
    fn one_star_is_one_segment_and_two_are_any_depth() {
        let g = PathGlob::new("/partners/*/inbox/*.json").unwrap();
        assert!(g.matches("/partners/acme/inbox/order.json"));
        assert!(!g.matches("/partners/acme/inbox/sub/order.json"));
        assert!(!g.matches("/partners/a/b/inbox/order.json"));
        assert!(!g.matches("/partners/acme/inbox/order.csv"));
        let deep = PathGlob::new("/partners/*/inbox/**").unwrap();
        assert!(deep.matches("/partners/acme/inbox/a/b/c.csv"));
        assert!(deep.matches("/partners/acme/inbox/c.csv"));
        assert!(!deep.matches("/partners/acme/outbox/c.csv"));
    }

    #[test]
    fn relative_and_broken_patterns_are_refused() {
        assert!(PathGlob::new("partners/*").is_err());
        assert!(PathGlob::new("/a/[b").is_err());
        assert!(PathGlob::new("/a\\b").is_err());
    }
}
