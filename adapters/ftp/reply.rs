//! The one place a `vfs::Error` becomes an FTP reply (libunftp `ErrorKind`): 550 denied or
//! missing, 553 name not allowed, 502 not supported here, 450/451 transient and local failures.

use unftp_core::storage::{Error, ErrorKind};

use crate::vfs;

pub(super) fn to_ftp(e: vfs::Error) -> Error {
    use vfs::Error as E;
    let kind = match &e {
        E::Denied { .. } => ErrorKind::PermissionDenied,
        E::InvalidPath(_) => ErrorKind::FileNameNotAllowedError,
        E::NotFound | E::AlreadyExists | E::WrongKind(_) => ErrorKind::PermanentFileNotAvailable,
        E::NotEmpty => ErrorKind::PermanentDirectoryNotEmpty,
        E::Unsupported(_) => ErrorKind::CommandNotImplemented,
        E::NoSpace => ErrorKind::InsufficientStorageSpaceError,
        E::Backend(b) if b.kind == vfs::backend::StorageErrorKind::Transient => {
            tracing::warn!(error = %b, "storage error");
            ErrorKind::TransientFileNotAvailable
        }
        E::Backend(b) => {
            tracing::warn!(error = %b, "storage error");
            ErrorKind::LocalError
        }
        E::Audit(a) => {
            tracing::error!(error = %a, "audit log unavailable");
            ErrorKind::LocalError
        }
    };
    Error::new(kind, ClientMessage(e.client_message()))
}

/// The message libunftp may show: never a backend path.
#[derive(Debug)]
struct ClientMessage(String);

impl std::fmt::Display for ClientMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientMessage {}
