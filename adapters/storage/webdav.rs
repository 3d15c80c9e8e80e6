//! WebDAV backend (RFC 4918) on the shared hyper client: GET (with `Range`), PUT, DELETE,
//! MKCOL, MOVE and PROPFIND.
//! - Uploads stream (chunked PUT fed as the client writes) into a hidden temporary resource
//!   under `.gatehouse/tmp/` and are `MOVE`d into place at commit, with `Overwrite: F` for a
//!   no-replace commit (the server refuses atomically with 412). Nothing is visible before.
//! - sha256: a sidecar `.gatehouse/sha256/<sha256 of the key>` holding `<hex> <etag>`, trusted
//!   only while the file's ETag matches.
//! - Listings parse the `PROPFIND Depth: 1` answer as it arrives (quick-xml on the body stream).
//! - No resume or random writes: WebDAV has no portable partial PUT.

use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use percent_encoding::{percent_decode_str, utf8_percent_encode};
use sha2::Digest;
use tokio::sync::mpsc;

use super::webdav_staged::{WebDavStaged, tokio_stream_frames};

use super::webdav_xml::{self, Prop};
use crate::adapters::http_client::{self, HttpsClient};
use crate::secret::Secret;
use crate::vfs::backend::{
    Backend, ByteStream, Capabilities, Entry, EntryKind, EntryStream, Key, StageMode, StagedWrite,
    StorageError, StorageErrorKind,
};

/// Key space the gateway keeps for itself on the share.
const RESERVED: &str = ".gatehouse";
/// Chunks of an upload buffered between the client and the PUT.
const PIPE_DEPTH: usize = 4;

use super::URL_SEGMENT as SEGMENT;

type Body = BoxBody<Bytes, std::io::Error>;

/// A WebDAV share as a backend.
pub struct WebDavBackend {
    client: HttpsClient<Body>,
    /// The share's URL, ending in `/`.
    base: url::Url,
    auth: Option<Secret<HeaderValue>>,
}

impl std::fmt::Debug for WebDavBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDavBackend")
            .field("url", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

pub(super) fn err(kind: StorageErrorKind, what: impl std::fmt::Display) -> StorageError {
    StorageError::new(kind, what)
}

/// The error for an unexpected answer.
pub(super) fn status_error(status: StatusCode, what: &str) -> StorageError {
    let kind = match status {
        StatusCode::NOT_FOUND | StatusCode::CONFLICT => StorageErrorKind::NotFound,
        StatusCode::PRECONDITION_FAILED | StatusCode::METHOD_NOT_ALLOWED => {
            StorageErrorKind::AlreadyExists
        }
        StatusCode::INSUFFICIENT_STORAGE => StorageErrorKind::NoSpace,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => StorageErrorKind::Permanent,
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            StorageErrorKind::Transient
        }
        _ => StorageErrorKind::Permanent,
    };
    err(kind, format!("WebDAV {what}: HTTP {status}"))
}

pub(super) fn transport(e: impl std::fmt::Display) -> StorageError {
    err(StorageErrorKind::Transient, format!("WebDAV: {e}"))
}

/// The entry a PROPFIND response describes.
fn entry_of(p: &Prop, name: String) -> Entry {
    Entry {
        name,
        kind: if p.collection {
            EntryKind::Dir
        } else {
            EntryKind::File
        },
        size: if p.collection { 0 } else { p.length },
        modified: p.modified,
        sha256: None,
        etag: p.etag.clone(),
    }
}

fn reserved(key: &Key) -> bool {
    key.as_str().split('/').next() == Some(RESERVED)
}

/// A WebDAV method (all valid tokens).
fn dav(name: &'static str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap_or_else(|_| unreachable!("{name} is a valid method"))
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

impl WebDavBackend {
    /// A share at `url` (a collection), with Basic credentials when given.
    pub fn new(
        url: &str,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Result<Self, StorageError> {
        let mut base = url::Url::parse(url).map_err(|e| err(StorageErrorKind::Permanent, e))?;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let auth = match user {
            Some(u) => {
                use base64::Engine;
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{u}:{}", password.unwrap_or("")));
                let mut v = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|e| err(StorageErrorKind::Permanent, e))?;
                v.set_sensitive(true);
                Some(Secret::new(v))
            }
            None => None,
        };
        Ok(Self {
            client: http_client::build().map_err(|e| err(StorageErrorKind::Permanent, e))?,
            base,
            auth,
        })
    }

    /// The URL of a key (`dir` adds the trailing slash collections have).
    pub(super) fn url(&self, key: &str, dir: bool) -> String {
        let mut u = self.base.as_str().to_string();
        for (i, seg) in key.split('/').filter(|s| !s.is_empty()).enumerate() {
            if i > 0 {
                u.push('/');
            }
            u.extend(utf8_percent_encode(seg, SEGMENT));
        }
        if dir && !u.ends_with('/') {
            u.push('/');
        }
        u
    }

    pub(super) fn request(&self, method: Method, url: &str) -> http::request::Builder {
        let mut b = Request::builder().method(method).uri(url);
        if let Some(a) = &self.auth {
            // The share's credentials go to the share only.
            b = b.header(header::AUTHORIZATION, a.expose().clone());
        }
        b
    }

    async fn send(
        &self,
        req: http::request::Builder,
        body: Body,
    ) -> Result<http::Response<hyper::body::Incoming>, StorageError> {
        let req = req
            .body(body)
            .map_err(|e| err(StorageErrorKind::Permanent, e))?;
        self.client.request(req).await.map_err(transport)
    }

    /// Sends a request whose answer has no content worth reading; returns its status.
    pub(super) async fn call(
        &self,
        req: http::request::Builder,
    ) -> Result<StatusCode, StorageError> {
        let resp = self.send(req, empty()).await?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        Ok(status)
    }

    fn propfind(&self, url: &str, depth: &str) -> http::request::Builder {
        self.request(dav("PROPFIND"), url)
            .header("depth", depth)
            .header(header::CONTENT_TYPE, "application/xml")
    }

    /// PROPFIND Depth 0 of a key: its properties, or None.
    async fn props(&self, key: &str) -> Result<Option<Prop>, StorageError> {
        let url = self.url(key, false);
        let body = Full::new(Bytes::from_static(webdav_xml::PROPFIND_BODY))
            .map_err(|never| match never {})
            .boxed();
        let resp = self.send(self.propfind(&url, "0"), body).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            StatusCode::MULTI_STATUS => {}
            s => return Err(status_error(s, "PROPFIND")),
        }
        let stream = resp
            .into_body()
            .into_data_stream()
            .map_err(std::io::Error::other);
        let mut props = webdav_xml::props(stream);
        match props.next().await {
            Some(Ok(p)) if p.status_ok => Ok(Some(p)),
            Some(Ok(_)) | None => Ok(None),
            Some(Err(e)) => Err(err(StorageErrorKind::Permanent, e)),
        }
    }

    fn sidecar(key: &Key) -> String {
        format!(
            "{RESERVED}/sha256/{}",
            hex::encode(sha2::Sha256::digest(key.as_str().as_bytes()))
        )
    }

    /// Makes `.gatehouse/<sub>` exist (once per process is enough; MKCOL of an existing
    /// collection answers 405, which is fine).
    pub(super) async fn ensure_reserved(&self, sub: &str) -> Result<(), StorageError> {
        for dir in [RESERVED.to_string(), format!("{RESERVED}/{sub}")] {
            let s = self
                .call(self.request(dav("MKCOL"), &self.url(&dir, true)))
                .await?;
            if !(s.is_success() || s == StatusCode::METHOD_NOT_ALLOWED) {
                return Err(status_error(s, "MKCOL"));
            }
        }
        Ok(())
    }

    pub(super) async fn write_sidecar(&self, key: &Key, sha256: [u8; 32]) {
        let etag = match self.props(key.as_str()).await {
            Ok(Some(p)) => p.etag.unwrap_or_default(),
            _ => return,
        };
        let body = Full::new(Bytes::from(format!("{} {etag}", hex::encode(sha256))))
            .map_err(|never| match never {})
            .boxed();
        let url = self.url(&Self::sidecar(key), false);
        // Best effort: without it the file just has no recorded digest.
        if let Ok(resp) = self.send(self.request(Method::PUT, &url), body).await {
            let _ = resp.into_body().collect().await;
        }
    }

    /// MOVE `from` to `to`; 412 when `to` exists and `overwrite` is off.
    pub(super) async fn move_to(
        &self,
        from: &str,
        to: &str,
        dir: bool,
        overwrite: bool,
    ) -> Result<(), StorageError> {
        let req = self
            .request(dav("MOVE"), &self.url(from, dir))
            .header("destination", self.url(to, dir))
            .header("overwrite", if overwrite { "T" } else { "F" });
        match self.call(req).await? {
            s if s.is_success() => Ok(()),
            s => Err(status_error(s, "MOVE")),
        }
    }
}

#[async_trait]
impl Backend for WebDavBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            resume: true,
            set_times: false,
            real_dirs: true,
            random_write: false,
        }
    }

    async fn stat(&self, key: &Key) -> Result<Option<Entry>, StorageError> {
        if reserved(key) {
            return Ok(None);
        }
        if key.is_root() {
            return Ok(Some(Entry::dir("")));
        }
        Ok(self
            .props(key.as_str())
            .await?
            .map(|p| entry_of(&p, key.name().to_string())))
    }

    async fn list(&self, dir: &Key) -> Result<EntryStream, StorageError> {
        if reserved(dir) {
            return Err(StorageError::not_found("reserved name"));
        }
        let url = self.url(dir.as_str(), true);
        let body = Full::new(Bytes::from_static(webdav_xml::PROPFIND_BODY))
            .map_err(|never| match never {})
            .boxed();
        let resp = self.send(self.propfind(&url, "1"), body).await?;
        match resp.status() {
            StatusCode::MULTI_STATUS => {}
            s => return Err(status_error(s, "PROPFIND")),
        }
        let own = url::Url::parse(&url)
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        let stream = resp
            .into_body()
            .into_data_stream()
            .map_err(std::io::Error::other);
        let hide_reserved = dir.is_root();
        let entries = webdav_xml::props(stream).filter_map(move |p| {
            let own = own.clone();
            async move {
                let p = match p {
                    Ok(p) => p,
                    Err(e) => return Some(Err(err(StorageErrorKind::Permanent, e))),
                };
                // The href is absolute or a path; its last segment is the name.
                let path = url::Url::parse(&p.href)
                    .map(|u| u.path().to_string())
                    .unwrap_or_else(|_| p.href.clone());
                if path.trim_end_matches('/') == own.trim_end_matches('/') || !p.status_ok {
                    return None;
                }
                let raw = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                let name = percent_decode_str(raw).decode_utf8_lossy().into_owned();
                if name.is_empty() || (hide_reserved && name == RESERVED) {
                    return None;
                }
                let e = entry_of(&p, name);
                Some(Ok(e))
            }
        });
        Ok(entries.boxed())
    }

    async fn read(&self, key: &Key, range: Option<Range<u64>>) -> Result<ByteStream, StorageError> {
        if reserved(key) {
            return Err(StorageError::not_found("reserved name"));
        }
        self.get(key.as_str(), range).await
    }

    async fn stage(
        &self,
        key: &Key,
        mode: StageMode,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        self.stage_at(key, mode).await
    }

    async fn delete(&self, key: &Key) -> Result<(), StorageError> {
        self.delete_file(key).await
    }

    async fn mkdir(&self, key: &Key) -> Result<(), StorageError> {
        self.make_dir(key).await
    }

    async fn rmdir(&self, key: &Key) -> Result<(), StorageError> {
        self.remove_dir(key).await
    }

    async fn rename(&self, from: &Key, to: &Key, no_overwrite: bool) -> Result<(), StorageError> {
        self.move_key(from, to, no_overwrite).await
    }

    async fn set_modified(&self, _key: &Key, _time: SystemTime) -> Result<(), StorageError> {
        // WebDAV servers keep their own times (`getlastmodified` is live); accepted and ignored,
        // as on object stores.
        Ok(())
    }

    async fn check(&self) -> Result<(), StorageError> {
        match self.props("").await? {
            Some(p) if p.collection => Ok(()),
            _ => Err(err(
                StorageErrorKind::Permanent,
                "the WebDAV URL is not a collection",
            )),
        }
    }

    async fn digest(&self, key: &Key, entry: &Entry) -> Option<[u8; 32]> {
        let mut s = self.get(&Self::sidecar(key), None).await.ok()?;
        let mut body = Vec::new();
        while let Some(c) = s.next().await {
            body.extend_from_slice(&c.ok()?);
            if body.len() > 1024 {
                return None;
            }
        }
        let text = std::str::from_utf8(&body).ok()?;
        let (hex_digest, etag) = text.split_once(' ')?;
        if Some(etag) != entry.etag.as_deref() {
            return None;
        }
        hex::decode(hex_digest).ok()?.try_into().ok()
    }
}

impl WebDavBackend {
    /// GET of any path under the share (the gateway's own files included).
    pub(super) async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, StorageError> {
        if let Some(r) = &range
            && r.start >= r.end
        {
            return Ok(futures::stream::empty().boxed());
        }
        let mut req = self.request(Method::GET, &self.url(key, false));
        if let Some(r) = &range {
            req = req.header(header::RANGE, format!("bytes={}-{}", r.start, r.end - 1));
        }
        let resp = self.send(req, empty()).await?;
        let status = resp.status();
        let skip = match (status, &range) {
            (StatusCode::PARTIAL_CONTENT, _) => 0,
            (StatusCode::OK, Some(r)) => r.start, // the server ignored the range
            (StatusCode::OK, None) => 0,
            (StatusCode::RANGE_NOT_SATISFIABLE, _) => return Ok(futures::stream::empty().boxed()),
            (s, _) => return Err(status_error(s, "GET")),
        };
        let limit = range.map(|r| r.end - r.start);
        let body = resp.into_body().into_data_stream().map_err(transport);
        Ok(webdav_xml::window(body.boxed(), skip, limit))
    }

    async fn stage_at(
        &self,
        key: &Key,
        mode: StageMode,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        if reserved(key) || key.is_root() {
            return Err(StorageError::not_found("reserved name"));
        }
        // The parent must exist (a PUT there would fail only at the end).
        let parent = key.as_str().rsplit_once('/').map_or("", |(p, _)| p);
        if !parent.is_empty() && !self.props(parent).await?.is_some_and(|p| p.collection) {
            return Err(StorageError::not_found("no such directory"));
        }
        self.ensure_reserved("tmp").await?;
        let tmp = format!("{RESERVED}/tmp/{}", uuid::Uuid::new_v4());
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(PIPE_DEPTH);
        let frames = tokio_stream_frames(rx);
        let body = BoxBody::new(StreamBody::new(frames));
        let req = self
            .request(Method::PUT, &self.url(&tmp, false))
            .body(body)
            .map_err(|e| err(StorageErrorKind::Permanent, e))?;
        let client = self.client.clone();
        let put = tokio::spawn(async move {
            let resp = client.request(req).await.map_err(transport)?;
            let status = resp.status();
            let _ = resp.into_body().collect().await;
            Ok::<StatusCode, StorageError>(status)
        });
        let mut staged = Box::new(WebDavStaged {
            backend: Arc::new(self.clone_handle()),
            key: key.clone(),
            tmp,
            tx: Some(tx),
            put: Some(put),
        });
        if let StageMode::KeepPrefix(n) = mode
            && let Err(e) = staged.keep_prefix(n).await
        {
            staged.abort().await;
            return Err(e);
        }
        Ok(staged)
    }

    async fn delete_file(&self, key: &Key) -> Result<(), StorageError> {
        if reserved(key) {
            return Err(StorageError::not_found("reserved name"));
        }
        match self.props(key.as_str()).await? {
            None => return Err(StorageError::not_found("no such file")),
            Some(p) if p.collection => {
                return Err(err(StorageErrorKind::NotAFile, "is a directory"));
            }
            Some(_) => {}
        }
        match self
            .call(self.request(Method::DELETE, &self.url(key.as_str(), false)))
            .await?
        {
            s if s.is_success() => {
                let _ = self
                    .call(self.request(Method::DELETE, &self.url(&Self::sidecar(key), false)))
                    .await;
                Ok(())
            }
            s => Err(status_error(s, "DELETE")),
        }
    }

    async fn make_dir(&self, key: &Key) -> Result<(), StorageError> {
        if reserved(key) {
            return Err(StorageError::not_found("reserved name"));
        }
        let req = self.request(dav("MKCOL"), &self.url(key.as_str(), true));
        match self.call(req).await? {
            s if s.is_success() => Ok(()),
            s => Err(status_error(s, "MKCOL")),
        }
    }

    async fn remove_dir(&self, key: &Key) -> Result<(), StorageError> {
        if reserved(key) || key.is_root() {
            return Err(StorageError::not_found("reserved name"));
        }
        match self.props(key.as_str()).await? {
            None => return Err(StorageError::not_found("no such directory")),
            Some(p) if !p.collection => {
                return Err(err(StorageErrorKind::NotAFile, "not a directory"));
            }
            Some(_) => {}
        }
        if self.list(key).await?.next().await.is_some() {
            return Err(err(StorageErrorKind::NotEmpty, "directory not empty"));
        }
        match self
            .call(self.request(Method::DELETE, &self.url(key.as_str(), true)))
            .await?
        {
            s if s.is_success() => Ok(()),
            s => Err(status_error(s, "DELETE")),
        }
    }

    async fn move_key(&self, from: &Key, to: &Key, no_overwrite: bool) -> Result<(), StorageError> {
        if reserved(from) || reserved(to) {
            return Err(StorageError::not_found("reserved name"));
        }
        let Some(src) = self.props(from.as_str()).await? else {
            return Err(StorageError::not_found("no such file or directory"));
        };
        self.move_to(from.as_str(), to.as_str(), src.collection, !no_overwrite)
            .await?;
        if !src.collection {
            // The digest follows the file (best effort; a stale one is ignored by its ETag).
            self.ensure_reserved("sha256").await.ok();
            let _ = self
                .move_to(&Self::sidecar(from), &Self::sidecar(to), false, true)
                .await;
        }
        Ok(())
    }
}

impl WebDavBackend {
    fn clone_handle(&self) -> Self {
        Self {
            client: self.client.clone(),
            base: self.base.clone(),
            auth: self.auth.as_ref().map(|a| Secret::new(a.expose().clone())),
        }
    }
}
