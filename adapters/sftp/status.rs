//! The one place a `vfs::Error` becomes an SFTP status: code plus a message in OpenSSH's wording
//! (sftp-server's `status_to_message`: "No such file", "Permission denied", "Failure", ...), which
//! clients and their test suites match on. Failures and unsupported operations add the reason
//! after a colon ("Failure: already exists"). No backend detail reaches the client.

use russh_sftp::protocol::StatusCode;

use crate::vfs;

/// An error reply.
#[derive(Debug)]
pub(super) struct Reply {
    pub code: StatusCode,
    pub message: String,
}

/// OpenSSH's message for a status code, with `detail` after it where OpenSSH's would be vague.
pub(super) fn wording(code: StatusCode, detail: &str) -> String {
    let base = match code {
        StatusCode::Ok => "Success",
        StatusCode::Eof => "End of file",
        StatusCode::NoSuchFile => "No such file",
        StatusCode::PermissionDenied => "Permission denied",
        StatusCode::Failure => "Failure",
        StatusCode::BadMessage => "Bad message",
        StatusCode::NoConnection => "No connection",
        StatusCode::ConnectionLost => "Connection lost",
        StatusCode::OpUnsupported => "Operation unsupported",
    };
    match code {
        StatusCode::Failure | StatusCode::OpUnsupported if !detail.is_empty() => {
            format!("{base}: {detail}")
        }
        _ => base.to_string(),
    }
}

pub(super) fn bad(code: StatusCode, detail: &str) -> Reply {
    Reply {
        code,
        message: wording(code, detail),
    }
}

pub(super) fn status_of(e: &vfs::Error) -> Reply {
    use vfs::Error as E;
    let code = match e {
        E::Denied { .. } | E::InvalidPath(_) => StatusCode::PermissionDenied,
        E::NotFound => StatusCode::NoSuchFile,
        E::Unsupported(_) => StatusCode::OpUnsupported,
        E::AlreadyExists
        | E::NotEmpty
        | E::WrongKind(_)
        | E::Backend(_)
        | E::Audit(_)
        | E::Invalid(_)
        | E::NoSpace => StatusCode::Failure,
    };
    if let E::Backend(b) = e {
        tracing::warn!(error = %b, "storage error");
    }
    bad(code, &e.client_message())
}
