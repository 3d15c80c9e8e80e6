//! Path normalisation: whatever a client sends, a parsed path is absolute, normalised (parsing it
//! again changes nothing), free of `.`/`..`/empty segments and NUL, and stays under any home it
//! is joined to.
#![no_main]

use gatehouse::vfs::VPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let home = VPath::parse("/partners/acme").unwrap();
    if let Ok(p) = VPath::parse_bytes(data) {
        let s = p.as_str();
        assert!(s.starts_with('/'));
        assert!(!s.contains('\0'));
        assert!(p.is_root() || !s.split('/').skip(1).any(|x| x.is_empty() || x == "." || x == ".."));
        assert_eq!(VPath::parse(s).unwrap(), p, "normalising twice changed {s:?}");
        assert!(home.join(&p).starts_with(&home), "{s:?} escaped the home");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let cwd = VPath::parse("/inbox/2026").unwrap();
        if let Ok(p) = cwd.resolve(text) {
            assert!(home.join(&p).starts_with(&home));
        }
    }
});
