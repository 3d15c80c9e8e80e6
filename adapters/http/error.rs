//! `ApiError`: every HTTP error the gateway itself produces, as JSON
//! `{"error": "<code>", "message": "..."}`. The one place `vfs::Error` becomes a status code; no
//! internal path or backend detail reaches a client.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::vfs;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    /// Status code.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Extra headers (`WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    /// What a `[[validate]]` rule found (422 `validation_failed`).
    pub details: Vec<String>,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
            details: Vec::new(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401 with a Basic challenge.
    pub fn unauthorized() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "authentication required or refused",
        );
        e.headers.push((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"gatehouse\", charset=\"UTF-8\""),
        ));
        e
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl From<vfs::Error> for ApiError {
    fn from(e: vfs::Error) -> Self {
        use vfs::Error as E;
        let msg = e.client_message();
        match &e {
            E::Denied { .. } => Self::forbidden(msg),
            E::InvalidPath(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_path", msg),
            E::NotFound => Self::not_found(msg),
            E::AlreadyExists | E::NotEmpty | E::WrongKind(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", msg)
            }
            E::Unsupported(_) => Self::new(StatusCode::BAD_REQUEST, "unsupported", msg),
            E::NoSpace => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                msg,
            ),
            E::Backend(b) if b.kind == vfs::backend::StorageErrorKind::Transient => {
                tracing::warn!(error = %b, "storage error");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg)
            }
            E::Backend(b) => {
                tracing::warn!(error = %b, "storage error");
                Self::new(StatusCode::BAD_GATEWAY, "storage_error", msg)
            }
            E::Audit(a) => {
                tracing::error!(error = %a, "audit log unavailable");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable", msg)
            }
            E::Invalid(r) => {
                let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", msg);
                e.details = r.details.clone();
                e
            }
        }
    }
}

/// The JSON body of every error the gateway itself answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code (`not_found`, `forbidden`, `invalid_path`, ...).
    pub error: &'static str,
    /// What went wrong, for people. Never an internal path or backend detail.
    pub message: String,
    /// For `validation_failed`: the first problems, each with its line or JSON pointer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: self.message,
            details: self.details,
        };
        let mut resp = (self.status, Json(body)).into_response();
        for (k, v) in self.headers {
            resp.headers_mut().append(k, v);
        }
        resp
    }
}
