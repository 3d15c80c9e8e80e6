//! The `[[routes]]` and `[[aggregates]]` tables of the config (the API gateway), as written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `rate_limit = { per_second, burst }`
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained rate.
    pub per_second: u32,
    /// Bucket size (default = per_second).
    pub burst: Option<u32>,
}

/// `cache = { ttl_secs }`
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Time to live of a cached response.
    pub ttl_secs: u64,
    /// Largest body cached, in bytes (default 1 MiB).
    pub max_body_bytes: Option<u64>,
}

/// `health_check = { path, interval_secs }`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Path requested on each upstream; a 2xx answer means healthy.
    pub path: String,
    /// Seconds between checks.
    #[serde(default = "default_health_interval")]
    pub interval_secs: u64,
}

fn default_health_interval() -> u64 {
    5
}

/// `[[routes]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Route name (metrics, audit).
    pub name: String,
    /// Requests under this prefix go to the upstreams.
    pub path_prefix: String,
    /// Allowed methods (absent = all).
    pub methods: Option<Vec<String>>,
    /// Upstream base URLs.
    pub upstreams: Vec<String>,
    /// Remove `path_prefix` before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Accepted schemes: "api_key", "basic", "jwt", "none" (default api_key + basic).
    pub auth: Option<Vec<String>>,
    /// Upstream deadline.
    #[serde(default = "default_route_timeout")]
    pub timeout_secs: u64,
    /// Per-principal token bucket.
    pub rate_limit: Option<RateLimitConfig>,
    /// Route-wide token bucket shared by every client.
    pub global_rate_limit: Option<RateLimitConfig>,
    /// Response cache.
    pub cache: Option<CacheConfig>,
    /// Headers added to the upstream request.
    #[serde(default)]
    pub add_request_headers: BTreeMap<String, String>,
    /// Headers removed from the upstream request.
    #[serde(default)]
    pub remove_request_headers: Vec<String>,
    /// Headers added to the response.
    #[serde(default)]
    pub add_response_headers: BTreeMap<String, String>,
    /// Headers removed from the response.
    #[serde(default)]
    pub remove_response_headers: Vec<String>,
    /// Active health check.
    pub health_check: Option<HealthCheckConfig>,
    /// Retries for idempotent methods on connect errors, 502 and 503.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Only these users may call the route (absent: any authenticated user).
    pub users: Option<Vec<String>>,
    /// Only members of these groups may call the route (with `users`: either admits).
    pub groups: Option<Vec<String>>,
    /// Pass the client's `Authorization` and `X-Api-Key` to the upstream on an
    /// `auth = ["none"]` route (default false: the gateway's credentials never leave it).
    #[serde(default)]
    pub forward_credentials: bool,
}

fn default_route_timeout() -> u64 {
    30
}

fn default_retries() -> u32 {
    1
}

/// One part of an aggregate.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatePartConfig {
    /// Key in the merged object.
    pub key: String,
    /// Upstream URL fetched with GET.
    pub url: String,
}

/// `[[aggregates]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// Name (metrics, audit).
    pub name: String,
    /// Exact request path.
    pub path: String,
    /// Accepted schemes (default api_key + basic).
    pub auth: Option<Vec<String>>,
    /// Deadline for each part.
    #[serde(default = "default_aggregate_timeout")]
    pub timeout_secs: u64,
    /// Parts fetched in parallel.
    pub parts: Vec<AggregatePartConfig>,
    /// Per-principal token bucket (per client IP on public aggregates).
    pub rate_limit: Option<RateLimitConfig>,
    /// One token bucket shared by every caller.
    pub global_rate_limit: Option<RateLimitConfig>,
    /// Largest body read from one part, in bytes (default 1 MiB); a bigger part is `null`.
    pub max_part_bytes: Option<u64>,
    /// Only these users may call it (absent: any authenticated user).
    pub users: Option<Vec<String>>,
    /// Only members of these groups may call it.
    pub groups: Option<Vec<String>>,
}

fn default_aggregate_timeout() -> u64 {
    5
}
