//! Who is calling: `Authorization: Basic`, `Authorization: Bearer <api key>` or `X-Api-Key`,
//! checked through the core's one login path (bans, `allowed_ips`, `protocols`, audit of
//! refusals). Clients get a generic 401; the reason goes to the audit log.

use axum::extract::FromRequestParts;
use base64::Engine;
use http::HeaderMap;
use http::request::Parts;

use super::{ApiError, AppState, ConnInfo};
use crate::core::LoginError;
use crate::identity::{Credentials, Protocol};
use crate::secret::Secret;
use crate::session::Session;

/// Credentials as presented, owned.
#[derive(Debug)]
pub(crate) enum Presented {
    /// `Authorization: Basic`.
    Basic {
        user: String,
        password: Secret<String>,
    },
    /// `Authorization: Bearer <api key>` or `X-Api-Key`.
    Token { token: Secret<String> },
}

impl Presented {
    /// The core's view of them.
    pub fn credentials(&self) -> Credentials<'_> {
        match self {
            Presented::Basic { user, password } => Credentials::Password {
                user,
                password: Secret::new(password.expose().as_str()),
            },
            Presented::Token { token } => Credentials::ApiKey(Secret::new(token.expose().as_str())),
        }
    }
}

/// Reads credentials from headers; `Ok(None)` when none were sent.
pub(crate) fn presented(headers: &HeaderMap) -> Result<Option<Presented>, ApiError> {
    if let Some(v) = headers.get("x-api-key") {
        let token = v
            .to_str()
            .map_err(|_| ApiError::unauthorized())?
            .trim()
            .to_string();
        return Ok(Some(Presented::Token {
            token: Secret::new(token),
        }));
    }
    let Some(v) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| ApiError::unauthorized())?;
    let (scheme, rest) = v.split_once(' ').ok_or_else(ApiError::unauthorized)?;
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| ApiError::unauthorized())?;
            let text = String::from_utf8(raw).map_err(|_| ApiError::unauthorized())?;
            let (user, password) = text.split_once(':').ok_or_else(ApiError::unauthorized)?;
            Ok(Some(Presented::Basic {
                user: user.to_string(),
                password: Secret::new(password.to_string()),
            }))
        }
        "bearer" => Ok(Some(Presented::Token {
            token: Secret::new(rest.trim().to_string()),
        })),
        _ => Err(ApiError::unauthorized()),
    }
}

/// Maps a refused or unrecordable login to its response: 401 for bad credentials (and locked
/// accounts, so a lock does not tell which names exist), 429 for a banned address, 503 with
/// `Retry-After` when the password checks are saturated.
pub(crate) fn login_error(e: LoginError) -> ApiError {
    use crate::identity::AuthError;
    match e {
        LoginError::Refused(AuthError::Banned) => ApiError::new(
            http::StatusCode::TOO_MANY_REQUESTS,
            "banned",
            "too many failed logins from this address; try again later",
        ),
        LoginError::Refused(
            AuthError::Busy | AuthError::TooManyAttempts | AuthError::StoreUnavailable,
        ) => ApiError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many logins in progress; try again later",
        )
        .with_header(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        ),
        LoginError::Refused(_) => ApiError::unauthorized(),
        LoginError::Audit(a) => ApiError::from(crate::vfs::Error::Audit(a)),
    }
}

/// The remote address of a request.
pub(crate) fn remote(parts: &Parts) -> std::net::SocketAddr {
    parts
        .extensions
        .get::<ConnInfo>()
        .map(|c| c.remote)
        .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// An authenticated caller (files, audit and metrics endpoints).
pub(crate) struct Authenticated(pub Session);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let remote = remote(parts);
        let Some(p) = presented(&parts.headers)? else {
            return Err(ApiError::unauthorized());
        };
        let session = state
            .core
            .login(&p.credentials(), Protocol::Http, remote, false)
            .await
            .map_err(login_error)?;
        Ok(Self(session))
    }
}

/// An authenticated operator.
pub(crate) struct Operator(pub Session);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated(s) = Authenticated::from_request_parts(parts, state).await?;
        if !s.principal.is_operator() {
            return Err(ApiError::forbidden("operators only"));
        }
        Ok(Self(s))
    }
}
