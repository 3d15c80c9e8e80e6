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

/// Who may call a route beyond authenticating: `None` lists admit anyone authenticated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// User names admitted.
    pub users: Option<Vec<String>>,
    /// Group names admitted.
    pub groups: Option<Vec<String>>,
}

impl Access {
    /// Whether a user (with these groups) may call the route.
    pub fn admits(&self, user: &str, groups: &[String]) -> bool {
        if self.users.is_none() && self.groups.is_none() {
            return true;
        }
        self.users
            .as_ref()
            .is_some_and(|u| u.iter().any(|x| x == user))
            || self
                .groups
                .as_ref()
                .is_some_and(|g| g.iter().any(|x| groups.contains(x)))
    }

    /// True when any authenticated user is admitted.
    pub fn is_open(&self) -> bool {
        self.users.is_none() && self.groups.is_none()
    }
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
#[derive(Debug, Clone, PartialEq)]
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
    /// Who may call it.
    pub access: Access,
    /// Pass the client's credentials on a public route.
    pub forward_credentials: bool,
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
#[derive(Debug, Clone, PartialEq)]
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
    /// Per-principal limit.
    pub rate_limit: Option<Quota>,
    /// Limit shared by every caller.
    pub global_rate_limit: Option<Quota>,
    /// Largest body read from one part.
    pub max_part_bytes: usize,
    /// Who may call it.
    pub access: Access,
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteTable {
    routes: Vec<Route>,
    aggregates: Vec<Aggregate>,
}

/// Why a request path was refused before route matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRejection {
    /// Not an absolute path.
    #[error("the path must start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadEscape,
    /// `%2e` in a dot segment, `%2f`, `%5c`, `%00`, a backslash or a control byte: spellings
    /// that upstreams decode differently from one another.
    #[error("ambiguous encoding in the path (encoded dot segment, slash, backslash or NUL)")]
    Ambiguous,
    /// `..` above the root.
    #[error("the path climbs above the root")]
    AboveRoot,
}

/// Normalises a request path (as sent, percent-encoded) before route matching, so that what
/// matched is what the upstream gets: `.` and `..` segments are resolved (RFC 3986 §5.2.4),
/// repeated slashes merged; encoded dot segments, encoded slashes and backslashes, NUL and other
/// control bytes are refused, as is `..` above the root. Other escapes stay as sent.
pub fn normalize_path(raw: &str) -> Result<String, PathRejection> {
    if !raw.starts_with('/') {
        return Err(PathRejection::NotAbsolute);
    }
    let trailing = raw.len() > 1 && raw.ends_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in raw.split('/') {
        if seg.bytes().any(|b| b == b'\\' || b < 0x20 || b == 0x7f) {
            return Err(PathRejection::Ambiguous);
        }
        let decoded = decode_segment(seg)?;
        match (seg, decoded.as_str()) {
            ("" | ".", _) => {}
            ("..", _) => {
                if out.pop().is_none() {
                    return Err(PathRejection::AboveRoot);
                }
            }
            (_, "." | "..") => return Err(PathRejection::Ambiguous),
            _ => out.push(seg),
        }
    }
    let mut path = String::with_capacity(raw.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || (trailing && !out.is_empty()) {
        path.push('/');
    }
    Ok(path)
}

/// A segment with its escapes decoded; refuses escapes of `/`, `\`, NUL and control bytes.
fn decode_segment(seg: &str) -> Result<String, PathRejection> {
    if !seg.contains('%') {
        return Ok(seg.to_string());
    }
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathRejection::BadEscape)?;
            let text = std::str::from_utf8(hex).map_err(|_| PathRejection::BadEscape)?;
            let b = u8::from_str_radix(text, 16).map_err(|_| PathRejection::BadEscape)?;
            if b == b'/' || b == b'\\' || b < 0x20 || b == 0x7f {
                return Err(PathRejection::Ambiguous);
            }
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
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
            access: Access::default(),
            forward_credentials: false,
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
                rate_limit: None,
                global_rate_limit: None,
                max_part_bytes: 1 << 20,
                access: Access::default(),
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

    #[test]
    fn request_paths_are_normalised_or_refused() {
        let ok =
            |raw: &str, want: &str| assert_eq!(normalize_path(raw), Ok(want.to_string()), "{raw}");
        ok("/", "/");
        ok("/api/orders/42", "/api/orders/42");
        ok("/public/../admin", "/admin");
        ok("//api///orders/", "/api/orders/");
        ok("/a/./b/.", "/a/b");
        ok("/a/b/..", "/a");
        ok("/a%20b/%41", "/a%20b/%41");
        let bad =
            |raw: &str, why: PathRejection| assert_eq!(normalize_path(raw), Err(why), "{raw}");
        bad("/public/%2e%2e/admin", PathRejection::Ambiguous);
        bad("/public/.%2E/admin", PathRejection::Ambiguous);
        bad("/public/%2E/x", PathRejection::Ambiguous);
        bad("/public%2fadmin", PathRejection::Ambiguous);
        bad("/public%5cadmin", PathRejection::Ambiguous);
        bad("/a\\b", PathRejection::Ambiguous);
        bad("/a%00", PathRejection::Ambiguous);
        bad("/a%zz", PathRejection::BadEscape);
        bad("/a%4", PathRejection::BadEscape);
        bad("/..", PathRejection::AboveRoot);
        bad("/a/../..", PathRejection::AboveRoot);
        bad("api", PathRejection::NotAbsolute);
    }

    proptest! {
        /// A normalised path never holds a dot segment or an empty one, and normalising it again
        /// changes nothing.
        #[test]
        fn normalising_is_idempotent(raw in "/[a-z./%25]{0,24}") {
            if let Ok(n) = normalize_path(&raw) {
                prop_assert!(!n.split('/').skip(1).any(|s| s == "." || s == ".."));
                prop_assert_eq!(normalize_path(&n), Ok(n.clone()));
            }
        }

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
