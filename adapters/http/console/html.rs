//! HTML for the console: escaping, the page frame (navigation, the operator, the log-out form),
//! and the headers every console response carries (a strict CSP: scripts and styles only from
//! the console's own embedded assets).

use std::fmt::Write;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Escapes text for HTML content and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
pub(super) fn qv(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Bytes for people: `1.5 MiB`.
pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

const NAV: [(&str, &str); 6] = [
    ("audit", "Audit"),
    ("tail", "Live tail"),
    ("sessions", "Sessions"),
    ("users", "Users"),
    ("chain", "Chain"),
    ("overview", "Overview"),
];

/// Adds the console's security headers.
pub(super) fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// A whole page: `active` names the navigation entry, `operator` and `csrf` fill the header.
pub(super) fn page(
    title: &str,
    active: &str,
    operator: Option<(&str, &str)>,
    body: &str,
) -> Response {
    let mut h = String::with_capacity(body.len() + 2048);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · gatehouse console</title>\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <script src=\"/console/assets/console.js\" defer></script></head><body>\
         <header><a class=\"brand\" href=\"/console/audit\">gatehouse</a>",
        esc(title)
    );
    if let Some((op, csrf)) = operator {
        h.push_str("<nav aria-label=\"Console\">");
        for (id, label) in NAV {
            let cur = if id == active {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(h, "<a href=\"/console/{id}\"{cur}>{label}</a>");
        }
        let _ = write!(
            h,
            "</nav><form class=\"logout\" method=\"post\" action=\"/console/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <span class=\"who\">{}</span> <button type=\"submit\">Log out</button></form>",
            esc(csrf),
            esc(op)
        );
    }
    let _ = write!(
        h,
        "</header><main id=\"main\"><h1>{}</h1>{body}</main></body></html>",
        esc(title)
    );
    secure(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], h).into_response())
}

/// A page with a status other than 200 (errors, refusals).
pub(super) fn page_with(status: StatusCode, title: &str, body: &str) -> Response {
    let mut r = page(title, "", None, body);
    *r.status_mut() = status;
    r
}

/// A `303 See Other` to `to`.
pub(super) fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_formats_sizes() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(qv("a b/c"), "a%20b%2Fc");
    }
}
