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
use crate::audit::query::{Filter, normalise_time};

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
    /// Records of this session id.
    session: Option<String>,
    /// Records from this client address (IP).
    remote: Option<String>,
    /// Words in the detail (the last may be a prefix).
    text: Option<String>,
    /// The last `seq` of the previous page (oldest first).
    after_seq: Option<u64>,
    /// Records before this `seq` (with `order=desc`: the last `seq` of the previous page).
    before_seq: Option<u64>,
    /// `asc` (oldest first, the default) or `desc` (newest first).
    #[param(pattern = "^(asc|desc)$")]
    order: Option<String>,
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
    check(&p.order, &["asc", "desc"], "order")?;
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
        session: p.session,
        remote: p.remote,
        text: p.text,
        after_seq: p.after_seq,
        before_seq: p.before_seq,
        newest_first: p.order.as_deref() == Some("desc"),
        limit: Some(p.limit.unwrap_or(DEFAULT_LIMIT)),
    };
    if filter.newest_first && state.core.index.is_none() {
        return Err(ApiError::bad_request(
            "order=desc needs the audit index, which is unavailable (see the gateway's log)",
        ));
    }
    let body = jsonl_body(&state.core, filter).await;
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

/// The matching records as a streamed JSON Lines body: from the index when it has caught up
/// with the log, else from the files.
pub(crate) async fn jsonl_body(core: &crate::core::Core, filter: Filter) -> Body {
    lines_body(core, filter, |_, line| {
        let mut l = String::with_capacity(line.len() + 1);
        l.push_str(line);
        l.push('\n');
        l
    })
    .await
}

/// The matching records, each turned into a piece of a streamed body by `render` (which gets
/// the record and its stored line).
pub(crate) async fn lines_body(
    core: &crate::core::Core,
    filter: Filter,
    render: impl Fn(&crate::audit::Record, &str) -> String + Send + 'static,
) -> Body {
    let db = core.current_index().await.map(|ix| ix.path().to_path_buf());
    let dir = core.audit.dir().to_path_buf();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    // Read on a blocking thread; the channel's bound is the backpressure.
    tokio::task::spawn_blocking(move || {
        let r = crate::audit::index_query::search(db.as_deref(), &dir, &filter, |rec, line| {
            tx.blocking_send(Ok(Bytes::from(render(rec, line)))).is_ok()
        });
        if let Err(e) = r {
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    Body::from_stream(tokio_stream_from(rx))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
