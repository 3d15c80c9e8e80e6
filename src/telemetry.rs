//! Logs and metrics in one place: the tracing subscriber (text or JSON), the Prometheus recorder,
//! and every metric name the gateway emits (`gatehouse_<area>_<what>_<unit>`).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Logins, by `protocol` and `outcome`.
pub const LOGINS: &str = "gatehouse_logins_total";
/// Finished transfers, by `protocol`, `direction` (upload/download) and `outcome`.
pub const TRANSFERS: &str = "gatehouse_transfers_total";
/// Bytes moved, by `protocol` and `direction`.
pub const TRANSFER_BYTES: &str = "gatehouse_transfer_bytes_total";
/// Failed file operations, by `protocol` and `kind`.
pub const ERRORS: &str = "gatehouse_errors_total";
/// Open connections, by `protocol`.
pub const CONNECTIONS: &str = "gatehouse_connections_open";
/// HTTP request latency, by `route` and `status`.
pub const HTTP_SECONDS: &str = "gatehouse_http_request_duration_seconds";
/// Proxied requests, by `route` and `status`.
pub const PROXY_REQUESTS: &str = "gatehouse_proxy_requests_total";
/// Upstream latency, by `route` and `upstream`.
pub const PROXY_UPSTREAM_SECONDS: &str = "gatehouse_proxy_upstream_seconds";
/// Upstream health (1 up, 0 down), by `route` and `upstream`.
pub const PROXY_UPSTREAM_UP: &str = "gatehouse_proxy_upstream_up";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A metric label value that clones without allocating (an `Arc<str>` inside).
pub type Label = metrics::SharedString;

/// A label from a name known only at run time (a route, an upstream), built once.
pub fn label(name: &str) -> Label {
    Label::from(std::sync::Arc::<str>::from(name))
}

/// The `status` label of an HTTP status code, without formatting one per request.
pub fn status_label(status: http::StatusCode) -> Label {
    static LABELS: std::sync::LazyLock<Vec<Label>> =
        std::sync::LazyLock::new(|| (0..1000u16).map(|c| label(&c.to_string())).collect());
    LABELS
        .get(usize::from(status.as_u16()))
        .cloned()
        .unwrap_or_else(|| label(status.as_str()))
}

/// Installs the global tracing subscriber. `RUST_LOG` overrides `default_level`.
pub fn init_logging(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // Protocol crates are chatty at info; their warnings still show.
        EnvFilter::new(format!(
            "{default_level},russh=warn,russh_sftp=warn,libunftp=warn,hyper=warn,object_store=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Installs the Prometheus recorder; the handle renders `/metrics`.
pub fn init_metrics() -> Option<PrometheusHandle> {
    let latency = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
        .ok()?
        .install_recorder()
        .ok()
}

/// Counts one finished transfer (called once per upload or download, whatever the door).
pub fn transfer(
    protocol: &'static str,
    direction: &'static str,
    outcome: &'static str,
    bytes: u64,
) {
    metrics::counter!(TRANSFERS, "protocol" => protocol, "direction" => direction, "outcome" => outcome)
        .increment(1);
    metrics::counter!(TRANSFER_BYTES, "protocol" => protocol, "direction" => direction)
        .increment(bytes);
}

/// Per-request metrics of a route, by status: `counter!`/`histogram!` build a key, hash it and
/// look it up in the recorder's shared registry (read locks and `Arc` clones every thread
/// touches) on every call. The handles are registered once per thread and kept: the registry
/// never drops a metric (no idle timeout), so a kept handle stays the one `/metrics` reads.
pub mod per_route {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::{Label, status_label};

    /// Handles kept per thread before the cache starts over (routes x statuses seen; a bound
    /// against a config reloaded with ever new route names).
    const MAX: usize = 4096;

    /// Metric name and status, then the route's name: looked up by `&str`, so a hit neither
    /// allocates nor touches a shared reference count.
    type Cache<H> = HashMap<(&'static str, u16), HashMap<String, H>>;

    thread_local! {
        static COUNTERS: RefCell<Cache<metrics::Counter>> = RefCell::new(HashMap::new());
        static HISTOGRAMS: RefCell<Cache<metrics::Histogram>> = RefCell::new(HashMap::new());
    }

    fn with<H, R>(
        cache: &'static std::thread::LocalKey<RefCell<Cache<H>>>,
        name: &'static str,
        route: &Label,
        status: http::StatusCode,
        register: impl FnOnce(&'static str, Label, Label) -> H,
        f: impl FnOnce(&H) -> R,
    ) -> R {
        cache.with(|c| {
            let mut c = c.borrow_mut();
            let key = (name, status.as_u16());
            if let Some(h) = c.get(&key).and_then(|m| m.get(route.as_ref())) {
                return f(h);
            }
            if c.values().map(HashMap::len).sum::<usize>() >= MAX {
                c.clear();
            }
            let h = register(name, route.clone(), status_label(status));
            let r = f(&h);
            c.entry(key).or_default().insert(route.to_string(), h);
            r
        })
    }

    /// Adds one to counter `name` with labels `route` and `status`.
    pub fn count(name: &'static str, route: &Label, status: http::StatusCode) {
        with(
            &COUNTERS,
            name,
            route,
            status,
            |n, r, s| metrics::counter!(n, "route" => r, "status" => s),
            |h| h.increment(1),
        );
    }

    /// Records `secs` in histogram `name` with labels `route` and `status`.
    pub fn time(name: &'static str, route: &Label, status: http::StatusCode, secs: f64) {
        with(
            &HISTOGRAMS,
            name,
            route,
            status,
            |n, r, s| metrics::histogram!(n, "route" => r, "status" => s),
            |h| h.record(secs),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_handles_count_into_the_registry_that_metrics_renders() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let route = label("orders");
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..3 {
                per_route::count(PROXY_REQUESTS, &route, http::StatusCode::OK);
            }
            per_route::count(PROXY_REQUESTS, &route, http::StatusCode::BAD_GATEWAY);
            per_route::time(HTTP_SECONDS, &route, http::StatusCode::OK, 0.25);
            per_route::time(HTTP_SECONDS, &route, http::StatusCode::OK, 0.75);
        });
        let text = handle.render();
        assert!(
            text.contains(r#"gatehouse_proxy_requests_total{route="orders",status="200"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gatehouse_proxy_requests_total{route="orders",status="502"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"gatehouse_http_request_duration_seconds_sum{route="orders",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"gatehouse_http_request_duration_seconds_count{route="orders",status="200"} 2"#
            ),
            "{text}"
        );
    }
}
