//! The one place a `vfs::Error` becomes an FTP reply (libunftp `ErrorKind` for the code, the
//! core's client message for the text): 550 denied or missing, 553 name not allowed, 502 not
//! supported here, 450/451 transient and local failures, 452 storage full.

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
        // 552 for a file over its size limit, 553 for content its rule refuses.
        E::Invalid(r) if r.too_large => ErrorKind::ExceededStorageAllocationError,
        E::Invalid(_) => ErrorKind::FileNameNotAllowedError,
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
    Error::with_client_message(kind, sentence(&e))
}

/// The reply text: the core's client message (never a backend path or internal detail) as a
/// sentence, with the wording FTP clients and their tests expect for the common cases
/// ("No such file or directory", "File exists", as pyftpdlib and OpenSSH say them).
fn sentence(e: &vfs::Error) -> String {
    if let vfs::Error::AlreadyExists = e {
        return "File exists".into();
    }
    let msg = e.client_message();
    let mut chars = msg.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => msg,
    }
}
