//! The API gateway: requests no built-in endpoint takes go through named phases (pingora
//! style): match the route → authenticate → rate limit → cache lookup → forward (round robin,
//! retries for replayable idempotent requests) → response transforms → cache store → audit and
//! metrics when the response body has been sent. Bodies stream both ways.

mod aggregate;
mod cache;
mod forward;
mod limit;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body::{Body as HttpBody, Frame};

use super::auth::{Presented, login_error, presented};
use super::ops::RouteLabel;
use super::{ApiError, AppState, ConnInfo};
use crate::audit::{AuditAction, AuditEvent, AuditLog, Outcome};
use crate::core::Core;
use crate::identity::{Credentials, Protocol};
use crate::route::{AuthScheme, Route, RouteMatch};
use crate::secret::Secret;
use crate::session::{Session, new_id};
use crate::telemetry;
use cache::ResponseCache;
pub(crate) use forward::Client;
use upstream::Pool;

struct RouteState {
    pool: Arc<Pool>,
    limits: limit::Limits,
}

/// Everything the proxy keeps between requests.
pub(crate) struct Proxy {
    client: Client,
    routes: HashMap<String, RouteState>,
    cache: Option<ResponseCache>,
}

impl Proxy {
    /// Builds pools, limiters and the cache, and starts health checks and limiter pruning
    /// (they stop at shutdown).
    pub fn start(core: &Arc<Core>) -> Result<Arc<Self>, String> {
        let client = forward::client()?;
        let mut routes = HashMap::new();
        let mut max_ttl = Duration::ZERO;
        for r in core.routes.routes() {
            let pool = Arc::new(Pool::new(r));
            if let Some(hc) = &r.health_check {
                tokio::spawn(pool.clone().health_loop(
                    client.clone(),
                    hc.path.clone(),
                    hc.interval,
                    core.shutdown.token.clone(),
                ));
            }
            if let Some(c) = r.cache {
                max_ttl = max_ttl.max(c.ttl);
            }
            routes.insert(
                r.name.clone(),
                RouteState {
                    pool,
                    limits: limit::Limits::new(r),
                },
            );
        }
        let proxy = Arc::new(Self {
            client,
            routes,
            cache: (max_ttl > Duration::ZERO).then(|| ResponseCache::new(max_ttl)),
        });
        let p = proxy.clone();
        let stop = core.shutdown.token.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
                for r in p.routes.values() {
                    r.limits.prune();
                }
            }
        });
        Ok(proxy)
    }
}

/// The fallback handler.
pub(crate) async fn handle(State(state): State<AppState>, req: Request) -> Response {
    let started = Instant::now();
    let remote = req
        .extensions()
        .get::<ConnInfo>()
        .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.remote);
    let core = state.core.clone();
    let (resp, label) = match core.routes.find(req.method().as_str(), req.uri().path()) {
        RouteMatch::None => (
            ApiError::not_found("no such endpoint").into_response(),
            "none".to_string(),
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
            (e.into_response(), r.name.clone())
        }
        RouteMatch::Aggregate(a) => (
            run_aggregate(&state, a, req, remote, started).await,
            a.name.clone(),
        ),
        RouteMatch::Route(r) => (
            run_route(&state, r, req, remote, started).await,
            r.name.clone(),
        ),
    };
    let mut resp = resp;
    metrics::counter!(telemetry::PROXY_REQUESTS, "route" => label.clone(), "status" => resp.status().as_u16().to_string()).increment(1);
    resp.extensions_mut().insert(RouteLabel(label));
    resp
}

/// Who is calling a route, and whether the gateway consumed their credentials.
struct Caller {
    session: Option<Session>,
    key: String,
}

fn bearer_is_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Authenticates per the route's schemes through the core (bans, audit of refusals).
async fn authenticate(
    core: &Core,
    schemes: &[AuthScheme],
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
    match core.login(&creds, Protocol::Http, remote, false).await {
        Ok(s) => Ok(Caller {
            key: format!("user:{}", s.principal.name()),
            session: Some(s),
        }),
        Err(e) => {
            let why = e.to_string();
            let resp = match login_error(e) {
                r if r.status == StatusCode::UNAUTHORIZED => challenge(),
                r => r,
            };
            Err((resp, why))
        }
    }
}

fn proxy_event(
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

fn gateway_error(status: StatusCode, code: &'static str, msg: &str) -> ApiError {
    ApiError::new(status, code, msg)
}

async fn run_route(
    state: &AppState,
    route: &Route,
    req: Request,
    remote: SocketAddr,
    started: Instant,
) -> Response {
    let core = &state.core;
    let Some(rs) = state.proxy.routes.get(&route.name) else {
        return gateway_error(StatusCode::BAD_GATEWAY, "bad_gateway", "route not ready")
            .into_response();
    };
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let audit = core.audit.clone();
    let deny = |session: Option<&Session>, resp: ApiError, why: String| {
        let ev = proxy_event(
            session,
            remote,
            &path,
            resp.status,
            Outcome::Denied,
            format!("route={} {why}", route.name),
        );
        audit.record_detached(ev);
        resp.into_response()
    };

    // Phase: authenticate.
    let caller = match authenticate(core, &route.auth, &parts.headers, remote).await {
        Ok(c) => c,
        Err((resp, why)) => return deny(None, resp, why),
    };
    // Phase: rate limit.
    if let Err(wait) = rs.limits.check(&caller.key) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let e = gateway_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "rate limit exceeded; retry later",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(secs));
        return deny(caller.session.as_ref(), e, "rate limited".into());
    }
    let user = caller
        .session
        .as_ref()
        .map(|s| s.principal.name().to_string());
    let public = route.auth == [AuthScheme::None];

    // Phase: cache lookup.
    let cache_key = match (&state.proxy.cache, route.cache) {
        (Some(_), Some(_)) if matches!(parts.method, Method::GET | Method::HEAD) => {
            Some(ResponseCache::base_key(
                &route.name,
                &parts.method,
                &path,
                parts.uri.query(),
                if public { None } else { user.as_deref() },
            ))
        }
        _ => None,
    };
    if let (Some(cache), Some(key)) = (&state.proxy.cache, &cache_key)
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
    let mut headers = parts.headers.clone();
    forward::upstream_headers(
        &mut headers,
        route,
        &forward::Caller {
            remote,
            tls: state.tls,
            user: user.as_deref(),
            consumed_credentials: !public,
        },
        upgrade,
    );
    let has_body = parts.headers.contains_key(header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
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
        let Ok(upstream_req) = forward::build(&req_parts.method, uri, &headers, b) else {
            return fail(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "cannot build the upstream request",
                "bad upstream request",
            );
        };
        let sent = Instant::now();
        let result = forward::send(&state.proxy.client, upstream_req, route.timeout)
            .await
            .ok_or(());
        metrics::histogram!(telemetry::PROXY_UPSTREAM_SECONDS, "route" => route.name.clone(), "upstream" => target.label.clone())
            .record(sent.elapsed().as_secs_f64());
        let can_retry = replayable && tried.len() <= route.retries as usize;
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
    if let (Some(cache), Some(key), Some(rule)) = (&state.proxy.cache, cache_key, route.cache) {
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

async fn run_aggregate(
    state: &AppState,
    agg: &crate::route::Aggregate,
    req: Request,
    remote: SocketAddr,
    started: Instant,
) -> Response {
    let core = &state.core;
    let path = req.uri().path().to_string();
    let caller = match authenticate(core, &agg.auth, req.headers(), remote).await {
        Ok(c) => c,
        Err((resp, why)) => {
            let ev = proxy_event(
                None,
                remote,
                &path,
                resp.status,
                Outcome::Denied,
                format!("aggregate={} {why}", agg.name),
            );
            core.audit.record_detached(ev);
            return resp.into_response();
        }
    };
    let user = caller
        .session
        .as_ref()
        .map(|s| s.principal.name().to_string());
    let (resp, failed) = aggregate::run(
        &state.proxy.client,
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

/// A response body being filled into the cache as it streams.
struct Store {
    cache: ResponseCache,
    key: String,
    vary: Vec<HeaderName>,
    req_headers: HeaderMap,
    headers: HeaderMap,
    ttl: Duration,
    max: usize,
    /// `None` once the body outgrew `max`.
    buf: Option<BytesMut>,
}

pin_project_lite::pin_project! {
    /// The response body: counts bytes, feeds the cache, and writes the audit record when it
    /// ends (or is dropped because the client went away).
    struct Tracked {
        #[pin]
        inner: Body,
        bytes: u64,
        started: Instant,
        audit: Option<(AuditLog, AuditEvent)>,
        store: Option<Store>,
    }

    impl PinnedDrop for Tracked {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some((audit, mut ev)) = this.audit.take() {
                ev.bytes = Some(*this.bytes);
                ev.outcome = Outcome::Error;
                if let Some(d) = ev.detail.as_mut() {
                    d.push_str(&format!(" ms={} interrupted", this.started.elapsed().as_millis()));
                }
                audit.record_detached(ev);
            }
        }
    }
}

impl Tracked {
    /// The body is complete: record it and hand the copy to the cache.
    fn finish(
        audit: &mut Option<(AuditLog, AuditEvent)>,
        store: &mut Option<Store>,
        bytes: u64,
        started: Instant,
    ) {
        if let Some((audit, mut ev)) = audit.take() {
            ev.bytes = Some(bytes);
            if let Some(d) = ev.detail.as_mut() {
                d.push_str(&format!(" ms={}", started.elapsed().as_millis()));
            }
            audit.record_detached(ev);
        }
        if let Some(s) = store.take()
            && let Some(buf) = s.buf
        {
            tokio::spawn(async move {
                s.cache
                    .put(
                        s.key,
                        s.vary,
                        &s.req_headers,
                        StatusCode::OK,
                        s.headers,
                        buf.freeze(),
                        s.ttl,
                    )
                    .await;
            });
        }
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut this = self.project();
        let r = this.inner.as_mut().poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.len() as u64;
                    if let Some(s) = this.store.as_mut()
                        && let Some(buf) = s.buf.as_mut()
                    {
                        if buf.len() + data.len() > s.max {
                            s.buf = None;
                        } else {
                            buf.extend_from_slice(data);
                        }
                    }
                }
                // hyper stops polling once the length is satisfied, so finish here too.
                if this.inner.is_end_stream() {
                    Self::finish(this.audit, this.store, *this.bytes, *this.started);
                }
            }
            Poll::Ready(None) => Self::finish(this.audit, this.store, *this.bytes, *this.started),
            Poll::Ready(Some(Err(_))) => {
                this.store.take();
            }
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
