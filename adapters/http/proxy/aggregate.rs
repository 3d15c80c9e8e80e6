//! `[[aggregates]]`: one GET fans out to every part in parallel and answers one JSON object
//! keyed by part. A part that fails, times out, answers non-2xx or not JSON is `null`, and its
//! key is listed in `X-Gatehouse-Partial`.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;

use std::net::SocketAddr;
use std::time::Instant;

use super::super::{ApiError, AppState};
use super::caller::{authenticate, proxy_event};
use super::forward::{Client, X_FORWARDED_FOR, X_GATEHOUSE_USER};
use super::{denied, rate_limited};
use crate::audit::Outcome;
use crate::route::Aggregate;
use crate::session::Session;

async fn fetch(
    client: &Client,
    url: &str,
    headers: &HeaderMap,
    timeout: Duration,
    max_bytes: usize,
) -> Option<serde_json::Value> {
    let mut req = Request::get(url).body(Body::empty()).ok()?;
    *req.headers_mut() = headers.clone();
    let resp = tokio::time::timeout(timeout, async {
        let resp = client.request(req).await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = http_body_util::Limited::new(resp.into_body(), max_bytes)
            .collect()
            .await
            .ok()?
            .to_bytes();
        Some(body)
    })
    .await
    .ok()??;
    serde_json::from_slice(&resp).ok()
}

/// Answers an aggregate; returns the response and the names of failed parts.
pub(crate) async fn run(
    client: &Client,
    agg: &Aggregate,
    request_id: Option<&HeaderValue>,
    user: Option<&str>,
    forwarded_for: &str,
) -> (Response, Vec<String>) {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = request_id {
        headers.insert(HeaderName::from_static("x-request-id"), id.clone());
    }
    if let Some(u) = user.and_then(|u| HeaderValue::from_str(u).ok()) {
        headers.insert(X_GATEHOUSE_USER, u);
    }
    if let Ok(v) = HeaderValue::from_str(forwarded_for) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    let parts = futures::future::join_all(agg.parts.iter().map(|(key, url)| async {
        (
            key.clone(),
            fetch(client, url, &headers, agg.timeout, agg.max_part_bytes).await,
        )
    }))
    .await;
    let mut out = serde_json::Map::new();
    let mut failed = Vec::new();
    for (key, value) in parts {
        if value.is_none() {
            failed.push(key.clone());
        }
        out.insert(key, value.unwrap_or(serde_json::Value::Null));
    }
    let mut resp = (StatusCode::OK, axum::Json(serde_json::Value::Object(out))).into_response();
    if !failed.is_empty()
        && let Ok(v) = HeaderValue::from_str(&failed.join(", "))
    {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-gatehouse-partial"), v);
    }
    (resp, failed)
}

/// Runs an aggregate route: authenticate, rate limit, fan out, one detached record.
pub(super) async fn handle(
    state: &AppState,
    routing: &super::Routing,
    agg: &Aggregate,
    req: axum::extract::Request,
    remote: SocketAddr,
    started: Instant,
) -> Response {
    let core = &state.core;
    let path = req.uri().path().to_string();
    let deny = |session: Option<&Session>, resp: ApiError, why: String| {
        denied(
            &core.audit,
            session,
            remote,
            &path,
            resp,
            format!("aggregate={} {why}", agg.name),
        )
    };
    let caller = match authenticate(core, &agg.auth, &agg.access, req.headers(), remote).await {
        Ok(c) => c,
        Err((resp, why)) => return deny(None, resp, why),
    };
    if let Some(a) = routing.aggregates.get(&agg.name)
        && let Err(limited) = a.limits.check(&caller.key).await
    {
        let (resp, why) = rate_limited(limited);
        return deny(caller.session.as_ref(), resp, why.into());
    }
    let user = caller
        .session
        .as_ref()
        .map(|s| s.principal.name().to_string());
    let (resp, failed) = run(
        &super::forward::local(&state.proxy.client),
        agg,
        req.headers().get("x-request-id"),
        user.as_deref(),
        &remote.ip().to_string(),
    )
    .await;
    let mut detail = format!(
        "aggregate={} ms={}",
        agg.name,
        started.elapsed().as_millis()
    );
    if !failed.is_empty() {
        detail.push_str(&format!(" partial={}", failed.join(",")));
    }
    let ev = proxy_event(
        caller.session.as_ref(),
        remote,
        &path,
        resp.status(),
        Outcome::Ok,
        detail,
    );
    core.audit.record_detached(ev);
    resp
}
