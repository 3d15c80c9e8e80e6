//! A route's upstreams: round robin over the healthy ones, passive ejection on connect errors,
//! and an active health check (`health_check`) that takes failing upstreams out of the rotation
//! and brings them back when they answer 2xx again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Uri;

use super::forward::Client;
use crate::route::{Route, Upstream};
use crate::telemetry;

/// Without an active health check, an ejected upstream is tried again after this long.
const PASSIVE_COOLDOWN: Duration = Duration::from_secs(10);

/// One upstream and its state.
#[derive(Debug)]
pub(crate) struct Target {
    pub upstream: Upstream,
    /// Base URL, for logs, metrics and audit.
    pub label: String,
    /// This route's upstream latency to it, registered once (not looked up per request).
    pub seconds: metrics::Histogram,
    healthy: AtomicBool,
    /// When a passive ejection happened (ms since `epoch`), 0 = never.
    ejected_at_ms: AtomicU64,
}

/// The rotation of one route.
#[derive(Debug)]
pub(crate) struct Pool {
    route: String,
    targets: Vec<Arc<Target>>,
    next: AtomicUsize,
    epoch: Instant,
    active_checks: bool,
}

impl Pool {
    pub fn new(route: &Route) -> Self {
        let targets = route
            .upstreams
            .iter()
            .map(|u| {
                let label = u.url();
                metrics::gauge!(telemetry::PROXY_UPSTREAM_UP, "route" => route.name.clone(), "upstream" => label.clone()).set(1.0);
                Arc::new(Target {
                    upstream: u.clone(),
                    seconds: metrics::histogram!(telemetry::PROXY_UPSTREAM_SECONDS, "route" => route.name.clone(), "upstream" => label.clone()),
                    label,
                    healthy: AtomicBool::new(true),
                    ejected_at_ms: AtomicU64::new(0),
                })
            })
            .collect();
        Self {
            route: route.name.clone(),
            targets,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            active_checks: route.health_check.is_some(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn usable(&self, t: &Target) -> bool {
        if t.healthy.load(Ordering::Acquire) {
            return true;
        }
        // Passive ejections expire when nothing else will bring the upstream back.
        !self.active_checks
            && self
                .now_ms()
                .saturating_sub(t.ejected_at_ms.load(Ordering::Acquire))
                > PASSIVE_COOLDOWN.as_millis() as u64
    }

    /// The next usable upstream, skipping `tried`.
    pub fn pick(&self, tried: &[usize]) -> Option<(usize, Arc<Target>)> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|i| !tried.contains(i) && self.usable(&self.targets[*i]))
            .map(|i| (i, self.targets[i].clone()))
    }

    fn set(&self, t: &Target, up: bool) {
        let was = t.healthy.swap(up, Ordering::AcqRel);
        if !up {
            t.ejected_at_ms
                .store(self.now_ms().max(1), Ordering::Release);
        }
        if was != up {
            if up {
                tracing::info!(route = %self.route, upstream = %t.label, "upstream back in rotation");
            } else {
                tracing::warn!(route = %self.route, upstream = %t.label, "upstream out of rotation");
            }
            metrics::gauge!(telemetry::PROXY_UPSTREAM_UP, "route" => self.route.clone(), "upstream" => t.label.clone())
                .set(if up { 1.0 } else { 0.0 });
        }
    }

    /// A connect error: out of the rotation until a health check (or the cooldown) says otherwise.
    pub fn eject(&self, t: &Target) {
        self.set(t, false);
    }

    /// A response arrived.
    pub fn mark_ok(&self, t: &Target) {
        if !t.healthy.load(Ordering::Relaxed) && !self.active_checks {
            self.set(t, true);
        }
    }

    /// Runs the active health check until `stop` is cancelled.
    pub async fn health_loop(
        self: Arc<Self>,
        client: Client,
        path: String,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let timeout = every.min(Duration::from_secs(5));
        loop {
            for t in &self.targets {
                let uri: Result<Uri, _> = format!(
                    "{}://{}{}{}",
                    t.upstream.scheme, t.upstream.authority, t.upstream.base_path, path
                )
                .parse();
                let ok = match uri {
                    Ok(uri) => {
                        let req = http::Request::get(uri)
                            .header(http::header::USER_AGENT, "gatehouse-health-check")
                            .body(axum::body::Body::empty());
                        match req {
                            Ok(req) => matches!(
                                tokio::time::timeout(timeout, client.request(req)).await,
                                Ok(Ok(resp)) if resp.status().is_success()
                            ),
                            Err(_) => false,
                        }
                    }
                    Err(_) => false,
                };
                self.set(t, ok);
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
