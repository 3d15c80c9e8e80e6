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
