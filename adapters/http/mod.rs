//! The HTTP front door: hyper (HTTP/1.1 and HTTP/2, rustls when `[http.tls]` is set) serving one
//! axum `Router`: `/v1/files`, `/v1/audit`, `/v1/openapi.json`, `/healthz`, `/readyz`,
//! `/metrics`, and the proxy fallback for `[[routes]]`. Connections are counted against
//! `max_connections`, tracked for graceful shutdown, and bounded by a header read timeout.

mod audit_api;
mod auth;
mod console;
mod error;
mod files;
mod files_http;
mod openapi;
mod ops;
mod proxy;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::core::Core;
use crate::limits::{Admission, NotAdmitted};
pub use error::{ApiError, ErrorBody};

/// Largest request head accepted (headers plus request line).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Why the HTTP listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Binding the socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The certificate or key could not be loaded.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The proxy could not be set up.
    #[error("proxy setup: {0}")]
    Proxy(String),
}

/// State every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub core: Arc<Core>,
    pub metrics: Option<PrometheusHandle>,
    pub proxy: Arc<proxy::Proxy>,
    /// Whether clients reach this listener over TLS (for `X-Forwarded-Proto`).
    pub tls: bool,
}

/// Per-request facts handlers can read from request extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnInfo {
    /// The client: the TCP peer, or behind a trusted proxy the address it reported.
    pub remote: SocketAddr,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether the peer is in `[http] trusted_proxies`.
    pub trusted_peer: bool,
}

impl ConnInfo {
    fn of(peer: SocketAddr, headers: &http::HeaderMap, trusted: &[ipnet::IpNet]) -> Self {
        let trusted_peer = crate::forwarded::is_trusted(peer.ip(), trusted);
        let remote = if trusted_peer {
            let xff = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok());
            let ip = crate::forwarded::client_ip(peer.ip(), xff, trusted);
            if ip == peer.ip() {
                peer
            } else {
                SocketAddr::new(ip, 0)
            }
        } else {
            peer
        };
        Self {
            remote,
            peer,
            trusted_peer,
        }
    }
}

/// A bound, not yet running, HTTP listener.
pub struct HttpListener {
    core: Arc<Core>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    admission: Admission,
    header_timeout: Duration,
    /// Where connections run: the worker runtimes (main listener), or the current runtime.
    workers: Option<Arc<workers::Workers>>,
}

/// A bound listener that serves only `/metrics`, without authentication (`metrics_listen`).
pub struct MetricsListener(HttpListener);

fn load_tls(
    core: &Core,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<TlsAcceptor, HttpError> {
    let mut cfg = super::tls::server_config(core, "http.tls", cert, key).map_err(HttpError::Tls)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

async fn bind_socket(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Binds the main HTTP listener.
pub async fn bind(
    core: Arc<Core>,
    addr: SocketAddr,
    metrics: Option<PrometheusHandle>,
) -> Result<HttpListener, HttpError> {
    let http = core.config.config.http.clone();
    let tls = match http.as_ref().and_then(|h| h.tls.as_ref()) {
        Some(t) => Some(load_tls(&core, &t.cert, &t.key)?),
        None => None,
    };
    let state = AppState {
        core: core.clone(),
        metrics,
        proxy: proxy::Proxy::start(&core).map_err(HttpError::Proxy)?,
        tls: tls.is_some(),
    };
    let router = build_router(state);
    let listener = bind_socket(addr).await?;
    let workers = workers::Workers::start(workers::default_count(), &core.shutdown.exit)
        .map_err(|source| HttpError::Bind { addr, source })?;
    Ok(HttpListener {
        listener,
        workers: Some(Arc::new(workers)),
        tls,
        router,
        admission: core.admission("http"),
        header_timeout: Duration::from_secs(http.map_or(30, |h| h.header_timeout_secs)),
        core,
    })
}

/// Binds the unauthenticated metrics listener.
pub async fn bind_metrics(
    core: Arc<Core>,
    addr: SocketAddr,
    metrics: Option<PrometheusHandle>,
) -> Result<MetricsListener, HttpError> {
    let router = ops::metrics_only_router(metrics);
    Ok(MetricsListener(HttpListener {
        listener: bind_socket(addr).await?,
        tls: None,
        router,
        admission: Admission::new(64, 0),
        header_timeout: Duration::from_secs(10),
        workers: None,
        core,
    }))
}

/// `x-request-id` for requests that come without one: a v4 UUID from the thread's CSPRNG
/// (tower-http's `MakeRequestUuid` makes a `getrandom` system call per request).
#[derive(Clone, Copy)]
struct RequestIds;

impl tower_http::request_id::MakeRequestId for RequestIds {
    fn make_request_id<B>(
        &mut self,
        _: &http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let mut buf = uuid::Uuid::encode_buffer();
        let id = crate::session::new_uuid()
            .hyphenated()
            .encode_lower(&mut buf);
        http::HeaderValue::from_str(id)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

fn build_router(state: AppState) -> Router {
    use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
    let x_request_id = http::HeaderName::from_static("x-request-id");
    Router::new()
        .merge(ops::router())
        .merge(files::router())
        .merge(audit_api::router())
        .merge(console::router())
        .merge(openapi::router())
        .fallback(proxy::handle)
        .with_state(state)
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(x_request_id.clone(), RequestIds))
                .layer(PropagateRequestIdLayer::new(x_request_id))
                .layer(axum::middleware::from_fn(ops::trace))
                .layer(axum::middleware::from_fn(ops::require_host)),
        )
}

impl HttpListener {
    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Accepts until shutdown, then lets open connections finish within the grace period.
    pub async fn run(self) {
        let shutdown = self.core.shutdown.clone();
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(MAX_HEADER_BYTES);
        builder
            .http2()
            .max_header_list_size(MAX_HEADER_BYTES as u32);
        let builder = Arc::new(builder);
        while let Some((stream, remote)) = shutdown.accept(&self.listener, "http").await {
            let from_proxy =
                crate::forwarded::is_trusted(remote.ip(), &self.core.config.trusted_proxies);
            let admitted = if from_proxy {
                self.admission.admit_proxy()
            } else {
                self.admission.admit(remote.ip())
            };
            let mut guard = match admitted {
                Ok(g) => g,
                Err(why @ NotAdmitted::ListenerFull) => {
                    tracing::warn!(%remote, "http connection refused: {}", why.as_str());
                    continue;
                }
                Err(why) => {
                    tracing::debug!(%remote, "http connection refused: {}", why.as_str());
                    continue;
                }
            };
            let admission = self.admission.clone();
            let _ = stream.set_nodelay(true);
            let router = self.router.clone();
            let tls = self.tls.clone();
            let watcher = graceful.watcher();
            let builder = builder.clone();
            let trusted = self.core.clone();
            let stop = shutdown.stop.clone();
            let header_timeout = self.header_timeout;
            let serve = move |stream: tokio::net::TcpStream| async move {
                // A trusted proxy may start with a PROXY protocol header naming the client,
                // who is then counted against the per-address caps (this node's and the
                // cluster's).
                let (stream, remote, counted) = if from_proxy {
                    match crate::adapters::proxy_protocol::read_header(
                        stream,
                        false,
                        header_timeout,
                    )
                    .await
                    {
                        Ok((Some(client), s)) => (
                            s,
                            client,
                            admission.admit_client(&mut guard, client.ip()).await,
                        ),
                        Ok((None, s)) => (s, remote, Ok(())),
                        Err(e) => {
                            tracing::debug!(%remote, error = %e, "http connection refused");
                            return;
                        }
                    }
                } else {
                    let counted = admission.share(&mut guard, remote.ip()).await;
                    (
                        crate::adapters::proxy_protocol::Prefixed::plain(stream),
                        remote,
                        counted,
                    )
                };
                if let Err(why) = counted {
                    tracing::debug!(%remote, "http connection refused: {}", why.as_str());
                    return;
                }
                let _guard = guard;
                // Past the grace period the connection is dropped: handlers still running (an
                // upload) are cancelled, and their guards abort and record what they held.
                let stop = stop.cancelled_owned();
                tokio::pin!(stop);
                let svc = hyper::service::service_fn(
                    move |mut req: http::Request<hyper::body::Incoming>| {
                        let info =
                            ConnInfo::of(remote, req.headers(), &trusted.config.trusted_proxies);
                        req.extensions_mut().insert(info);
                        req.extensions_mut().insert(ConnectInfo(info.remote));
                        router.clone().oneshot(req.map(axum::body::Body::new))
                    },
                );
                let result = match tls {
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                                .await;
                        match handshake {
                            Ok(Ok(s)) => {
                                let conn =
                                    builder.serve_connection_with_upgrades(TokioIo::new(s), svc);
                                tokio::select! {
                                    r = watcher.watch(conn.into_owned()) => r,
                                    _ = &mut stop => return,
                                }
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%remote, error = %e, "tls handshake failed");
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                    None => {
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                        tokio::select! {
                            r = watcher.watch(conn.into_owned()) => r,
                            _ = &mut stop => return,
                        }
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%remote, error = %e, "http connection ended with an error");
                }
            };
            match &self.workers {
                // Moved to a worker's reactor: deregistered here, registered there.
                Some(w) => match stream.into_std() {
                    Ok(std) => w.spawn(shutdown.tasks.track_future(async move {
                        match tokio::net::TcpStream::from_std(std) {
                            Ok(stream) => serve(stream).await,
                            Err(e) => tracing::debug!(%remote, error = %e, "http connection lost in the hand-off"),
                        }
                    })),
                    Err(e) => tracing::debug!(%remote, error = %e, "http connection lost in the hand-off"),
                },
                None => {
                    shutdown.tasks.spawn(serve(stream));
                }
            }
        }
        // Stop accepting; tell keep-alive connections to close after their current request.
        let grace = shutdown.grace;
        let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
    }
}

impl MetricsListener {
    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// Serves until shutdown.
    pub async fn run(self) {
        self.0.run().await
    }
}
