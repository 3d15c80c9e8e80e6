//! `GET /v1/audit`: the records `audit query` prints, for operators, as JSON Lines, streamed
//! from the files. Filters as query parameters (`user`, `protocol`, `action`, `outcome`,
//! `path_prefix`, `since`, `until`, `limit`), paginated by `after_seq` (pass the last `seq` you
//! received to get the next page; at most 10000 records per page, 1000 by default).

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{StatusCode, header};
use serde::Deserialize;

use super::auth::Operator;
use super::ops::RouteLabel;
use super::{ApiError, AppState};
use crate::audit::query::{Filter, normalise_time, query};

const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/v1/audit", get(audit))
}

/// Query parameters of `/v1/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    /// Records of this user.
    user: Option<String>,
    /// `sftp`, `ftp` or `http`.
    #[param(pattern = "^(sftp|ftp|http)$")]
    protocol: Option<String>,
    /// `login`, `logout`, `upload`, `download`, `delete`, `mkdir`, `rmdir`, `rename`, `list`,
    /// `proxy` or `config`.
    #[param(
        pattern = "^(login|logout|upload|download|delete|mkdir|rmdir|rename|list|proxy|config)$"
    )]
    action: Option<String>,
    /// `ok`, `denied` or `error`.
    #[param(pattern = "^(ok|denied|error)$")]
    outcome: Option<String>,
    /// Records whose path starts with this.
    path_prefix: Option<String>,
    /// RFC 3339; records at or after it.
    #[param(format = DateTime)]
    since: Option<String>,
    /// RFC 3339; records before it.
    #[param(format = DateTime)]
    until: Option<String>,
    /// The last `seq` of the previous page.
    after_seq: Option<u64>,
    /// Records per page (default 1000, at most 10000).
    #[param(maximum = 10000)]
    limit: Option<usize>,
}

/// Audit records matching the filters, oldest first, as JSON Lines (one `AuditRecord` per
/// line), streamed. Operators only.
#[utoipa::path(get, path = "/v1/audit", tag = "operators",
    params(AuditParams),
    responses(
        (status = 200, description = "JSON Lines: one AuditRecord per line", content_type = "application/x-ndjson", body = super::openapi::AuditRecord),
        (status = 400, description = "A filter is malformed", body = super::ErrorBody),
        (status = 401, description = "No credentials, or refused ones", body = super::ErrorBody),
        (status = 403, description = "Not an operator", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []), ("api_key" = [])))]
pub(crate) async fn audit(
    State(state): State<AppState>,
    Operator(_op): Operator,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let mut resp = match run(&state, params).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    resp.extensions_mut()
        .insert(RouteLabel(crate::telemetry::Label::const_str("audit")));
    resp
}

async fn run(
    state: &AppState,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let time = |v: Option<String>, name: &str| {
        v.map(|t| normalise_time(&t).map_err(|e| ApiError::bad_request(format!("{name}: {e}"))))
            .transpose()
    };
    let check = |v: &Option<String>, allowed: &[&str], name: &str| match v {
        Some(x) if !allowed.contains(&x.as_str()) => Err(ApiError::bad_request(format!(
            "{name} must be one of {}",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    };
    check(&p.protocol, &["sftp", "ftp", "http"], "protocol")?;
    check(&p.outcome, &["ok", "denied", "error"], "outcome")?;
    check(
        &p.action,
        &[
            "login", "logout", "upload", "download", "delete", "mkdir", "rmdir", "rename", "list",
            "proxy", "config",
        ],
        "action",
    )?;
    if p.limit.is_some_and(|l| l > MAX_LIMIT) {
        return Err(ApiError::bad_request(format!(
            "limit must be at most {MAX_LIMIT} (page with after_seq)"
        )));
    }
    let filter = Filter {
        user: p.user,
        protocol: p.protocol,
        action: p.action,
        outcome: p.outcome,
        path_prefix: p.path_prefix,
        since: time(p.since, "since")?,
        until: time(p.until, "until")?,
        after_seq: p.after_seq,
        limit: Some(p.limit.unwrap_or(DEFAULT_LIMIT)),
    };
    let dir = state.core.audit.dir().to_path_buf();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    // The files are read on a blocking thread; the channel's bound is the backpressure.
    tokio::task::spawn_blocking(move || {
        let r = query(&dir, &filter, |_, line| {
            let mut l = String::with_capacity(line.len() + 1);
            l.push_str(line);
            l.push('\n');
            tx.blocking_send(Ok(Bytes::from(l))).is_ok()
        });
        if let Err(e) = r {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
