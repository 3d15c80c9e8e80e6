//! Talking to upstreams: the pooled hyper client, the request as the upstream sees it
//! (hop-by-hop headers dropped, credentials the gateway consumed removed, `X-Forwarded-*`,
//! `X-Request-Id` and `X-Gatehouse-User` set, the route's header transforms applied), and
//! WebSocket upgrades spliced through once the upstream answers 101.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri};
use hyper_util::rt::TokioIo;

use crate::route::{Route, Upstream};

/// The upstream client: pooled keep-alive connections, HTTP/1.1, and HTTP/2 over TLS.
pub(crate) type Client = crate::adapters::http_client::HttpsClient<Body>;

// Header names as `HeaderName` constants, not strings: a `&str` is parsed into a name
// (`parse_hdr`) for every lookup, several dozen times per proxied request (perf).

/// Headers that describe one hop, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Who the gateway says the caller is (only the gateway sets it).
pub(crate) const X_GATEHOUSE_USER: HeaderName = HeaderName::from_static("x-gatehouse-user");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Builds the shared client.
pub(crate) fn client() -> Result<Client, String> {
    crate::adapters::http_client::build()
}

thread_local! {
    /// This thread's upstream pool (built on first use; `None` if building failed). An HTTP
    /// worker's requests then reuse connections whose tasks run on the same thread.
    static LOCAL: std::cell::OnceCell<Option<Client>> = const { std::cell::OnceCell::new() };
}

/// The calling thread's client: its own pool, or `shared` if one could not be built.
pub(crate) fn local(shared: &Client) -> Client {
    LOCAL.with(|c| {
        c.get_or_init(|| client().ok())
            .clone()
            .unwrap_or_else(|| shared.clone())
    })
}

/// Whether the request asks to switch to WebSocket: the only upgrade spliced through. Any other
/// `Upgrade` (h2c, a custom protocol) is a hop-by-hop header and is dropped, so the request is
/// forwarded as plain HTTP.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    let conn_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    let websocket = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .all(|v| v.trim().eq_ignore_ascii_case("websocket"))
        && headers.contains_key(header::UPGRADE);
    conn_upgrade && websocket
}

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
}

/// What the forwarded request needs to know about the caller.
pub(crate) struct Caller<'a> {
    /// The client (behind trusted proxies, as they reported it).
    pub remote: SocketAddr,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether the peer is a trusted proxy whose `X-Forwarded-*` headers stand.
    pub trusted_peer: bool,
    pub tls: bool,
    /// The authenticated user (absent on `auth = ["none"]` routes).
    pub user: Option<&'a str>,
    /// Drop `Authorization` and `X-Api-Key`: the gateway consumed them, or the route is public
    /// and did not opt in to passing them on.
    pub strip_credentials: bool,
}

/// Forwarding headers a client could forge; replaced unless the peer is a trusted proxy.
const FORWARDING: [HeaderName; 6] = [
    X_FORWARDED_FOR,
    X_FORWARDED_HOST,
    X_FORWARDED_PROTO,
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-real-ip"),
    header::FORWARDED,
];

/// Rewrites `headers` in place for the upstream.
pub(crate) fn upstream_headers(
    h: &mut HeaderMap,
    route: &Route,
    caller: &Caller<'_>,
    upgrade: bool,
) {
    let upgrade_value = upgrade.then(|| h.get(header::UPGRADE).cloned()).flatten();
    strip_hop_by_hop(h);
    if let Some(v) = upgrade_value {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, v);
    }
    let host = h.remove(header::HOST);
    let prior_xff = if caller.trusted_peer {
        h.get(&X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    } else {
        // From anyone but a trusted proxy these say nothing true: replace them all.
        for n in &FORWARDING {
            h.remove(n);
        }
        None
    };
    // The upstream gets its own Host from the URI; the caller's goes in X-Forwarded-Host.
    if let Some(host) = host
        && !h.contains_key(&X_FORWARDED_HOST)
    {
        h.insert(X_FORWARDED_HOST, host);
    }
    // Only the gateway says who the caller is.
    h.remove(&X_GATEHOUSE_USER);
    if caller.strip_credentials {
        h.remove(header::AUTHORIZATION);
        h.remove(&X_API_KEY);
    }
    if let Some(u) = caller.user
        && let Ok(v) = HeaderValue::from_str(u)
    {
        h.insert(X_GATEHOUSE_USER, v);
    }
    // A trusted proxy's chain gets the peer appended; otherwise the chain is the client.
    let xff = match prior_xff {
        Some(prev) => format!("{prev}, {}", caller.peer.ip()),
        None => caller.remote.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(X_FORWARDED_FOR, v);
    }
    if !h.contains_key(&X_FORWARDED_PROTO) {
        h.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if caller.tls { "https" } else { "http" }),
        );
    }
    for name in &route.remove_request_headers {
        h.remove(name.as_str());
    }
    for (k, v) in &route.add_request_headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
}

/// The upstream URI for a request path and query.
pub(crate) fn upstream_uri(
    route: &Route,
    up: &Upstream,
    path: &str,
    query: Option<&str>,
) -> Result<Uri, http::Error> {
    let mut s = format!(
        "{}://{}{}",
        up.scheme,
        up.authority,
        route.upstream_path(up, path)
    );
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    Ok(s.parse::<Uri>()?)
}

/// Builds one attempt's request; `body` is the caller's body (or empty for a retry).
pub(crate) fn build(
    method: &http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Request<Body>, http::Error> {
    let mut req = Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(body)?;
    *req.headers_mut() = headers;
    Ok(req)
}

/// Splices the two upgraded connections together until either side closes.
pub(crate) fn splice(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let (Ok(c), Ok(u)) = (client.await, upstream.await) else {
            return;
        };
        let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
        if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
            tracing::debug!(error = %e, "websocket splice ended");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(
            h.get("x-secret").is_none()
                && h.get("keep-alive").is_none()
                && h.get("connection").is_none()
        );
        assert!(h.get("x-kept").is_some());
    }
}

pin_project_lite::pin_project! {
    /// A request body that reports when the upstream has received all of it, so the route's
    /// timeout measures the upstream's answer, not the client's upload.
    pub(crate) struct SignalEnd {
        #[pin]
        inner: Body,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    }
}

impl SignalEnd {
    /// Wraps `inner`; the receiver resolves once it has been sent entirely.
    pub(crate) fn wrap(inner: Body) -> (Body, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done = if http_body::Body::is_end_stream(&inner) {
            let _ = tx.send(());
            None
        } else {
            Some(tx)
        };
        (Body::new(SignalEnd { inner, done }), rx)
    }
}

impl http_body::Body for SignalEnd {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        let mut this = self.project();
        let r = this.inner.as_mut().poll_frame(cx);
        let ended = matches!(r, std::task::Poll::Ready(None))
            || (matches!(r, std::task::Poll::Ready(Some(Ok(_)))) && this.inner.is_end_stream());
        if ended && let Some(tx) = this.done.take() {
            let _ = tx.send(());
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

/// Sends a request; fails with `None` when the upstream has not started answering within
/// `timeout` after receiving the whole request.
pub(crate) async fn send(
    client: &Client,
    req: Request<Body>,
    timeout: Duration,
) -> Option<Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error>> {
    let (parts, body) = req.into_parts();
    let (body, sent) = SignalEnd::wrap(body);
    let fut = client.request(Request::from_parts(parts, body));
    tokio::pin!(fut);
    let deadline = async {
        // A body that never completes (client stalled) is bounded by the client side.
        let _ = sent.await;
        tokio::time::sleep(timeout).await;
    };
    tokio::select! {
        r = &mut fut => Some(r),
        _ = deadline => None,
    }
}
