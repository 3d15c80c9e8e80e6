//! The one place a `vfs::Error` becomes an SFTP status: code plus a message OpenSSH and
//! WinSCP show to the user. No backend detail reaches the client.

use russh_sftp::protocol::StatusCode;

use crate::vfs;

/// An error reply.
#[derive(Debug)]
pub(super) struct Reply {
    pub code: StatusCode,
    pub message: String,
}

pub(super) fn bad(code: StatusCode, message: &str) -> Reply {
    Reply {
        code,
        message: message.to_string(),
    }
}

pub(super) fn status_of(e: &vfs::Error) -> Reply {
    use vfs::Error as E;
    let code = match e {
        E::Denied { .. } | E::InvalidPath(_) => StatusCode::PermissionDenied,
        E::NotFound => StatusCode::NoSuchFile,
        E::Unsupported(_) => StatusCode::OpUnsupported,
        E::AlreadyExists | E::NotEmpty | E::WrongKind(_) | E::Backend(_) | E::Audit(_) => {
            StatusCode::Failure
        }
    };
    if let E::Backend(b) = e {
        tracing::warn!(error = %b, "storage error");
    }
    Reply {
        code,
        message: e.client_message(),
    }
}
