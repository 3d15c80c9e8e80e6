//! The response cache (moka): GET/HEAD 200 responses of routes with `cache`, keyed by route,
//! method, path, query and principal (not the principal on public routes), plus the values of
//! the request headers the response `Vary`s on. `Cache-Control: no-store`/`private` responses,
//! responses with `Set-Cookie`, and `Vary: *` are never stored; a request with `no-cache` or
//! `no-store` skips the lookup. Memory is bounded by total cached bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, StatusCode, header};

/// Bytes the whole cache may hold.
const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// A stored response.
#[derive(Debug)]
pub(crate) struct Cached {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    expires: Instant,
}

#[derive(Clone)]
pub(crate) struct ResponseCache {
    entries: moka::future::Cache<String, Arc<Cached>>,
    /// Base key → the header names the stored response varies on.
    vary: moka::future::Cache<String, Arc<Vec<HeaderName>>>,
}

fn has_directive(h: &HeaderMap, names: &[&str]) -> bool {
    h.get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| {
            names.iter().any(|n| {
                d.trim()
                    .split('=')
                    .next()
                    .is_some_and(|x| x.eq_ignore_ascii_case(n))
            })
        })
}

impl ResponseCache {
    pub fn new(max_ttl: Duration) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .weigher(|k: &String, v: &Arc<Cached>| {
                    let headers: usize = v
                        .headers
                        .iter()
                        .map(|(k, v)| k.as_str().len() + v.len() + 32)
                        .sum();
                    u32::try_from(k.len() + v.body.len() + headers).unwrap_or(u32::MAX)
                })
                .max_capacity(MAX_BYTES)
                .time_to_live(max_ttl.max(Duration::from_secs(1)))
                .build(),
            vary: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(max_ttl.max(Duration::from_secs(1)))
                .build(),
        }
    }

    /// The base key of a request (before `Vary`).
    pub fn base_key(
        route: &str,
        method: &Method,
        host: &str,
        path: &str,
        query: Option<&str>,
        principal: Option<&str>,
    ) -> String {
        format!(
            "{route}\u{0}{method}\u{0}{}\u{0}{path}\u{0}{}\u{0}{}",
            host.to_ascii_lowercase(),
            query.unwrap_or(""),
            principal.unwrap_or("*")
        )
    }

    fn full_key(base: &str, names: &[HeaderName], req: &HeaderMap) -> String {
        let mut k = base.to_string();
        for n in names {
            k.push('\u{0}');
            for v in req.get_all(n) {
                k.push_str(v.to_str().unwrap_or(""));
                k.push(',');
            }
        }
        k
    }

    /// Whether a request may be answered from the cache.
    pub fn request_may_use(req: &HeaderMap) -> bool {
        !has_directive(req, &["no-cache", "no-store"]) && !req.contains_key(header::PRAGMA)
    }

    /// A fresh stored response for this request.
    pub async fn get(&self, base: &str, req: &HeaderMap) -> Option<Arc<Cached>> {
        let names = self.vary.get(base).await.unwrap_or_default();
        let hit = self.entries.get(&Self::full_key(base, &names, req)).await?;
        (hit.expires > Instant::now()).then_some(hit)
    }

    /// Whether a response may be stored, and the headers it varies on.
    pub fn storable(
        status: StatusCode,
        req: &HeaderMap,
        resp: &HeaderMap,
    ) -> Option<Vec<HeaderName>> {
        if status != StatusCode::OK
            || has_directive(req, &["no-store"])
            || has_directive(resp, &["no-store", "private"])
            || resp.contains_key(header::SET_COOKIE)
        {
            return None;
        }
        let mut names = Vec::new();
        for v in resp
            .get_all(header::VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            for n in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if n == "*" {
                    return None;
                }
                names.push(HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).ok()?);
            }
        }
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        Some(names)
    }

    /// Stores a response.
    #[allow(clippy::too_many_arguments)]
    pub async fn put(
        &self,
        base: String,
        vary: Vec<HeaderName>,
        req: &HeaderMap,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        ttl: Duration,
    ) {
        let key = Self::full_key(&base, &vary, req);
        self.vary.insert(base, Arc::new(vary)).await;
        self.entries
            .insert(
                key,
                Arc::new(Cached {
                    status,
                    headers,
                    body,
                    expires: Instant::now() + ttl,
                }),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn what_is_storable() {
        let none = HeaderMap::new();
        assert_eq!(
            ResponseCache::storable(StatusCode::OK, &none, &none),
            Some(vec![])
        );
        assert_eq!(
            ResponseCache::storable(StatusCode::NOT_FOUND, &none, &none),
            None
        );
        assert_eq!(
            ResponseCache::storable(
                StatusCode::OK,
                &none,
                &h(&[("cache-control", "private, max-age=5")])
            ),
            None
        );
        assert_eq!(
            ResponseCache::storable(StatusCode::OK, &none, &h(&[("cache-control", "no-store")])),
            None
        );
        assert_eq!(
            ResponseCache::storable(StatusCode::OK, &none, &h(&[("set-cookie", "a=b")])),
            None
        );
        assert_eq!(
            ResponseCache::storable(StatusCode::OK, &none, &h(&[("vary", "*")])),
            None
        );
        assert_eq!(
            ResponseCache::storable(StatusCode::OK, &h(&[("cache-control", "no-store")]), &none),
            None
        );
        let v = ResponseCache::storable(
            StatusCode::OK,
            &none,
            &h(&[("vary", "Accept-Language, accept")]),
        )
        .unwrap();
        assert_eq!(
            v.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            ["accept", "accept-language"]
        );
        assert!(!ResponseCache::request_may_use(&h(&[(
            "cache-control",
            "no-cache"
        )])));
        assert!(ResponseCache::request_may_use(&none));
    }

    #[tokio::test]
    async fn vary_splits_entries() {
        let c = ResponseCache::new(Duration::from_secs(60));
        let base = ResponseCache::base_key("r", &Method::GET, "h", "/x", None, None);
        let en = h(&[("accept-language", "en")]);
        let de = h(&[("accept-language", "de")]);
        let vary = vec![HeaderName::from_static("accept-language")];
        c.put(
            base.clone(),
            vary,
            &en,
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(b"hello"),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(c.get(&base, &en).await.unwrap().body, "hello");
        assert!(c.get(&base, &de).await.is_none());
    }
}
