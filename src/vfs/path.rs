//! `VPath`: an absolute, normalised virtual path. Every path a client sends becomes a `VPath`
//! before anything else looks at it, so `..` can never climb above the root it is resolved in
//! (a user's home), and NUL, control characters, backslashes and over-long paths never get in.

use std::fmt;

/// Longest path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Contains `\0`.
    #[error("path contains a NUL byte")]
    Nul,
    /// Contains another control character (they break listings and logs).
    #[error("path contains a control character")]
    ControlChar,
    /// Contains `\`; refused rather than guessed as a separator.
    #[error("path contains a backslash")]
    Backslash,
    /// Longer than [`MAX_PATH_BYTES`].
    #[error("path is too long")]
    TooLong,
    /// A name longer than [`MAX_NAME_BYTES`].
    #[error("a name in the path is too long")]
    NameTooLong,
    /// Not valid UTF-8.
    #[error("path is not valid UTF-8")]
    NotUtf8,
    /// Empty, `.`, `..` or containing `/` where a single name was expected.
    #[error("not a valid file name")]
    InvalidName,
}

/// An absolute, normalised path: starts with `/`, no empty, `.` or `..` segments, no trailing `/`
/// (except the root itself).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VPath(String);

impl VPath {
    /// `/`
    pub fn root() -> Self {
        Self("/".into())
    }

    /// Parses `input` as a path from the root (`a/b` and `/a/b` are the same).
    pub fn parse(input: &str) -> Result<Self, PathError> {
        Self::root().resolve(input)
    }

    /// Parses raw bytes (SFTP and FTP names arrive as bytes).
    pub fn parse_bytes(input: &[u8]) -> Result<Self, PathError> {
        let s = std::str::from_utf8(input).map_err(|_| PathError::NotUtf8)?;
        Self::parse(s)
    }

    /// Resolves `input` against `self` (a working directory): absolute inputs start from the
    /// root, relative ones from `self`; `..` at the root stays at the root.
    pub fn resolve(&self, input: &str) -> Result<Self, PathError> {
        if input.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        check_chars(input)?;
        let mut segs: Vec<&str> = if input.starts_with('/') {
            Vec::new()
        } else {
            self.segments().collect()
        };
        for seg in input.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    segs.pop();
                }
                name => {
                    if name.len() > MAX_NAME_BYTES {
                        return Err(PathError::NameTooLong);
                    }
                    segs.push(name);
                }
            }
        }
        let out = Self::from_segments(&segs);
        if out.0.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        Ok(out)
    }

    fn from_segments(segs: &[&str]) -> Self {
        if segs.is_empty() {
            return Self::root();
        }
        let mut s = String::with_capacity(segs.iter().map(|x| x.len() + 1).sum());
        for seg in segs {
            s.push('/');
            s.push_str(seg);
        }
        Self(s)
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The names along the path (none for the root).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// `self` with `user_path` (a path in a user's view) appended: home + user path.
    pub fn join(&self, user_path: &VPath) -> VPath {
        if user_path.is_root() {
            return self.clone();
        }
        if self.is_root() {
            return user_path.clone();
        }
        VPath(format!("{}{}", self.0, user_path.0))
    }

    /// Appends one validated name.
    pub fn child(&self, name: &str) -> Result<VPath, PathError> {
        if name.contains('/') || name == "." || name == ".." || name.is_empty() {
            return Err(PathError::InvalidName);
        }
        self.resolve(name)
    }

    /// Component-wise prefix test: `/a` is a prefix of `/a/b`, not of `/ab`.
    pub fn starts_with(&self, base: &VPath) -> bool {
        base.is_root()
            || self.0 == base.0
            || (self.0.starts_with(&base.0) && self.0.as_bytes().get(base.0.len()) == Some(&b'/'))
    }

    /// `self` relative to `base`, as a path in `base`'s view; `None` if not under `base`.
    pub fn strip_prefix(&self, base: &VPath) -> Option<VPath> {
        if !self.starts_with(base) {
            return None;
        }
        if base.is_root() {
            return Some(self.clone());
        }
        let rest = &self.0[base.0.len()..];
        Some(if rest.is_empty() {
            VPath::root()
        } else {
            VPath(rest.to_string())
        })
    }

    /// The containing directory (`None` for the root).
    pub fn parent(&self) -> Option<VPath> {
        if self.is_root() {
            return None;
        }
        let idx = self.0.rfind('/').unwrap_or(0);
        Some(if idx == 0 {
            VPath::root()
        } else {
            VPath(self.0[..idx].to_string())
        })
    }

    /// The last name (`None` for the root).
    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            None
        } else {
            self.0.rsplit('/').next()
        }
    }

    /// Number of names in the path.
    pub fn depth(&self) -> usize {
        self.segments().count()
    }

    /// The path without its leading `/` (`""` for the root): a mount-relative key.
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }
}

fn check_chars(input: &str) -> Result<(), PathError> {
    for c in input.chars() {
        match c {
            '\0' => return Err(PathError::Nul),
            '\\' => return Err(PathError::Backslash),
            c if c.is_control() => return Err(PathError::ControlChar),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl AsRef<str> for VPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> VPath {
        VPath::parse(s).unwrap()
    }

    #[test]
    fn normalises() {
        assert_eq!(p("").as_str(), "/");
        assert_eq!(p("/").as_str(), "/");
        assert_eq!(p("a/b").as_str(), "/a/b");
        assert_eq!(p("//a///b/").as_str(), "/a/b");
        assert_eq!(p("/a/./b/.").as_str(), "/a/b");
        assert_eq!(p("/a/b/../c").as_str(), "/a/c");
        assert_eq!(p("../../etc/passwd").as_str(), "/etc/passwd");
        assert_eq!(p("/..").as_str(), "/");
        // Encoded forms are names, not separators: decoding is the HTTP adapter's job, once.
        assert_eq!(p("%2e%2e/x").as_str(), "/%2e%2e/x");
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(VPath::parse("a\0b"), Err(PathError::Nul));
        assert_eq!(VPath::parse("a\nb"), Err(PathError::ControlChar));
        assert_eq!(VPath::parse("..\\..\\etc"), Err(PathError::Backslash));
        assert_eq!(VPath::parse(&"a".repeat(256)), Err(PathError::NameTooLong));
        assert_eq!(VPath::parse(&"a/".repeat(3000)), Err(PathError::TooLong));
        assert_eq!(VPath::parse_bytes(b"\xff\xfe"), Err(PathError::NotUtf8));
    }

    #[test]
    fn resolves_against_cwd() {
        let cwd = p("/inbox/sub");
        assert_eq!(cwd.resolve("x").unwrap().as_str(), "/inbox/sub/x");
        assert_eq!(cwd.resolve("../x").unwrap().as_str(), "/inbox/x");
        assert_eq!(cwd.resolve("../../../../x").unwrap().as_str(), "/x");
        assert_eq!(cwd.resolve("/y").unwrap().as_str(), "/y");
    }

    #[test]
    fn joins_and_strips() {
        let home = p("/partners/acme");
        let full = home.join(&p("/inbox/m.csv"));
        assert_eq!(full.as_str(), "/partners/acme/inbox/m.csv");
        assert_eq!(home.join(&VPath::root()), home);
        assert_eq!(VPath::root().join(&p("/x")), p("/x"));
        assert_eq!(full.strip_prefix(&home).unwrap(), p("/inbox/m.csv"));
        assert_eq!(home.strip_prefix(&home).unwrap(), VPath::root());
        assert!(p("/partners/acmex").strip_prefix(&home).is_none());
        assert!(p("/a/b").starts_with(&p("/a")));
        assert!(!p("/ab").starts_with(&p("/a")));
        assert!(p("/ab").starts_with(&VPath::root()));
        assert_eq!(p("/a/b").parent().unwrap(), p("/a"));
        assert_eq!(p("/a").parent().unwrap(), VPath::root());
        assert_eq!(p("/a/b").file_name(), Some("b"));
        assert_eq!(p("/a/b").relative(), "a/b");
    }

    proptest! {
        #[test]
        fn never_escapes_home(segs in prop::collection::vec(
            prop_oneof![Just("..".to_string()), Just(".".to_string()), Just("".to_string()),
                        Just("%2e%2e".to_string()), "[a-z]{1,5}"], 0..12),
            abs in any::<bool>()) {
            let home = p("/partners/acme");
            let input = format!("{}{}", if abs { "/" } else { "" }, segs.join("/"));
            let user = VPath::root().resolve(&input).unwrap();
            let full = home.join(&user);
            prop_assert!(full.starts_with(&home));
            prop_assert_eq!(full.strip_prefix(&home).unwrap(), user);
        }

        #[test]
        fn normalising_twice_changes_nothing(s in "[a-z./%]{0,40}") {
            if let Ok(once) = VPath::parse(&s) {
                let twice = VPath::parse(once.as_str()).unwrap();
                prop_assert_eq!(once, twice);
            }
        }

        #[test]
        fn never_panics(s in any::<String>()) {
            if let Ok(v) = VPath::parse(&s) {
                prop_assert!(v.as_str().starts_with('/'));
                prop_assert!(!v.as_str().contains("/../"));
                prop_assert!(!v.as_str().contains('\0'));
            }
        }
    }
}
