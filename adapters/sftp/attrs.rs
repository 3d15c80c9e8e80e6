//! SFTP attributes and names from the core's entries: sizes, times, the permission bits clients
//! expect, and the `ls -l` style long name OpenSSH shows.

use std::time::{SystemTime, UNIX_EPOCH};

use russh_sftp::protocol::{File, FileAttributes};

use crate::vfs::Entry;

pub(super) fn secs(t: Option<SystemTime>) -> Option<u32> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

pub(super) fn attrs_of(e: &Entry) -> FileAttributes {
    let mut a = FileAttributes::empty();
    a.size = Some(e.size);
    a.uid = Some(0);
    a.gid = Some(0);
    a.permissions = Some(if e.is_dir() { 0o040_755 } else { 0o100_644 });
    a.mtime = secs(e.modified);
    a.atime = a.mtime;
    a
}

/// A `File` entry with the `ls -l` style long name OpenSSH's `ls -l` shows.
pub(super) fn file_of(e: &Entry) -> File {
    let attrs = attrs_of(e);
    let when = e
        .modified
        .map(time::OffsetDateTime::from)
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[month repr:short] [day padding:space] [hour]:[minute]"
            ))
            .ok()
        })
        .unwrap_or_else(|| "Jan  1 00:00".into());
    let longname = format!(
        "{} 1 owner group {:>12} {when} {}",
        if e.is_dir() {
            "drwxr-xr-x"
        } else {
            "-rw-r--r--"
        },
        e.size,
        e.name
    );
    File {
        filename: e.name.clone(),
        longname,
        attrs,
    }
}
