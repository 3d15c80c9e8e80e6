//! The local backend's entries: a file's stat and the sha256 recorded with it (the xattr
//! `user.gatehouse.sha256`, valid for the size and mtime it names), found through a confined
//! open (`local_open.rs`) or, where the kernel cannot decide, the portable check (`confine`:
//! the real path after symlinks must stay under the root).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::local::{XATTR, io_err, read_chunk};
use super::local_open::{Beneath, RootDir};
use crate::vfs::backend::{Entry, EntryKind, StorageError};

/// Refuses paths whose real location (after symlinks) is outside `root`: the portable check.
pub(super) fn confine(path: &Path, root: &Path) -> Result<(), StorageError> {
    let existing = if path.exists() {
        path.to_path_buf()
    } else {
        match path.parent() {
            Some(p) => p.to_path_buf(),
            None => return Ok(()),
        }
    };
    match existing.canonicalize() {
        Ok(real) if real.starts_with(root) => Ok(()),
        // Outside the root nothing exists, as far as clients can tell (stat agrees).
        Ok(_) => Err(StorageError::not_found(format!(
            "{} resolves outside the backend root",
            path.display()
        ))),
        Err(e) => Err(io_err(e, "resolve")),
    }
}

fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

/// The recorded sha256, if it was computed for the file as it is now.
pub(super) fn read_digest(path: &Path, m: &std::fs::Metadata) -> Option<[u8; 32]> {
    digest_in(xattr::get(path, XATTR).ok()??, m)
}

/// The recorded sha256 of an open file (`m`: its stat), if it was computed for it as it is now.
pub(super) fn file_digest(file: &std::fs::File, m: &std::fs::Metadata) -> Option<[u8; 32]> {
    use xattr::FileExt;
    if m.is_dir() {
        return None;
    }
    digest_in(file.get_xattr(XATTR).ok()??, m)
}

/// The sha256 in an xattr's value, if it was computed for the file as it is now.
fn digest_in(raw: Vec<u8>, m: &std::fs::Metadata) -> Option<[u8; 32]> {
    let text = String::from_utf8(raw).ok()?;
    let mut parts = text.split(' ');
    let (hex_digest, size, mtime) = (parts.next()?, parts.next()?, parts.next()?);
    if size.parse::<u64>().ok()? != m.len() || mtime.parse::<i128>().ok()? != mtime_ns(m) {
        return None;
    }
    hex::decode(hex_digest).ok()?.try_into().ok()
}

/// Files up to this size are read together with their stat (`stat_and_read`).
pub(super) const SMALL_READ: u64 = 64 * 1024;

/// The entry at `path` and its real path, or `None` if it does not exist or resolves outside
/// `root` (a symlink out of the root does not exist, as far as clients can tell).
fn stat_confined(
    path: &Path,
    root: &Path,
    name: String,
) -> Result<Option<(Entry, PathBuf)>, StorageError> {
    match std::fs::metadata(path) {
        Ok(m) => {
            let real = path.canonicalize().map_err(|e| io_err(e, "resolve"))?;
            if !real.starts_with(root) {
                return Ok(None);
            }
            Ok(Some((entry_of(name, path, &m), real)))
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(io_err(e, "stat")),
    }
}

/// The entry at `rel` (`path` on the host) and, with `content`, a small file's bytes; `None`
/// if it does not exist or resolves outside `root`. One `openat2` confined to the root, then the
/// open file's stat, xattr and bytes; the portable check where the kernel cannot decide. A file
/// that changed size between its stat and its read gets no bytes here: it is read again later
/// like any other.
pub(super) fn stat_entry(
    root_dir: &RootDir,
    rel: &str,
    path: &Path,
    root: &Path,
    name: String,
    content: bool,
) -> Result<Option<(Entry, Option<Bytes>)>, StorageError> {
    let small = |e: &Entry| content && e.kind == EntryKind::File && e.size <= SMALL_READ;
    match root_dir.open_beneath(rel) {
        Beneath::Missing => Ok(None),
        Beneath::Opened(mut file) => {
            let m = file.metadata().map_err(|e| io_err(e, "stat"))?;
            let entry = entry_from(name, &m, file_digest(&file, &m));
            let bytes = if small(&entry) {
                // `read_chunk`, not `read_to_end`: that one stats and seeks the file again.
                read_chunk(&mut file, entry.size)
                    .ok()
                    .filter(|b| b.len() as u64 == entry.size)
            } else {
                None
            };
            Ok(Some((entry, bytes)))
        }
        Beneath::Fallback => {
            let Some((entry, real)) = stat_confined(path, root, name)? else {
                return Ok(None);
            };
            let bytes = if small(&entry) {
                std::fs::read(&real)
                    .ok()
                    .filter(|v| v.len() as u64 == entry.size)
                    .map(Bytes::from)
            } else {
                None
            };
            Ok(Some((entry, bytes)))
        }
    }
}

pub(super) fn entry_of(name: String, path: &Path, m: &std::fs::Metadata) -> Entry {
    let digest = if m.is_dir() {
        None
    } else {
        read_digest(path, m)
    };
    entry_from(name, m, digest)
}

pub(super) fn entry_from(name: String, m: &std::fs::Metadata, sha256: Option<[u8; 32]>) -> Entry {
    let kind = if m.is_dir() {
        EntryKind::Dir
    } else {
        EntryKind::File
    };
    Entry {
        name,
        kind,
        size: if m.is_dir() { 0 } else { m.len() },
        modified: m.modified().ok(),
        sha256,
        etag: Some(format!("{:x}-{:x}", m.len(), mtime_ns(m))),
    }
}

pub(super) fn digest_value(d: &[u8; 32], m: &std::fs::Metadata) -> String {
    format!("{} {} {}", hex::encode(d), m.len(), mtime_ns(m))
}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use super::super::local_open::Cached;
    use super::*;

    /// root/a/f.txt, a secret beside the root, and symlinks to each, relative and absolute.
    fn tree() -> (tempfile::TempDir, PathBuf, RootDir) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/f.txt"), b"inside").unwrap();
        std::fs::write(dir.path().join("secret"), b"outside").unwrap();
        std::os::unix::fs::symlink("../../secret", root.join("a/rel-out")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("abs-out")).unwrap();
        std::os::unix::fs::symlink(root.join("a/f.txt"), root.join("abs-in")).unwrap();
        let root = root.canonicalize().unwrap();
        let rd = RootDir::open(&root).unwrap();
        (dir, root, rd)
    }

    fn stat(rd: &RootDir, root: &Path, rel: &str) -> Option<(Entry, Option<Bytes>)> {
        let name = rel.rsplit('/').next().unwrap_or("").to_string();
        stat_entry(rd, rel, &root.join(rel), root, name, true).unwrap()
    }

    #[test]
    fn stat_entry_reads_inside_and_finds_nothing_outside() {
        let (_dir, root, rd) = tree();
        let (e, bytes) = stat(&rd, &root, "a/f.txt").unwrap();
        assert_eq!((e.kind, e.size), (EntryKind::File, 6));
        assert_eq!(bytes.as_deref(), Some(&b"inside"[..]));
        // An absolute symlink that stays inside: the portable check finds it.
        let (e, bytes) = stat(&rd, &root, "abs-in").unwrap();
        assert_eq!((e.name.as_str(), e.size), ("abs-in", 6));
        assert_eq!(bytes.as_deref(), Some(&b"inside"[..]));
        for out in ["a/rel-out", "abs-out", "a/nope", "a/f.txt/x"] {
            assert!(stat(&rd, &root, out).is_none(), "{out}");
        }
        let (e, bytes) = stat(&rd, &root, "").unwrap();
        assert_eq!((e.kind, bytes), (EntryKind::Dir, None));
    }

    #[test]
    fn cached_reads_give_the_same_answers_or_defer() {
        let (_dir, _root, rd) = tree();
        // A hot file comes from the caches, or (a file system without RWF_NOWAIT) not at all.
        match rd.read_cached("a/f.txt", 1024) {
            Some(Cached::Found(_, m, bytes)) => {
                assert_eq!(m.len(), 6);
                assert_eq!(bytes.as_deref(), Some(&b"inside"[..]));
            }
            Some(Cached::Missing) => panic!("a/f.txt is there"),
            None => {}
        }
        // Larger than asked: the stat without the bytes.
        if let Some(Cached::Found(_, m, bytes)) = rd.read_cached("a/f.txt", 3) {
            assert_eq!((m.len(), bytes), (6, None));
        }
        // A name never looked up has no (negative) dentry cached yet: the kernel may defer.
        assert!(matches!(
            rd.read_cached("a/nope", 1024),
            Some(Cached::Missing) | None
        ));
        // Never anything from outside the root, and an absolute symlink is left to the
        // portable check.
        for out in ["a/rel-out", "abs-out", "abs-in", "../secret", "/etc/passwd"] {
            assert!(rd.read_cached(out, 1024).is_none(), "{out}");
        }
    }
}
