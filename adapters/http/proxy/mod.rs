//! The API gateway: requests no built-in endpoint takes go through named phases (pingora
//! style): match the route → authenticate → rate limit → cache lookup → forward (round robin,
//! retries for replayable idempotent requests) → response transforms → cache store → audit and
//! metrics when the response body has been sent. Bodies stream both ways.

mod aggregate;
mod body;
mod cache;
mod caller;
mod forward;
mod routing;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::ops::RouteLabel;
use super::{ApiError, AppState, ConnInfo};
use crate::audit::{AuditLog, Outcome};
use crate::core::Core;
use crate::route::{AuthScheme, Route, RouteMatch, normalize_path};
use crate::session::Session;
use crate::telemetry;
use body::{Store, Tracked};
use cache::ResponseCache;
use caller::{authenticate, proxy_event};
pub(crate) use forward::Client;
use routing::Routing;

/// Everything the proxy keeps between requests.
pub(crate) struct Proxy {
    client: Client,
    routing: Arc<routing::Current>,
}

impl Proxy {
    /// Builds pools, limiters and the cache, and starts health checks and limiter pruning
    /// (they stop at shutdown).
    pub fn start(core: &Arc<Core>) -> Result<Arc<Self>, String> {
        let client = forward::client()?;
        let routing = routing::Current::start(core, &client);
        Ok(Arc::new(Self { client, routing }))
    }

    /// The routes in effect now (a reload may have replaced them).
    fn routing(&self, core: &Core) -> Arc<Routing> {
        self.routing.get(core, &self.client)
    }
}

/// The fallback handler. The path is normalised first, so the route that matches is the one
/// whose upstream gets the request (`/public/../admin` is `/admin`; encoded dot segments and
/// slashes are refused).
pub(crate) async fn handle(State(state): State<AppState>, mut req: Request) -> Response {
    let started = Instant::now();
    let info = req.extensions().get::<ConnInfo>().copied();
    let remote = info.map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.remote);
    let core = state.core.clone();
    let normal = match normalize_path(req.uri().path()) {
        Ok(p) => p,
        Err(why) => {
            let e = ApiError::bad_request(format!("refused request path: {why}"));
            let ev = proxy_event(
                None,
                remote,
                &crate::refusals::capped_name(req.uri().path()).0,
                e.status,
                Outcome::Denied,
                format!("path refused: {why}"),
            );
            core.audit.record_detached(ev);
            return e.into_response();
        }
    };
    if normal != req.uri().path() {
        let pq = match req.uri().query() {
            Some(q) => format!("{normal}?{q}"),
            None => normal.clone(),
        };
        let mut parts = req.uri().clone().into_parts();
        match pq.parse() {
            Ok(x) => parts.path_and_query = Some(x),
            Err(_) => return ApiError::bad_request("refused request path").into_response(),
        }
        if let Ok(u) = http::Uri::from_parts(parts) {
            *req.uri_mut() = u;
        }
    }
    let routing = state.proxy.routing(&core);
    let (resp, label) = match routing.table.find(req.method().as_str(), req.uri().path()) {
        RouteMatch::None => (
            ApiError::not_found("no such endpoint").into_response(),
            telemetry::Label::const_str("none"),
        ),
        RouteMatch::MethodNotAllowed(r) => {
            let allow = r.methods.as_ref().map(|m| m.join(", ")).unwrap_or_default();
            let mut e = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            );
            if let Ok(v) = HeaderValue::from_str(&allow) {
                e = e.with_header(header::ALLOW, v);
            }
            (e.into_response(), route_label(&routing, r))
        }
        // Boxed: these futures are large, and every layer above moves (memcpy) whatever it
        // holds; a box keeps those moves to a pointer (memmove was 6% of a proxied request).
        RouteMatch::Aggregate(a) => (
            Box::pin(aggregate::handle(&state, &routing, a, req, remote, started)).await,
            telemetry::label(&a.name),
        ),
        RouteMatch::Route(r) => (
            Box::pin(run_route(&state, &routing, r, req, remote, started)).await,
            route_label(&routing, r),
        ),
    };
    let mut resp = resp;
    telemetry::per_route::count(telemetry::PROXY_REQUESTS, &label, resp.status());
    resp.extensions_mut().insert(RouteLabel(label));
    resp
}

/// A refusal: its detached `denied` record, and the response.
pub(super) fn denied(
    audit: &AuditLog,
    session: Option<&Session>,
    remote: SocketAddr,
    path: &str,
    resp: ApiError,
    detail: String,
) -> Response {
    let ev = proxy_event(session, remote, path, resp.status, Outcome::Denied, detail);
    audit.record_detached(ev);
    resp.into_response()
}

fn route_label(routing: &Routing, r: &Route) -> telemetry::Label {
    routing
        .routes
        .get(&r.name)
        .map_or_else(|| telemetry::label(&r.name), |rs| rs.label.clone())
}

fn gateway_error(status: StatusCode, code: &'static str, msg: &str) -> ApiError {
    ApiError::new(status, code, msg)
}

async fn run_route(
    state: &AppState,
    routing: &Routing,
    route: &Route,
    req: Request,
    remote: SocketAddr,
    started: Instant,
) -> Response {
    let core = &state.core;
    let info = req.extensions().get::<ConnInfo>().copied();
    let Some(rs) = routing.routes.get(&route.name) else {
        return gateway_error(StatusCode::BAD_GATEWAY, "bad_gateway", "route not ready")
            .into_response();
    };
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let audit = core.audit.clone();
    let deny = |session: Option<&Session>, resp: ApiError, why: String| {
        denied(
            &audit,
            session,
            remote,
            &path,
            resp,
            format!("route={} {why}", route.name),
        )
    };

    // Phase: authenticate (and the route's users/groups).
    let caller = match authenticate(core, &route.auth, &route.access, &parts.headers, remote).await
    {
        Ok(c) => c,
        Err((resp, why)) => return deny(None, resp, why),
    };
    // Phase: rate limit.
    if let Err(limited) = rs.limits.check(&caller.key).await {
        let (resp, why) = rate_limited(limited);
        return deny(caller.session.as_ref(), resp, why.into());
    }
    let user = caller
        .session
        .as_ref()
        .map(|s| s.principal.name().to_string());
    let public = route.auth == [AuthScheme::None];

    // Phase: cache lookup. The key holds everything forwarded that can change the answer:
    // the path and query, the caller (unless public) and the Host the upstream is told about.
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let cache_key = match (&routing.cache, route.cache) {
        (Some(_), Some(_)) if matches!(parts.method, Method::GET | Method::HEAD) => {
            Some(ResponseCache::base_key(
                &route.name,
                &parts.method,
                host,
                &path,
                parts.uri.query(),
                if public { None } else { user.as_deref() },
            ))
        }
        _ => None,
    };
    if let (Some(cache), Some(key)) = (&routing.cache, &cache_key)
        && ResponseCache::request_may_use(&parts.headers)
        && let Some(hit) = cache.get(key, &parts.headers).await
    {
        let mut resp = Response::builder()
            .status(hit.status)
            .body(Body::from(hit.body.clone()))
            .unwrap_or_default();
        *resp.headers_mut() = hit.headers.clone();
        resp.headers_mut().insert(
            HeaderName::from_static("x-cache"),
            HeaderValue::from_static("HIT"),
        );
        let ev = proxy_event(
            caller.session.as_ref(),
            remote,
            &path,
            hit.status,
            Outcome::Ok,
            format!("route={} cache=hit", route.name),
        );
        let mut ev = ev;
        ev.bytes = Some(hit.body.len() as u64);
        audit.record_detached(ev);
        return resp;
    }

    // Phase: forward.
    let upgrade = forward::is_upgrade(&parts.headers);
    let has_body = parts.headers.contains_key(header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    // The caller's headers are rewritten in place for the upstream; a copy is kept only when the
    // cache needs the request's own (its `Vary` check).
    let mut headers = if cache_key.is_some() {
        parts.headers.clone()
    } else {
        std::mem::take(&mut parts.headers)
    };
    forward::upstream_headers(
        &mut headers,
        route,
        &forward::Caller {
            remote,
            peer: info.map_or(remote, |c| c.peer),
            trusted_peer: info.is_some_and(|c| c.trusted_peer),
            tls: state.tls,
            user: user.as_deref(),
            strip_credentials: !(public && route.forward_credentials),
        },
        upgrade,
    );
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::PUT | Method::TRACE
    );
    // A streamed body cannot be sent twice: only requests without one are retried.
    let replayable = idempotent && !has_body && !upgrade;
    let mut req_parts = parts;
    // The client's side of a WebSocket upgrade, resolved once the 101 has been sent.
    let client_upgrade = upgrade
        .then(|| req_parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
        .flatten();
    let mut body = Some(body);
    let mut tried = Vec::new();
    // Every way the forward can fail: a gateway error to the client and a detached record.
    let fail = |status: StatusCode, code: &'static str, msg: &str, why: &str| {
        let e = gateway_error(status, code, msg);
        finish_error(
            &audit,
            caller.session.as_ref(),
            remote,
            &path,
            route,
            e,
            why,
            started,
        )
    };
    let (resp, target) = loop {
        let Some((idx, target)) = rs.pool.pick(&tried) else {
            return fail(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "no healthy upstream",
                "no healthy upstream",
            );
        };
        tried.push(idx);
        let uri = match forward::upstream_uri(route, &target.upstream, &path, req_parts.uri.query())
        {
            Ok(u) => u,
            Err(_) => {
                return fail(
                    StatusCode::BAD_GATEWAY,
                    "bad_gateway",
                    "cannot build the upstream request",
                    "bad upstream uri",
                );
            }
        };
        let b = body.take().unwrap_or_else(Body::empty);
        let can_retry = replayable && tried.len() <= route.retries as usize;
        // The last attempt takes the headers; one that may be retried sends a copy.
        let attempt_headers = if can_retry {
            headers.clone()
        } else {
            std::mem::take(&mut headers)
        };
        let Ok(upstream_req) = forward::build(&req_parts.method, uri, attempt_headers, b) else {
            return fail(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "cannot build the upstream request",
                "bad upstream request",
            );
        };
        let sent = Instant::now();
        let result = forward::send(
            &forward::local(&state.proxy.client),
            upstream_req,
            route.timeout,
        )
        .await
        .ok_or(());
        target.seconds.record(sent.elapsed().as_secs_f64());
        match result {
            Err(_) => {
                return fail(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway_timeout",
                    "the upstream did not answer in time",
                    &format!("timeout upstream={}", target.label),
                );
            }
            Ok(Err(err)) => {
                if err.is_connect() {
                    rs.pool.eject(&target);
                }
                tracing::warn!(route = %route.name, upstream = %target.label, error = %err, "upstream request failed");
                if can_retry {
                    continue;
                }
                return fail(
                    StatusCode::BAD_GATEWAY,
                    "bad_gateway",
                    "the upstream is unreachable",
                    &format!("upstream={} error", target.label),
                );
            }
            Ok(Ok(resp)) => {
                rs.pool.mark_ok(&target);
                if matches!(
                    resp.status(),
                    StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE
                ) && can_retry
                {
                    continue;
                }
                break (resp, target);
            }
        }
    };

    // Phase: response transforms.
    let (mut rparts, rbody) = resp.into_parts();
    let status = rparts.status;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        if let (Some(client), Some(up)) = (
            client_upgrade,
            rparts.extensions.remove::<hyper::upgrade::OnUpgrade>(),
        ) {
            forward::splice(client, up);
        }
    } else {
        forward::strip_hop_by_hop(&mut rparts.headers);
    }
    for name in &route.remove_response_headers {
        rparts.headers.remove(name.as_str());
    }
    for (k, v) in &route.add_response_headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            rparts.headers.insert(k, v);
        }
    }
    // Phase: cache store (as the body streams by).
    let mut store = None;
    if let (Some(cache), Some(key), Some(rule)) = (&routing.cache, cache_key, route.cache) {
        rparts.headers.insert(
            HeaderName::from_static("x-cache"),
            HeaderValue::from_static("MISS"),
        );
        if let Some(vary) = ResponseCache::storable(status, &req_parts.headers, &rparts.headers) {
            store = Some(Store {
                cache: cache.clone(),
                key,
                vary,
                req_headers: req_parts.headers.clone(),
                headers: rparts.headers.clone(),
                ttl: rule.ttl,
                max: rule.max_body_bytes as usize,
                buf: Some(BytesMut::new()),
            });
        }
    }
    // Phase: audit, once the body has gone out.
    let mut ev = proxy_event(
        caller.session.as_ref(),
        remote,
        &path,
        status,
        Outcome::Ok,
        String::new(),
    );
    ev.detail = Some(format!("route={} upstream={}", route.name, target.label));
    let body = Tracked {
        inner: Body::new(rbody),
        bytes: 0,
        started,
        audit: Some((audit, ev)),
        store,
    };
    Response::from_parts(rparts, Body::new(body))
}

#[allow(clippy::too_many_arguments)]
fn finish_error(
    audit: &AuditLog,
    session: Option<&Session>,
    remote: SocketAddr,
    path: &str,
    route: &Route,
    e: ApiError,
    why: &str,
    started: Instant,
) -> Response {
    let ev = proxy_event(
        session,
        remote,
        path,
        e.status,
        Outcome::Error,
        format!(
            "route={} {why} ms={}",
            route.name,
            started.elapsed().as_millis()
        ),
    );
    audit.record_detached(ev);
    e.into_response()
}

/// `429` with `Retry-After` (whole seconds, at least 1).
/// The answer to a request a rate limit refused, and the audit detail.
pub(super) fn rate_limited(limited: crate::ratelimit::Limited) -> (ApiError, &'static str) {
    match limited {
        crate::ratelimit::Limited::Wait(wait) => {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let resp = gateway_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "rate limit exceeded; retry later",
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from(secs));
            (resp, "rate limited")
        }
        crate::ratelimit::Limited::StoreUnavailable => {
            let resp = gateway_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "limits_unavailable",
                "the shared rate-limit store is unavailable; retry later",
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"));
            (resp, "rate limit store unavailable (on_store_error=closed)")
        }
    }
}
