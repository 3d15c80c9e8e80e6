//! Who is calling a route: authentication per the route's schemes through the core's one login
//! path (bans, audit of refusals), then the route's `users` / `groups` allow-list. Also the audit
//! record every proxied call ends in.

use std::net::SocketAddr;

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use super::super::ApiError;
use super::super::auth::{Presented, login_error, presented};
use crate::audit::{AuditAction, AuditEvent, Outcome};
use crate::core::Core;
use crate::identity::{Credentials, Protocol};
use crate::route::{Access, AuthScheme};
use crate::secret::Secret;
use crate::session::{Session, new_id};

/// Who is calling, and the key their rate limit is counted under.
pub(super) struct Caller {
    pub session: Option<Session>,
    pub key: String,
}

fn bearer_is_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Authenticates per `schemes`, then applies `access`. A refusal comes with the reason for the
/// audit record.
pub(super) async fn authenticate(
    core: &Core,
    schemes: &[AuthScheme],
    access: &Access,
    headers: &HeaderMap,
    remote: SocketAddr,
) -> Result<Caller, (ApiError, String)> {
    let anonymous = || Caller {
        session: None,
        key: format!("ip:{}", remote.ip()),
    };
    if schemes == [AuthScheme::None] {
        return Ok(anonymous());
    }
    let challenge = || {
        let mut e = ApiError::unauthorized();
        if !schemes.contains(&AuthScheme::Basic) {
            e.headers.retain(|(k, _)| k != header::WWW_AUTHENTICATE);
            e.headers.push((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gatehouse\""),
            ));
        }
        e
    };
    let p = presented(headers).map_err(|e| (e, "malformed credentials".to_string()))?;
    let is_bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    let creds = match &p {
        None => return Err((challenge(), "no credentials".into())),
        Some(Presented::Basic { .. }) if schemes.contains(&AuthScheme::Basic) => {
            p.as_ref().map(Presented::credentials)
        }
        Some(Presented::Token { token })
            if is_bearer && schemes.contains(&AuthScheme::Jwt) && bearer_is_jwt(token.expose()) =>
        {
            Some(Credentials::Jwt(Secret::new(token.expose().as_str())))
        }
        Some(Presented::Token { .. }) if schemes.contains(&AuthScheme::ApiKey) => {
            p.as_ref().map(Presented::credentials)
        }
        Some(_) => {
            return Err((
                challenge(),
                "credentials of a scheme this route does not accept".into(),
            ));
        }
    };
    let Some(creds) = creds else {
        return Err((challenge(), "no credentials".into()));
    };
    let session = match core.login(&creds, Protocol::Http, remote, false).await {
        Ok(s) => s,
        Err(e) => {
            let why = e.to_string();
            let resp = match login_error(e) {
                r if r.status == StatusCode::UNAUTHORIZED => challenge(),
                r => r,
            };
            return Err((resp, why));
        }
    };
    let principal = &session.principal;
    if !access.admits(principal.name(), principal.groups()) {
        return Err((
            ApiError::forbidden("this route is not open to you"),
            format!("user {} not in the route's users/groups", principal.name()),
        ));
    }
    Ok(Caller {
        key: format!("user:{}", principal.name()),
        session: Some(session),
    })
}

/// The `proxy` audit record of one call.
pub(super) fn proxy_event(
    session: Option<&Session>,
    remote: SocketAddr,
    path: &str,
    status: StatusCode,
    outcome: Outcome,
    detail: String,
) -> AuditEvent {
    let mut ev = match session {
        Some(s) => AuditEvent::for_session(s, AuditAction::Proxy, outcome),
        None => {
            let mut ev = AuditEvent::new(AuditAction::Proxy, outcome);
            ev.protocol = Some(Protocol::Http);
            ev.session = Some(new_id());
            ev.remote = Some(remote);
            ev
        }
    };
    ev.path = Some(path.to_string());
    ev.status = Some(status.as_u16());
    ev.detail = Some(detail);
    ev
}
