//! `vfs::Error`: what a file operation can fail with, independent of protocol. Each adapter maps
//! it to its own wire reply in exactly one place.

use super::backend::{StorageError, StorageErrorKind};
use super::path::PathError;
use crate::audit::AuditError;
use crate::policy::Action;

/// A file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Policy refused the action on the path (user view).
    #[error("permission denied: {action} on {path}")]
    Denied {
        /// What was refused.
        action: Action,
        /// Where (user view).
        path: String,
    },
    /// No such file or directory.
    #[error("no such file or directory")]
    NotFound,
    /// The target exists.
    #[error("already exists")]
    AlreadyExists,
    /// Directory not empty.
    #[error("directory not empty")]
    NotEmpty,
    /// A file operation on a directory, or the other way round.
    #[error("{0}")]
    WrongKind(&'static str),
    /// The path was refused before any lookup.
    #[error("invalid path: {0}")]
    InvalidPath(#[from] PathError),
    /// The storage is full.
    #[error("no space left on the storage")]
    NoSpace,
    /// The backend or the gateway cannot do this (append on S3, a non-sequential write, ...).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// The backend failed.
    #[error("storage error: {0}")]
    Backend(StorageError),
    /// A `[[validate]]` rule refused the file: it never became visible.
    #[error("{0}")]
    Invalid(crate::validation::Refusal),
    /// The audit log could not record the operation, so it failed closed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match e.kind {
            StorageErrorKind::NotFound => Error::NotFound,
            StorageErrorKind::AlreadyExists => Error::AlreadyExists,
            StorageErrorKind::NotEmpty => Error::NotEmpty,
            StorageErrorKind::NotAFile => Error::WrongKind("not a regular file"),
            StorageErrorKind::Unsupported => Error::Unsupported("not supported by this storage"),
            StorageErrorKind::NoSpace => Error::NoSpace,
            StorageErrorKind::Transient | StorageErrorKind::Permanent => Error::Backend(e),
        }
    }
}

impl Error {
    /// True when the failure was a refusal (for audit `denied` vs `error`).
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            Error::Denied { .. } | Error::InvalidPath(_) | Error::Invalid(_)
        )
    }

    /// A message safe to show a client: no backend paths or internals.
    pub fn client_message(&self) -> String {
        match self {
            Error::Backend(e) if e.kind == StorageErrorKind::Transient => {
                "storage temporarily unavailable, try again".into()
            }
            Error::Backend(_) => "storage error".into(),
            Error::Audit(_) => "audit log unavailable; operation refused".into(),
            other => other.to_string(),
        }
    }
}
