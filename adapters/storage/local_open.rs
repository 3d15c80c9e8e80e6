//! Opening a file under the local backend's root in one system call. `openat2` with
//! `RESOLVE_BENEATH` (Linux 5.6+) refuses any path that would leave the root on the way:
//! `..`, a symlink out, an absolute symlink, a magic link. It replaces the portable check (stat,
//! then `realpath`, a `readlink` per path component, then open: eight system calls for a file
//! four levels down; strace of 4 KiB GETs). Where the kernel says no, the caller falls back to
//! the portable check and that one decides: `EXDEV` (an absolute symlink may still point
//! inside the root), `ENOSYS` (an older kernel) or `EPERM` (a seccomp filter that does not know
//! `openat2`), and anything else unexpected.
//!
//! Small files can also be read on the calling (event loop) thread when the kernel can do it
//! from memory: [`RootDir::read_cached`] opens with `RESOLVE_CACHED` (the lookup only from the
//! dentry cache) and `RESOLVE_NO_XDEV`, then reads with `RWF_NOWAIT` (only from the page cache),
//! on a local file system only. Whatever would wait on a disk or a network says `EAGAIN`, and the
//! caller goes to the blocking pool as before. That spares a hot 4 KiB GET the two thread
//! hand-offs (futex wake-ups and context switches) that nginx, reading in its event loop, does
//! not pay either.

use std::fs::File;
use std::path::Path;

use crate::vfs::backend::StorageError;

/// The root directory, held open (`O_PATH`) for confined opens under it.
#[derive(Debug)]
pub(super) struct RootDir {
    fd: Option<std::os::fd::OwnedFd>,
    /// The root is on a local file system (ext4, xfs, btrfs, tmpfs, overlayfs, f2fs): reads
    /// from its caches never wait on a network.
    local_fs: bool,
    /// The root is on tmpfs: its pages are memory, and its reads take no `RWF_NOWAIT`
    /// (`EOPNOTSUPP`, Linux 6.18), so they are made plain.
    memory_fs: bool,
}

/// What [`RootDir::read_cached`] found, without waiting. (Returned by value once per lookup:
/// boxing the stat would cost an allocation for nothing.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Cached {
    /// Nothing there.
    Missing,
    /// The open file, its stat, and its bytes when it is a regular file of at most `max` bytes
    /// and all of them were in the page cache.
    Found(File, std::fs::Metadata, Option<Vec<u8>>),
}

/// What a confined open found.
pub(super) enum Beneath {
    /// The entry, opened read-only.
    Opened(File),
    /// Nothing there (or a path through a non-directory).
    Missing,
    /// The kernel could not decide here: use the portable check.
    Fallback,
}

impl RootDir {
    /// Holds `root` open; without `openat2` support every open falls back.
    pub fn open(root: &Path) -> Result<Self, StorageError> {
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::{Mode, OFlags};
            let fd = rustix::fs::open(
                root,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| super::local::io_err(e.into(), "open root"))?;
            // ext2/3/4, xfs, btrfs, tmpfs, overlayfs, f2fs
            const LOCAL: [i64; 6] = [
                0xEF53,
                0x5846_5342,
                0x9123_683E,
                TMPFS,
                0x794C_7630,
                0xF2F5_2010,
            ];
            const TMPFS: i64 = 0x0102_1994;
            #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
            let fs_type = rustix::fs::fstatfs(&fd).map_or(0, |st| st.f_type as i64);
            Ok(Self {
                fd: Some(fd),
                local_fs: LOCAL.contains(&fs_type),
                memory_fs: fs_type == TMPFS,
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = root;
            Ok(Self {
                fd: None,
                local_fs: false,
                memory_fs: false,
            })
        }
    }

    /// Opens `rel` (a key: relative, `/`-separated; empty for the root) read-only, confined to
    /// the root. Non-blocking, so a FIFO placed under the root cannot hang the open.
    pub fn open_beneath(&self, rel: &str) -> Beneath {
        self.open_with(rel, false)
    }

    #[allow(unused_variables)] // off Linux every open falls back
    fn open_with(&self, rel: &str, cached: bool) -> Beneath {
        #[cfg(target_os = "linux")]
        if let Some(root) = &self.fd {
            use rustix::fs::{Mode, OFlags, ResolveFlags};
            use rustix::io::Errno;
            let rel = if rel.is_empty() { "." } else { rel };
            let mut how = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
            if cached {
                how |= ResolveFlags::CACHED | ResolveFlags::NO_XDEV;
            }
            return match rustix::fs::openat2(
                root,
                rel,
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
                Mode::empty(),
                how,
            ) {
                Ok(fd) => Beneath::Opened(File::from(fd)),
                Err(Errno::NOENT | Errno::NOTDIR) => Beneath::Missing,
                Err(_) => Beneath::Fallback,
            };
        }
        Beneath::Fallback
    }

    /// `rel`'s entry and, for a regular file of at most `max` bytes, its content, if the kernel
    /// has all of it in memory; `None` when finding out would wait (on a disk, a network, a
    /// lookup not cached, another mount, an old kernel): ask the blocking pool instead.
    pub fn read_cached(&self, rel: &str, max: u64) -> Option<Cached> {
        if !self.local_fs {
            return None;
        }
        let file = match self.open_with(rel, true) {
            Beneath::Opened(f) => f,
            Beneath::Missing => return Some(Cached::Missing),
            Beneath::Fallback => return None,
        };
        let m = file.metadata().ok()?;
        if !m.is_file() || m.len() > max {
            return Some(Cached::Found(file, m, None));
        }
        let bytes = read_nowait(&file, m.len(), self.memory_fs)?;
        Some(Cached::Found(file, m, Some(bytes)))
    }
}

/// All `len` bytes of `file` from the page cache, or `None` if any would have to come from disk
/// (`RWF_NOWAIT`: `EAGAIN`, or `EOPNOTSUPP` where the file system has no such mode) or the file
/// is no longer `len` bytes long. `memory`: the file is on tmpfs, read it plainly.
fn read_nowait(file: &File, len: u64, memory: bool) -> Option<Vec<u8>> {
    #[cfg(target_os = "linux")]
    {
        use rustix::io::ReadWriteFlags;
        let len = usize::try_from(len).ok()?;
        // One byte more than expected: a file that grew since its stat is read again later.
        // A read that stops at `len` is taken as the end (no second call to find it): whatever
        // comes after, the stat said `len`.
        let mut buf = vec![0u8; len + 1];
        let mut filled = 0;
        while filled < len {
            let n = rustix::io::preadv2(
                file,
                &mut [std::io::IoSliceMut::new(&mut buf[filled..])],
                filled as u64,
                if memory {
                    ReadWriteFlags::empty()
                } else {
                    ReadWriteFlags::NOWAIT
                },
            )
            .ok()?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        (filled == len).then(|| {
            buf.truncate(len);
            buf
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, len, memory);
        None
    }
}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use super::*;

    #[test]
    fn opens_inside_and_never_outside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/f.txt"), b"inside").unwrap();
        std::fs::write(dir.path().join("secret"), b"outside").unwrap();
        std::os::unix::fs::symlink("../f.txt", root.join("a/rel-in")).unwrap();
        std::os::unix::fs::symlink("../../secret", root.join("a/rel-out")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("abs-out")).unwrap();
        std::os::unix::fs::symlink(root.join("a/f.txt"), root.join("abs-in")).unwrap();
        std::fs::write(root.join("f.txt"), b"top").unwrap();
        let r = RootDir::open(&root).unwrap();
        let read = |b: Beneath| match b {
            Beneath::Opened(mut f) => {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut f, &mut s).unwrap();
                format!("opened {s}")
            }
            Beneath::Missing => "missing".into(),
            Beneath::Fallback => "fallback".into(),
        };
        assert_eq!(read(r.open_beneath("a/f.txt")), "opened inside");
        assert_eq!(read(r.open_beneath("a/rel-in")), "opened top");
        assert!(matches!(r.open_beneath(""), Beneath::Opened(_)));
        assert_eq!(read(r.open_beneath("a/nope")), "missing");
        assert_eq!(read(r.open_beneath("a/f.txt/x")), "missing");
        // Out of the root: never opened here; the portable check decides (and refuses).
        for out in [
            "a/rel-out",
            "abs-out",
            "../secret",
            "a/../../secret",
            "/etc/passwd",
        ] {
            assert_eq!(read(r.open_beneath(out)), "fallback", "{out}");
        }
        // An absolute symlink that stays inside also goes to the portable check.
        assert_eq!(read(r.open_beneath("abs-in")), "fallback");
    }
}
