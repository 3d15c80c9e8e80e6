//! Operations endpoints: `/healthz` (process up), `/readyz` (every backend answers),
//! `/metrics` (Prometheus text; operators, or anyone on `metrics_listen`), and the request
//! middleware that logs each request and feeds the latency histogram.

use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use metrics_exporter_prometheus::PrometheusHandle;

use super::auth::Operator;
use super::{ApiError, AppState};
use crate::telemetry;

/// The route label a handler sets on its response for metrics (`files`, `audit`, a proxy
/// route's name, ...).
#[derive(Debug, Clone)]
pub(crate) struct RouteLabel(pub telemetry::Label);

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The router of a `metrics_listen` listener.
pub(crate) fn metrics_only_router(handle: Option<PrometheusHandle>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move { render(handle.as_ref()) }
        }),
    )
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = super::openapi::Status)))]
pub(crate) async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let sha = state
        .core
        .config_sha256
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({"status": "ok", "config_sha256": sha})),
    )
}

/// Readiness: every storage backend answers and the gateway is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = super::openapi::Status),
        (status = 503, description = "A backend is unreachable, the shared store is down with on_store_error = closed, or shutting down", body = super::openapi::Status),
    ))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let bad = state.core.vfs.unready_backends().await;
    // The shared store: shown when there is one; down with `on_store_error = "closed"` means
    // this node refuses logins and rate-limited routes, so it is not ready.
    let store = state.core.cluster.as_ref().map(|c| {
        let up = c.is_up();
        (
            up,
            c.on_error(),
            serde_json::json!({
                "store": if up { "up" } else { "down" },
                "on_store_error": c.on_error().as_str(),
            }),
        )
    });
    let store_refuses = store
        .as_ref()
        .is_some_and(|(up, mode, _)| !up && *mode == crate::config::StoreErrorMode::Closed);
    let (status, mut body) = if state.core.shutdown.is_triggered() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "shutting_down"}),
        )
    } else if !bad.is_empty() || store_refuses {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unready", "backends": bad}),
        )
    } else {
        (StatusCode::OK, serde_json::json!({"status": "ready"}))
    };
    if let (Some((_, _, c)), Some(obj)) = (store, body.as_object_mut()) {
        obj.insert("cluster".into(), c);
    }
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

/// Prometheus metrics (operators only; or unauthenticated on `metrics_listen`).
#[utoipa::path(get, path = "/metrics", tag = "operators",
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String),
        (status = 401, description = "No credentials, or refused ones", body = super::ErrorBody),
        (status = 403, description = "Not an operator", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []), ("api_key" = [])))]
pub(crate) async fn metrics(State(state): State<AppState>, _op: Operator) -> Response {
    render(state.metrics.as_ref())
}

fn render(handle: Option<&PrometheusHandle>) -> Response {
    match handle {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "metrics recorder not installed",
        )
        .into_response(),
    }
}

/// Logs the request and records its latency under the handler's route label.
/// HTTP/1.1 requests must carry exactly one `Host` (RFC 9112 3.2): none, or two that may
/// disagree, is a 400 before anything else looks at the request.
pub(crate) async fn require_host(req: Request, next: Next) -> Response {
    if req.version() == http::Version::HTTP_11
        && req.headers().get_all(http::header::HOST).iter().count() != 1
    {
        return super::ApiError::bad_request("HTTP/1.1 requests need exactly one Host header")
            .into_response();
    }
    next.run(req).await
}

pub(crate) async fn trace(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    // Kept by reference count, not copied: the path (only; query strings may carry tokens)
    // and the request id are read only for the log line.
    let uri = req.uri().clone();
    let request_id = req.headers().get("x-request-id").cloned();
    let resp = next.run(req).await;
    let status = resp.status();
    let other = telemetry::Label::const_str("other");
    let route = resp
        .extensions()
        .get::<RouteLabel>()
        .map_or(&other, |r| &r.0);
    let elapsed = start.elapsed();
    telemetry::per_route::time(
        telemetry::HTTP_SECONDS,
        route,
        status,
        elapsed.as_secs_f64(),
    );
    let path = uri.path();
    let request_id = request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let route = route.as_ref();
    if status.is_server_error() {
        tracing::warn!(%method, %path, status = status.as_u16(), %route, %request_id, ms = elapsed.as_millis() as u64, "http request");
    } else {
        tracing::debug!(%method, %path, status = status.as_u16(), %route, %request_id, ms = elapsed.as_millis() as u64, "http request");
    }
    resp
}
