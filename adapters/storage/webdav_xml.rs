//! The WebDAV wire details that are not HTTP: the PROPFIND request body, its multistatus answer
//! parsed as it streams in (quick-xml over the body), and cutting a byte window out of a body
//! when a server ignores `Range`.

use std::time::SystemTime;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use quick_xml::events::Event;

use crate::vfs::backend::{ByteStream, StorageError};

/// What the gateway asks for: only the properties it uses.
pub(super) const PROPFIND_BODY: &[u8] = br#"<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:getetag/></D:prop></D:propfind>"#;

/// One `<response>` of a multistatus answer.
#[derive(Debug, Clone, Default)]
pub(super) struct Prop {
    /// As the server wrote it (a path or an absolute URL, percent-encoded).
    pub href: String,
    /// The properties came with a 2xx status.
    pub status_ok: bool,
    pub collection: bool,
    pub length: u64,
    pub modified: Option<SystemTime>,
    pub etag: Option<String>,
}

struct Parser<R> {
    reader: quick_xml::Reader<R>,
    buf: Vec<u8>,
    /// Local name of the innermost open element.
    path: Vec<String>,
    text: String,
    current: Option<Prop>,
    /// The status of the propstat being read, applied at its end.
    propstat: Option<Prop>,
    done: bool,
}

fn local(name: &str) -> String {
    name.rsplit(':').next().unwrap_or(name).to_string()
}

impl<R: tokio::io::AsyncBufRead + Unpin> Parser<R> {
    /// The next complete `<response>`.
    async fn next(&mut self) -> Option<Result<Prop, String>> {
        while !self.done {
            self.buf.clear();
            let ev = match self.reader.read_event_into_async(&mut self.buf).await {
                Ok(ev) => ev,
                Err(e) => {
                    self.done = true;
                    return Some(Err(format!("multistatus answer: {e}")));
                }
            };
            match ev {
                Event::Start(s) => {
                    let name = local(s.name().as_ref());
                    self.open(&name);
                    self.path.push(name);
                    self.text.clear();
                }
                Event::Empty(s) => {
                    let name = local(s.name().as_ref());
                    self.open(&name);
                    if name == "collection"
                        && self.path.iter().any(|p| p == "resourcetype")
                        && let Some(p) = self.propstat.as_mut()
                    {
                        p.collection = true;
                    }
                }
                Event::Text(t) => self.text.push_str(&t.xml10_content()),
                Event::CData(t) => self.text.push_str(&t.xml10_content()),
                Event::GeneralRef(r) => {
                    if let Ok(Some(c)) = r.resolve_char_ref() {
                        self.text.push(c);
                    } else if let Some(s) =
                        quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                    {
                        self.text.push_str(s);
                    }
                }
                Event::End(_) => {
                    let name = self.path.pop().unwrap_or_default();
                    if let Some(done) = self.close(&name) {
                        return Some(Ok(done));
                    }
                    self.text.clear();
                }
                Event::Eof => self.done = true,
                _ => {}
            }
        }
        None
    }

    fn open(&mut self, name: &str) {
        match name {
            "response" => self.current = Some(Prop::default()),
            "propstat" => self.propstat = Some(Prop::default()),
            _ => {}
        }
    }

    fn close(&mut self, name: &str) -> Option<Prop> {
        let text = self.text.trim().to_string();
        match name {
            "href" if self.propstat.is_none() => {
                if let Some(c) = self.current.as_mut() {
                    c.href = text;
                }
            }
            "collection" => {
                if let Some(p) = self.propstat.as_mut() {
                    p.collection = true;
                }
            }
            "getcontentlength" => {
                if let Some(p) = self.propstat.as_mut() {
                    p.length = text.parse().unwrap_or(0);
                }
            }
            "getlastmodified" => {
                if let Some(p) = self.propstat.as_mut() {
                    p.modified = httpdate::parse_http_date(&text).ok();
                }
            }
            "getetag" => {
                if let Some(p) = self.propstat.as_mut() {
                    p.etag = (!text.is_empty()).then_some(text);
                }
            }
            "status" => {
                let ok = text
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|c| c.starts_with('2'));
                if let Some(p) = self.propstat.as_mut() {
                    p.status_ok = ok;
                } else if let Some(c) = self.current.as_mut() {
                    // A response-level status (RFC 4918 14.24) without properties.
                    c.status_ok = ok;
                }
            }
            "propstat" => {
                if let (Some(ps), Some(c)) = (self.propstat.take(), self.current.as_mut())
                    && ps.status_ok
                {
                    c.status_ok = true;
                    c.collection |= ps.collection;
                    if ps.length > 0 {
                        c.length = ps.length;
                    }
                    c.modified = c.modified.or(ps.modified);
                    c.etag = c.etag.take().or(ps.etag);
                }
            }
            "response" => return self.current.take(),
            _ => {}
        }
        None
    }
}

/// The `<response>`s of a multistatus body, parsed as the body arrives.
pub(super) fn props<S>(body: S) -> futures::stream::BoxStream<'static, Result<Prop, String>>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin + 'static,
{
    let reader = tokio::io::BufReader::new(tokio_util::io::StreamReader::new(body));
    let parser = Parser {
        reader: quick_xml::Reader::from_reader(reader),
        buf: Vec::new(),
        path: Vec::new(),
        text: String::new(),
        current: None,
        propstat: None,
        done: false,
    };
    futures::stream::unfold(parser, |mut p| async move {
        let item = p.next().await?;
        Some((item, p))
    })
    .boxed()
}

/// Bytes `skip..skip+limit` of a body.
pub(super) fn window(
    body: futures::stream::BoxStream<'static, Result<Bytes, StorageError>>,
    skip: u64,
    limit: Option<u64>,
) -> ByteStream {
    futures::stream::unfold(
        (body, skip, limit),
        |(mut body, mut skip, mut left)| async move {
            loop {
                if left == Some(0) {
                    return None;
                }
                let mut chunk = match body.next().await? {
                    Ok(c) => c,
                    Err(e) => return Some((Err(e), (body, skip, Some(0)))),
                };
                if skip > 0 {
                    let n = skip.min(chunk.len() as u64);
                    skip -= n;
                    chunk = chunk.slice(n as usize..);
                }
                if let Some(l) = left.as_mut() {
                    let n = (*l).min(chunk.len() as u64);
                    chunk.truncate(n as usize);
                    *l -= n;
                }
                if !chunk.is_empty() {
                    return Some((Ok(chunk), (body, skip, left)));
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn multistatus_answers_parse_in_any_chunking() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<D:multistatus xmlns:D="DAV:">
 <D:response><D:href>/dav/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
 <D:response><D:href>/dav/a%20b&amp;c.txt</D:href><D:propstat><D:prop><D:resourcetype/><D:getcontentlength>12</D:getcontentlength><D:getlastmodified>Tue, 01 Dec 2026 10:00:00 GMT</D:getlastmodified><D:getetag>"abc"</D:getetag></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat><D:propstat><D:prop><x:other xmlns:x="X"/></D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat></D:response>
</D:multistatus>"#;
        for size in [1, 7, 4096] {
            let chunks: Vec<Result<Bytes, std::io::Error>> = xml
                .as_bytes()
                .chunks(size)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let got: Vec<Prop> = props(futures::stream::iter(chunks))
                .map(|r| r.unwrap())
                .collect()
                .await;
            assert_eq!(got.len(), 2, "{size}");
            assert!(got[0].collection && got[0].status_ok);
            assert_eq!(got[1].href, "/dav/a%20b&c.txt");
            assert_eq!(got[1].length, 12);
            assert_eq!(got[1].etag.as_deref(), Some("\"abc\""));
            assert!(got[1].modified.is_some() && !got[1].collection && got[1].status_ok);
        }
    }
}
