//! Checks of the API gateway's tables: `[jwt]`, `[[routes]]` and `[[aggregates]]` into the
//! [`RouteTable`], with every problem collected under its key path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use super::locate::KeyPath;
use super::validate::{Errors, RESERVED_HTTP_PREFIXES, check_file};
use super::{Config, RateLimitConfig};
use crate::route::{
    Access, Aggregate, AuthScheme, CacheRule, HealthCheck, Quota, Route, RouteTable, Upstream,
    path_under,
};

pub(super) fn check_jwt(config: &Config, errs: &mut Errors) {
    let Some(j) = &config.jwt else { return };
    let p = KeyPath::root().key("jwt");
    if j.algorithms.is_empty() {
        errs.push((p.key("algorithms"), "name at least one algorithm".into()));
    }
    for (i, a) in j.algorithms.iter().enumerate() {
        match a.as_str() {
            "HS256" => {
                if j.secret.as_deref().is_none_or(|s| s.len() < 32) {
                    errs.push((
                        p.key("secret"),
                        "HS256 needs `secret` of at least 32 bytes".into(),
                    ));
                }
            }
            "RS256" | "ES256" => {
                if j.public_key.is_none() && j.jwks.is_none() {
                    errs.push((
                        p.key("public_key"),
                        format!("{a} needs `public_key` or `jwks`"),
                    ));
                }
            }
            other => errs.push((
                p.key("algorithms").index(i),
                format!("unsupported algorithm {other:?} (expected HS256, RS256 or ES256)"),
            )),
        }
    }
    if let Some(f) = &j.public_key {
        check_file(f, p.key("public_key"), errs);
    }
    if let Some(f) = &j.jwks
        && let Err(e) = std::fs::read(f)
    {
        errs.push((p.key("jwks"), format!("cannot read {}: {e}", f.display())));
    }
    if let Err((key, msg)) = crate::identity::jwt::JwtVerifier::new(j)
        && !errs
            .iter()
            .any(|(k, _)| k.0.first() == Some(&super::locate::Seg::Key("jwt".into())))
    {
        errs.push((p.key(key), msg));
    }
    if j.user_claim.is_empty() {
        errs.push((p.key("user_claim"), "must not be empty".into()));
    }
}

fn quota(r: &RateLimitConfig, key: KeyPath, errs: &mut Errors) -> Option<Quota> {
    if r.per_second == 0 {
        errs.push((key.key("per_second"), "must be at least 1".into()));
        return None;
    }
    let burst = r.burst.unwrap_or(r.per_second);
    if burst == 0 {
        errs.push((key.key("burst"), "must be at least 1".into()));
        return None;
    }
    Some(Quota {
        per_second: r.per_second,
        burst,
    })
}

fn auth_schemes(
    list: &Option<Vec<String>>,
    key: KeyPath,
    jwt: bool,
    errs: &mut Errors,
) -> Vec<AuthScheme> {
    let Some(list) = list else {
        return vec![AuthScheme::ApiKey, AuthScheme::Basic];
    };
    if list.is_empty() {
        errs.push((
            key.clone(),
            "name at least one scheme (use [\"none\"] for a public route)".into(),
        ));
    }
    let mut out = Vec::new();
    for (i, w) in list.iter().enumerate() {
        match AuthScheme::parse(w) {
            Some(AuthScheme::Jwt) if !jwt => {
                errs.push((key.index(i), "\"jwt\" needs a [jwt] section".into()));
            }
            Some(s) => out.push(s),
            None => errs.push((
                key.index(i),
                format!("unknown auth scheme {w:?} (expected api_key, basic, jwt or none)"),
            )),
        }
    }
    if out.contains(&AuthScheme::None) && out.len() > 1 {
        errs.push((key, "\"none\" cannot be combined with other schemes".into()));
    }
    out
}

fn check_http_path(s: &str, key: KeyPath, errs: &mut Errors) -> String {
    let norm = s.trim_end_matches('/');
    let norm = if norm.is_empty() { "/" } else { norm };
    if !s.starts_with('/')
        || s.contains(['?', '#', ' ', '\\'])
        || s.split('/').any(|x| x == ".." || x == ".")
    {
        errs.push((
            key,
            format!("{s:?} must be an absolute URL path without '.', '..', query or spaces"),
        ));
    } else if RESERVED_HTTP_PREFIXES
        .iter()
        .any(|r| path_under(r, norm) || path_under(norm, r))
    {
        errs.push((
            key,
            format!(
                "{s:?} overlaps a path the gateway serves itself ({})",
                RESERVED_HTTP_PREFIXES.join(", ")
            ),
        ));
    }
    norm.to_string()
}

/// Builds the route table; `warnings` gets routes that work but are likely wider than meant.
pub(super) fn check_routes(
    config: &Config,
    errs: &mut Errors,
    warnings: &mut Errors,
) -> RouteTable {
    let root = KeyPath::root();
    let jwt = config.jwt.is_some();
    let mut routes = Vec::new();
    let mut names = HashSet::new();
    let mut prefixes: HashMap<String, usize> = HashMap::new();
    for (i, r) in config.routes.iter().enumerate() {
        let p = root.key("routes").index(i);
        if !names.insert(r.name.as_str()) {
            errs.push((p.key("name"), format!("duplicate route name {:?}", r.name)));
        }
        let path_prefix = check_http_path(&r.path_prefix, p.key("path_prefix"), errs);
        if let Some(j) = prefixes.insert(path_prefix.clone(), i) {
            errs.push((
                p.key("path_prefix"),
                format!("routes[{j}] has the same prefix"),
            ));
        }
        let methods = r.methods.as_ref().map(|m| {
            m.iter()
                .enumerate()
                .map(|(k, x)| {
                    let up = x.to_ascii_uppercase();
                    if up.is_empty() || !up.bytes().all(|b| b.is_ascii_uppercase()) {
                        errs.push((
                            p.key("methods").index(k),
                            format!("{x:?} is not an HTTP method"),
                        ));
                    }
                    up
                })
                .collect::<Vec<_>>()
        });
        if r.upstreams.is_empty() {
            errs.push((p.key("upstreams"), "name at least one upstream".into()));
        }
        let upstreams = r
            .upstreams
            .iter()
            .enumerate()
            .filter_map(|(k, u)| match Upstream::parse(u) {
                Ok(x) => Some(x),
                Err(e) => {
                    errs.push((p.key("upstreams").index(k), format!("{u:?}: {e}")));
                    None
                }
            })
            .collect();
        if r.timeout_secs == 0 {
            errs.push((p.key("timeout_secs"), "must be at least 1".into()));
        }
        let health_check = r.health_check.as_ref().map(|h| {
            if !h.path.starts_with('/') {
                errs.push((
                    p.key("health_check").key("path"),
                    "must start with /".into(),
                ));
            }
            if h.interval_secs == 0 {
                errs.push((
                    p.key("health_check").key("interval_secs"),
                    "must be at least 1".into(),
                ));
            }
            HealthCheck {
                path: h.path.clone(),
                interval: Duration::from_secs(h.interval_secs.max(1)),
            }
        });
        let headers = |m: &BTreeMap<String, String>, key: &str, errs: &mut Errors| {
            m.iter()
                .map(|(k, v)| {
                    if !valid_header_name(k) || v.contains(['\r', '\n']) {
                        errs.push((p.key(key).key(k), "not a valid header name/value".into()));
                    }
                    (k.to_ascii_lowercase(), v.clone())
                })
                .collect::<Vec<_>>()
        };
        let names_lower = |v: &[String], key: &str, errs: &mut Errors| {
            v.iter()
                .enumerate()
                .map(|(k, h)| {
                    if !valid_header_name(h) {
                        errs.push((p.key(key).index(k), format!("{h:?} is not a header name")));
                    }
                    h.to_ascii_lowercase()
                })
                .collect::<Vec<_>>()
        };
        routes.push(Route {
            name: r.name.clone(),
            path_prefix,
            methods,
            upstreams,
            strip_prefix: r.strip_prefix,
            auth: auth_schemes(&r.auth, p.key("auth"), jwt, errs),
            timeout: Duration::from_secs(r.timeout_secs),
            rate_limit: r
                .rate_limit
                .as_ref()
                .and_then(|q| quota(q, p.key("rate_limit"), errs)),
            global_rate_limit: r
                .global_rate_limit
                .as_ref()
                .and_then(|q| quota(q, p.key("global_rate_limit"), errs)),
            cache: r.cache.map(|c| CacheRule {
                ttl: Duration::from_secs(c.ttl_secs),
                max_body_bytes: c.max_body_bytes.unwrap_or(1 << 20),
            }),
            add_request_headers: headers(&r.add_request_headers, "add_request_headers", errs),
            remove_request_headers: names_lower(
                &r.remove_request_headers,
                "remove_request_headers",
                errs,
            ),
            add_response_headers: headers(&r.add_response_headers, "add_response_headers", errs),
            remove_response_headers: names_lower(
                &r.remove_response_headers,
                "remove_response_headers",
                errs,
            ),
            health_check,
            retries: r.retries,
            access: access(config, &r.users, &r.groups, &p, errs),
            forward_credentials: r.forward_credentials,
        });
        if r.auth.as_deref() != Some(&["none".to_string()][..])
            && r.users.is_none()
            && r.groups.is_none()
        {
            warnings.push((
                p.clone(),
                format!(
                    "route {:?} admits any authenticated user (any partner with a password or key); set `users` or `groups` to restrict it",
                    r.name
                ),
            ));
        }
    }
    let mut aggregates = Vec::new();
    for (i, a) in config.aggregates.iter().enumerate() {
        let p = root.key("aggregates").index(i);
        if !names.insert(a.name.as_str()) {
            errs.push((
                p.key("name"),
                format!("duplicate route/aggregate name {:?}", a.name),
            ));
        }
        let path = check_http_path(&a.path, p.key("path"), errs);
        if a.parts.is_empty() {
            errs.push((p.key("parts"), "name at least one part".into()));
        }
        let mut keys = HashSet::new();
        for (k, part) in a.parts.iter().enumerate() {
            if !keys.insert(part.key.as_str()) {
                errs.push((
                    p.key("parts").index(k).key("key"),
                    format!("duplicate key {:?}", part.key),
                ));
            }
            if let Err(e) = url::Url::parse(&part.url)
                .map_err(|e| e.to_string())
                .and_then(|u| match u.scheme() {
                    "http" | "https" => Ok(()),
                    _ => Err("must be http:// or https://".into()),
                })
            {
                errs.push((
                    p.key("parts").index(k).key("url"),
                    format!("{:?}: {e}", part.url),
                ));
            }
        }
        if a.timeout_secs == 0 {
            errs.push((p.key("timeout_secs"), "must be at least 1".into()));
        }
        if a.max_part_bytes == Some(0) {
            errs.push((p.key("max_part_bytes"), "must be at least 1".into()));
        }
        aggregates.push(Aggregate {
            name: a.name.clone(),
            path,
            auth: auth_schemes(&a.auth, p.key("auth"), jwt, errs),
            timeout: Duration::from_secs(a.timeout_secs.max(1)),
            parts: a
                .parts
                .iter()
                .map(|x| (x.key.clone(), x.url.clone()))
                .collect(),
            rate_limit: a
                .rate_limit
                .as_ref()
                .and_then(|q| quota(q, p.key("rate_limit"), errs)),
            global_rate_limit: a
                .global_rate_limit
                .as_ref()
                .and_then(|q| quota(q, p.key("global_rate_limit"), errs)),
            max_part_bytes: usize::try_from(a.max_part_bytes.unwrap_or(1 << 20))
                .unwrap_or(usize::MAX),
            access: access(config, &a.users, &a.groups, &p, errs),
        });
        if a.auth.as_deref() != Some(&["none".to_string()][..])
            && a.users.is_none()
            && a.groups.is_none()
        {
            warnings.push((
                p.clone(),
                format!(
                    "aggregate {:?} admits any authenticated user; set `users` or `groups` to restrict it",
                    a.name
                ),
            ));
        }
    }
    RouteTable::new(routes, aggregates)
}

/// `users` / `groups` of a route or aggregate: every name must exist.
fn access(
    config: &Config,
    users: &Option<Vec<String>>,
    groups: &Option<Vec<String>>,
    p: &KeyPath,
    errs: &mut Errors,
) -> Access {
    for (i, u) in users.iter().flatten().enumerate() {
        if !config.users.iter().any(|x| &x.name == u) {
            errs.push((p.key("users").index(i), format!("no user named {u:?}")));
        }
    }
    for (i, g) in groups.iter().flatten().enumerate() {
        if !config.groups.iter().any(|x| &x.name == g) {
            errs.push((p.key("groups").index(i), format!("no group named {g:?}")));
        }
    }
    Access {
        users: users.clone(),
        groups: groups.clone(),
    }
}

fn valid_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
