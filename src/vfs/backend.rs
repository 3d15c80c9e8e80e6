//! The storage contract every backend implements (local disk, S3, memory, test doubles). Keys are
//! mount-relative (`a/b.csv`, `""` for the mount's root); policy and paths are not a backend's
//! business. Writes are staged: invisible until [`StagedWrite::commit`].

use std::fmt;
use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A mount-relative object key: no leading or trailing `/`, `""` for the mount root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(String);

impl Key {
    /// Builds a key from a prefix and a relative path, both already normalised.
    pub fn new(prefix: &str, rel: &str) -> Self {
        match (prefix.is_empty(), rel.is_empty()) {
            (true, _) => Self(rel.to_string()),
            (false, true) => Self(prefix.to_string()),
            (false, false) => Self(format!("{prefix}/{rel}")),
        }
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the mount root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Last name.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// File or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Regular file (object).
    File,
    /// Directory (or prefix).
    Dir,
}

/// What `stat` and `list` return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Last name (empty for a mount root).
    pub name: String,
    /// File or directory.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Last modification, when the backend knows it.
    pub modified: Option<SystemTime>,
    /// sha256 recorded when the file was written through the gateway, if still valid.
    pub sha256: Option<[u8; 32]>,
    /// Backend version tag (S3 ETag, or size+mtime on disk) for HTTP validators.
    pub etag: Option<String>,
}

impl Entry {
    /// A directory entry.
    pub fn dir(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: EntryKind::Dir,
            size: 0,
            modified: None,
            sha256: None,
            etag: None,
        }
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
}

/// Failure classes, each with one wire meaning per protocol (see the adapters' error files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The key does not exist.
    NotFound,
    /// The target exists.
    AlreadyExists,
    /// Directory not empty.
    NotEmpty,
    /// The operation makes no sense for this object (e.g. read a directory).
    NotAFile,
    /// The backend cannot do this.
    Unsupported,
    /// The storage is full (disk full, quota).
    NoSpace,
    /// Worth retrying (network, throttling).
    Transient,
    /// Will not work on retry.
    Permanent,
}

/// A backend failure: a kind the adapters map to replies, plus detail for logs.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?}: {detail}")]
pub struct StorageError {
    /// Class.
    pub kind: StorageErrorKind,
    /// Detail for logs (may name backend paths; never sent to clients).
    pub detail: String,
}

impl StorageError {
    /// Builds an error.
    pub fn new(kind: StorageErrorKind, detail: impl fmt::Display) -> Self {
        Self {
            kind,
            detail: detail.to_string(),
        }
    }

    /// Not found.
    pub fn not_found(detail: impl fmt::Display) -> Self {
        Self::new(StorageErrorKind::NotFound, detail)
    }

    /// Classifies an I/O error.
    pub fn from_io(e: &std::io::Error, what: impl fmt::Display) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => StorageErrorKind::NotFound,
            K::AlreadyExists => StorageErrorKind::AlreadyExists,
            K::DirectoryNotEmpty => StorageErrorKind::NotEmpty,
            K::IsADirectory | K::NotADirectory => StorageErrorKind::NotAFile,
            K::StorageFull | K::QuotaExceeded => StorageErrorKind::NoSpace,
            K::Interrupted | K::TimedOut | K::WouldBlock => StorageErrorKind::Transient,
            K::Unsupported => StorageErrorKind::Unsupported,
            _ => StorageErrorKind::Permanent,
        };
        Self::new(kind, format!("{what}: {e}"))
    }
}

/// A stream of file content.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;
/// A stream of directory entries.
pub type EntryStream = BoxStream<'static, Result<Entry, StorageError>>;

/// How a staged write starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageMode {
    /// A new file (replaces the old one at commit).
    Create,
    /// The existing file's first `n` bytes are kept and the write continues from there
    /// (resume/append); backends without it return `Unsupported`.
    KeepPrefix(u64),
}

/// How a staged write becomes visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Replace whatever is at the key.
    Replace,
    /// Fail with `AlreadyExists` if anything appeared at the key meanwhile, atomically where the
    /// store can (local `link`, S3 `If-None-Match: *`).
    NoReplace,
}

/// What a backend can do beyond the basics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `StageMode::KeepPrefix` works.
    pub resume: bool,
    /// `set_modified` works.
    pub set_times: bool,
    /// Empty directories exist on their own (disk) rather than as markers (S3).
    pub real_dirs: bool,
    /// Staged writes take writes at any offset and reads back (`write_at`/`read_at`): SFTP
    /// read-write opens and random writes (sshfs, WinSCP resume, rsync-style tools).
    pub random_write: bool,
}

/// Space on the storage, as SFTP's `statvfs@openssh.com` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Space {
    /// Block size in bytes.
    pub block_size: u64,
    /// Fragment size in bytes.
    pub fragment_size: u64,
    /// Size of the filesystem, in fragments.
    pub blocks: u64,
    /// Free blocks.
    pub blocks_free: u64,
    /// Free blocks for unprivileged users.
    pub blocks_avail: u64,
    /// Inodes.
    pub files: u64,
    /// Free inodes.
    pub files_free: u64,
    /// Free inodes for unprivileged users.
    pub files_avail: u64,
    /// Filesystem id.
    pub fsid: u64,
    /// Longest name.
    pub name_max: u64,
}

/// A write in progress; nothing is visible at the key until `commit`.
#[async_trait]
pub trait StagedWrite: Send {
    /// Appends a chunk.
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError>;
    /// Makes the content visible at the key, recording `sha256` of the whole content.
    async fn commit(
        self: Box<Self>,
        sha256: [u8; 32],
        mode: CommitMode,
    ) -> Result<(), StorageError>;
    /// Throws the staged content away.
    async fn abort(self: Box<Self>);
    /// Writes at `offset` (backends with `random_write`); later bytes stay as they were. After
    /// the first `write_at`, every later write of the upload is a `write_at` too.
    async fn write_at(&mut self, offset: u64, _data: Bytes) -> Result<(), StorageError> {
        Err(StorageError::new(
            StorageErrorKind::Unsupported,
            format!("random writes are not supported here (offset {offset})"),
        ))
    }
    /// Reads back up to `len` bytes of the staged content at `offset` (`random_write`).
    async fn read_at(&mut self, offset: u64, _len: usize) -> Result<Bytes, StorageError> {
        Err(StorageError::new(
            StorageErrorKind::Unsupported,
            format!("reading a file being written is not supported here (offset {offset})"),
        ))
    }
    /// The sha256 of the whole staged content, read back (after random writes, when no
    /// streaming hash exists).
    async fn content_sha256(&mut self) -> Result<[u8; 32], StorageError> {
        Err(StorageError::new(
            StorageErrorKind::Unsupported,
            "hashing staged content is not supported here",
        ))
    }
}

/// A storage backend.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// What it supports.
    fn capabilities(&self) -> Capabilities;
    /// The entry at `key`, or `None`. The mount root is always a directory.
    async fn stat(&self, key: &Key) -> Result<Option<Entry>, StorageError>;
    /// Entries directly under `dir` (streamed; paginated on object stores).
    async fn list(&self, dir: &Key) -> Result<EntryStream, StorageError>;
    /// Content of `key`, whole or a byte range (end clamped to the size).
    async fn read(&self, key: &Key, range: Option<Range<u64>>) -> Result<ByteStream, StorageError>;
    /// `stat`, and for a small file its whole content too, in one step where the backend can
    /// (local disk: one trip to the blocking pool instead of two for a small download). Default:
    /// `stat` only; the content is read when asked for.
    async fn stat_and_read(
        &self,
        key: &Key,
    ) -> Result<Option<(Entry, Option<ByteStream>)>, StorageError> {
        Ok(self.stat(key).await?.map(|e| (e, None)))
    }
    /// Starts a staged write.
    async fn stage(&self, key: &Key, mode: StageMode)
    -> Result<Box<dyn StagedWrite>, StorageError>;
    /// Removes a file.
    async fn delete(&self, key: &Key) -> Result<(), StorageError>;
    /// Creates a directory (its parent must exist on disk backends).
    async fn mkdir(&self, key: &Key) -> Result<(), StorageError>;
    /// Removes an empty directory.
    async fn rmdir(&self, key: &Key) -> Result<(), StorageError>;
    /// Moves a file or directory; with `no_overwrite`, fails with `AlreadyExists` if `to` exists.
    async fn rename(&self, from: &Key, to: &Key, no_overwrite: bool) -> Result<(), StorageError>;
    /// Sets the modification time.
    async fn set_modified(&self, key: &Key, _time: SystemTime) -> Result<(), StorageError> {
        Err(StorageError::new(
            StorageErrorKind::Unsupported,
            format!("setting times is not supported here ({key})"),
        ))
    }
    /// Readiness: the backend answers.
    async fn check(&self) -> Result<(), StorageError>;
    /// Cleans up what interrupted work left behind (multipart uploads on object stores); `at_start`:
    /// nothing of this process is in flight yet. Returns how many things it cleaned.
    async fn sweep(&self, _at_start: bool) -> usize {
        0
    }
    /// Space on the storage under `key` (SFTP `statvfs@openssh.com`).
    async fn space(&self, key: &Key) -> Result<Space, StorageError> {
        Err(StorageError::new(
            StorageErrorKind::Unsupported,
            format!("space information is not available here ({key})"),
        ))
    }
    /// Makes `to` a second name of the file `from` (SFTP `hardlink@openssh.com`); fails with
    /// `AlreadyExists` if `to` exists.
    async fn hard_link(&self, from: &Key, to: &Key) -> Result<(), StorageError> {
        Err(StorageError::new(
            StorageErrorKind::Unsupported,
            format!("hard links are not supported here ({from} -> {to})"),
        ))
    }
    /// The sha256 recorded when the file was written through the gateway, if still valid
    /// (may cost a request on object stores, so only HTTP downloads ask).
    async fn digest(&self, _key: &Key, entry: &Entry) -> Option<[u8; 32]> {
        entry.sha256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_join_prefixes() {
        assert_eq!(Key::new("", "a/b").as_str(), "a/b");
        assert_eq!(Key::new("incoming", "").as_str(), "incoming");
        assert_eq!(Key::new("incoming", "a/b").as_str(), "incoming/a/b");
        assert_eq!(Key::new("p", "a/b").name(), "b");
        assert!(Key::new("", "").is_root());
    }
}
