//! Proxy routes and aggregates as plain data, and [`RouteTable::find`]: which route a request
//! belongs to. No HTTP library types here; the HTTP adapter owns the wire.

use std::time::Duration;

/// How a route authenticates callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthScheme {
    /// `X-Api-Key` or `Authorization: Bearer <key>`.
    ApiKey,
    /// `Authorization: Basic`.
    Basic,
    /// `Authorization: Bearer <jwt>`.
    Jwt,
    /// Anyone.
    None,
}

impl AuthScheme {
    /// Parses a config word.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api_key" => Some(Self::ApiKey),
            "basic" => Some(Self::Basic),
            "jwt" => Some(Self::Jwt),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// Token bucket parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Bucket size.
    pub burst: u32,
}

/// Response caching for a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheRule {
    /// Time to live.
    pub ttl: Duration,
    /// Largest body kept.
    pub max_body_bytes: u64,
}

/// Active health checking for a route's upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path requested on each upstream.
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
}

/// One upstream base URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: String,
    /// `host:port`.
    pub authority: String,
    /// Path prefix on the upstream, without a trailing `/` (often empty).
    pub base_path: String,
}

impl Upstream {
    /// Parses `http(s)://host[:port][/base]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("upstreams must be http:// or https:// URLs".into());
        }
        let host = url.host_str().ok_or("URL has no host")?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err("upstream URLs take no query or fragment".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials in upstream URLs are not supported".into());
        }
        let port = url.port_or_known_default().ok_or("URL has no port")?;
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Ok(Self {
            scheme: url.scheme().to_string(),
            authority: format!("{host}:{port}"),
            base_path: url.path().trim_end_matches('/').to_string(),
        })
    }

    /// The base URL again, for logs and audit records.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// One `[[routes]]` entry, validated.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name.
    pub name: String,
    /// Normalised prefix: starts with `/`, no trailing `/` (except `/`).
    pub path_prefix: String,
    /// Upper-case methods allowed (`None` = all).
    pub methods: Option<Vec<String>>,
    /// Upstreams, in rotation order.
    pub upstreams: Vec<Upstream>,
    /// Remove the prefix before forwarding.
    pub strip_prefix: bool,
    /// Accepted auth schemes.
    pub auth: Vec<AuthScheme>,
    /// Upstream deadline.
    pub timeout: Duration,
    /// Per-principal limit.
    pub rate_limit: Option<Quota>,
    /// Route-wide limit.
    pub global_rate_limit: Option<Quota>,
    /// Response cache.
    pub cache: Option<CacheRule>,
    /// Request headers added.
    pub add_request_headers: Vec<(String, String)>,
    /// Request headers removed (lower case).
    pub remove_request_headers: Vec<String>,
    /// Response headers added.
    pub add_response_headers: Vec<(String, String)>,
    /// Response headers removed (lower case).
    pub remove_response_headers: Vec<String>,
    /// Active health check.
    pub health_check: Option<HealthCheck>,
    /// Retries for idempotent methods.
    pub retries: u32,
}

impl Route {
    /// The path to send upstream for a request path under this route.
    pub fn upstream_path(&self, upstream: &Upstream, request_path: &str) -> String {
        let rest = if self.strip_prefix {
            let r = request_path
                .strip_prefix(self.path_prefix.trim_end_matches('/'))
                .unwrap_or(request_path);
            if r.is_empty() { "/" } else { r }
        } else {
            request_path
        };
        format!("{}{}", upstream.base_path, rest)
    }
}

/// One `[[aggregates]]` entry, validated.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// Name.
    pub name: String,
    /// Exact path.
    pub path: String,
    /// Accepted auth schemes.
    pub auth: Vec<AuthScheme>,
    /// Deadline per part.
    pub timeout: Duration,
    /// `(key, url)` pairs.
    pub parts: Vec<(String, String)>,
}

/// Result of matching a request.
#[derive(Debug)]
pub enum RouteMatch<'a> {
    /// A route takes it.
    Route(&'a Route),
    /// An aggregate takes it.
    Aggregate(&'a Aggregate),
    /// A route's prefix matched but not its methods.
    MethodNotAllowed(&'a Route),
    /// Nothing matched.
    None,
}

/// All routes and aggregates.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    aggregates: Vec<Aggregate>,
}

/// Whether `path` is `prefix` or under it, by whole segments.
pub fn path_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

impl RouteTable {
    /// Builds the table; routes are sorted longest prefix first.
    pub fn new(mut routes: Vec<Route>, aggregates: Vec<Aggregate>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
        Self { routes, aggregates }
    }

    /// Every route.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Every aggregate.
    pub fn aggregates(&self) -> &[Aggregate] {
        &self.aggregates
    }

    /// Finds the aggregate (exact path, GET/HEAD) or the longest-prefix route for a request.
    pub fn find(&self, method: &str, path: &str) -> RouteMatch<'_> {
        if matches!(method, "GET" | "HEAD")
            && let Some(a) = self.aggregates.iter().find(|a| a.path == path)
        {
            return RouteMatch::Aggregate(a);
        }
        let mut refused = None;
        for r in self
            .routes
            .iter()
            .filter(|r| path_under(path, &r.path_prefix))
        {
            match &r.methods {
                Some(m) if !m.iter().any(|x| x == method) => {
                    refused.get_or_insert(r);
                }
                _ => return RouteMatch::Route(r),
            }
        }
        refused.map_or(RouteMatch::None, RouteMatch::MethodNotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(name: &str, prefix: &str, methods: Option<&[&str]>) -> Route {
        Route {
            name: name.into(),
            path_prefix: prefix.into(),
            methods: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            upstreams: vec![Upstream::parse("http://127.0.0.1:9001").unwrap()],
            strip_prefix: true,
            auth: vec![AuthScheme::None],
            timeout: Duration::from_secs(1),
            rate_limit: None,
            global_rate_limit: None,
            cache: None,
            add_request_headers: vec![],
            remove_request_headers: vec![],
            add_response_headers: vec![],
            remove_response_headers: vec![],
            health_check: None,
            retries: 0,
        }
    }

    fn table() -> RouteTable {
        RouteTable::new(
            vec![
                route("api", "/api", None),
                route("orders", "/api/orders", Some(&["GET", "POST"])),
            ],
            vec![Aggregate {
                name: "dash".into(),
                path: "/api/dashboard".into(),
                auth: vec![],
                timeout: Duration::from_secs(1),
                parts: vec![],
            }],
        )
    }

    fn name(m: RouteMatch<'_>) -> String {
        match m {
            RouteMatch::Route(r) => r.name.clone(),
            RouteMatch::Aggregate(a) => format!("agg:{}", a.name),
            RouteMatch::MethodNotAllowed(r) => format!("405:{}", r.name),
            RouteMatch::None => "none".into(),
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table();
        assert_eq!(name(t.find("GET", "/api/orders/42")), "orders");
        assert_eq!(name(t.find("GET", "/api/orders")), "orders");
        assert_eq!(name(t.find("GET", "/api/ordersx")), "api");
        assert_eq!(name(t.find("GET", "/api")), "api");
        assert_eq!(name(t.find("GET", "/apix")), "none");
        assert_eq!(name(t.find("GET", "/api/dashboard")), "agg:dash");
        assert_eq!(name(t.find("POST", "/api/dashboard")), "api");
    }

    #[test]
    fn method_mismatch_falls_back_to_a_shorter_route() {
        let t = table();
        assert_eq!(name(t.find("DELETE", "/api/orders/1")), "api");
        let only = RouteTable::new(vec![route("o", "/o", Some(&["GET"]))], vec![]);
        assert_eq!(name(only.find("DELETE", "/o/1")), "405:o");
    }

    #[test]
    fn strips_prefix() {
        let r = route("orders", "/api/orders", None);
        let up = Upstream::parse("http://127.0.0.1:9001/base/").unwrap();
        assert_eq!(r.upstream_path(&up, "/api/orders/42"), "/base/42");
        assert_eq!(r.upstream_path(&up, "/api/orders"), "/base/");
        let mut keep = r.clone();
        keep.strip_prefix = false;
        assert_eq!(
            keep.upstream_path(&up, "/api/orders/42"),
            "/base/api/orders/42"
        );
    }

    #[test]
    fn parses_upstreams() {
        let u = Upstream::parse("http://localhost:9001").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.base_path.as_str()),
            ("localhost:9001", "")
        );
        let u = Upstream::parse("https://[::1]/x").unwrap();
        assert_eq!(u.authority, "[::1]:443");
        assert!(Upstream::parse("ftp://x").is_err());
        assert!(Upstream::parse("http://u:p@x").is_err());
        assert!(Upstream::parse("nope").is_err());
    }

    proptest! {
        #[test]
        fn a_match_is_always_under_its_prefix(path in "/[a-z/]{0,20}") {
            let t = table();
            if let RouteMatch::Route(r) = t.find("GET", &path) {
                prop_assert!(path_under(&path, &r.path_prefix));
                // and no longer matching prefix exists
                for other in t.routes() {
                    if path_under(&path, &other.path_prefix) {
                        prop_assert!(other.path_prefix.len() <= r.path_prefix.len());
                    }
                }
            }
        }
    }
}
