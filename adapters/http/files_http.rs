//! HTTP semantics of the file API that do not depend on the request: validators (ETag,
//! `Last-Modified`), conditional-request matching, `Range` parsing, content types, and the
//! header helpers `files.rs` uses.

use std::ops::Range;
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, header};

use crate::vfs::{Entry, VPath};

pub(super) fn etag_value(entry: &Entry) -> Option<String> {
    entry
        .etag
        .as_deref()
        .map(|t| format!("\"{}\"", t.trim_start_matches("W/").trim_matches('"')))
}

pub(super) fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// Whether an `If-None-Match` / `If-Match` list names this ETag (weak comparison).
pub(super) fn etag_matches(list: &str, etag: Option<&str>) -> bool {
    let Some(etag) = etag else { return false };
    let bare = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    let want = bare(etag);
    list.split(',').any(|t| t.trim() == "*" || bare(t) == want)
}

/// Parses a single `bytes=` range against `size`. `Ok(None)`: serve the whole file.
pub(super) fn parse_range(value: &str, size: u64) -> Result<Option<Range<u64>>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Multiple ranges: allowed to answer with the whole representation.
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        size.saturating_sub(n)..size
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size
        } else {
            let last: u64 = b.parse().map_err(|_| ())?;
            if last < start {
                return Err(());
            }
            last.saturating_add(1).min(size)
        };
        start..end
    };
    if range.start >= size {
        return Err(());
    }
    Ok(Some(range))
}

/// A request header's value, or `None` when it is absent, not text, or blank (`If-Match:` with
/// no value is treated as not sent rather than as a list that matches nothing).
pub(super) fn header_value(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

pub(super) fn set(h: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

pub(super) fn content_type(path: &VPath) -> String {
    mime_guess::from_path(path.as_str())
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string()
}

pub(super) fn rfc3339(t: Option<SystemTime>) -> Option<String> {
    t.and_then(|t| {
        time::OffsetDateTime::from(t)
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
}

pub(super) fn utf8_percent_encode_path(p: &str) -> String {
    const SEG: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(p, SEG).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some(90..100)));
        assert_eq!(parse_range("bytes=-1000", 100), Ok(Some(0..100)));
        assert_eq!(parse_range("bytes=95-200", 100), Ok(Some(95..100)));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=5-1", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=x-1", 100), Err(()));
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"abc\"", Some("\"abc\"")));
        assert!(etag_matches("W/\"abc\", \"x\"", Some("\"abc\"")));
        assert!(etag_matches("*", Some("\"abc\"")));
        assert!(!etag_matches("\"abd\"", Some("\"abc\"")));
        assert!(!etag_matches("*", None));
    }
}
