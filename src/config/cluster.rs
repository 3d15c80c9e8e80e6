//! `[cluster]`: the multi-node mode's settings (CONTRACT.md, scale-out). All optional: a single
//! node needs none of it.

use serde::{Deserialize, Serialize};

use super::locate::KeyPath;
use super::validate::Errors;

/// `[cluster]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Written into every audit record (default: `gateway.node`, else the host name).
    pub node: Option<String>,
    /// Redis URL for limits, login-failure counts and bans shared by every node
    /// (`redis://[user:password@]host:port/db`, `rediss://` for TLS). Absent: node-local.
    pub redis: Option<String>,
    /// What a decision that needs Redis does while Redis is down or slower than `timeout_ms`.
    pub on_store_error: StoreErrorMode,
    /// Bound on each Redis call on the request path.
    pub timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node: None,
            redis: None,
            on_store_error: StoreErrorMode::Local,
            timeout_ms: 25,
        }
    }
}

/// `[audit.ship]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShipConfig {
    /// A backend from `[backends]` (an S3-compatible one in production).
    pub backend: String,
    /// Objects are written to `<prefix><node>/<file>`.
    #[serde(default = "default_ship_prefix")]
    pub prefix: String,
    /// Rotate and ship at least this often.
    #[serde(default = "default_ship_interval")]
    pub interval_secs: u64,
    /// Ed25519 key that signs each shipment's checkpoint (PKCS#8 PEM; created on first start).
    /// Default `<state_dir>/audit_signing_ed25519`.
    pub signing_key: Option<std::path::PathBuf>,
}

fn default_ship_prefix() -> String {
    "audit/".into()
}

fn default_ship_interval() -> u64 {
    60
}

/// `cluster.on_store_error`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreErrorMode {
    /// Decide with this node's own limits and bans (the single-node behaviour).
    #[default]
    Local,
    /// Admit: no rate limit, no login-failure counting, until Redis answers again.
    Open,
    /// Refuse what needs a shared decision (logins, rate-limited routes) until Redis answers.
    Closed,
}

impl StoreErrorMode {
    /// The word the config uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// Checks `[audit.ship]` (`backends`: the names `[backends]` defines).
pub(super) fn check_ship(c: &ShipConfig, backends: &[&str], key: &KeyPath, errs: &mut Errors) {
    if !backends.contains(&c.backend.as_str()) {
        errs.push((
            key.key("backend"),
            format!("{:?} is not defined in [backends]", c.backend),
        ));
    }
    if c.interval_secs == 0 {
        errs.push((key.key("interval_secs"), "must be at least 1".into()));
    }
    if c.prefix.starts_with('/') || c.prefix.split('/').any(|s| s == "..") {
        errs.push((
            key.key("prefix"),
            format!(
                "{:?}: a relative object prefix such as \"audit/\"",
                c.prefix
            ),
        ));
    }
}

/// Checks `[cluster]`.
pub(super) fn check(c: &ClusterConfig, key: &KeyPath, errs: &mut Errors) {
    if let Some(url) = &c.redis {
        let k = key.key("redis");
        match redis::Client::open(url.as_str()) {
            Ok(_) => {}
            // The URL may carry a password: say what is wrong without repeating it.
            Err(e) => errs.push((
                k,
                format!(
                    "not a Redis URL (redis://host:port/db or rediss://...): {}",
                    e.category()
                ),
            )),
        }
    }
    if c.timeout_ms == 0 || c.timeout_ms > 10_000 {
        errs.push((
            key.key("timeout_ms"),
            format!("{} is out of range (1..=10000)", c.timeout_ms),
        ));
    }
    if let Some(n) = &c.node
        && (n.is_empty()
            || n.len() > 64
            || !n
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.')))
    {
        errs.push((
            key.key("node"),
            format!("{n:?}: use 1 to 64 letters, digits, '-', '_' or '.'"),
        ));
    }
}
