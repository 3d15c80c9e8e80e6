//! Google Cloud Storage over its JSON API, as an object_store `ObjectStore` (with
//! `MultipartStore` and `PaginatedListStore`), so a GCS bucket goes through the same
//! `ObjectBackend` code path as S3 and Azure.
//!
//! Why not object_store's own GCS client: it speaks the XML API for every object operation
//! (PUT, HEAD, DELETE, copy, multipart), which no GCS emulator implements (fake-gcs-server,
//! Google's storage-testbench and gcp-storage-emulator each answer only some XML GETs and PUTs),
//! so it could never be checked before a user ran it. The JSON API here is the one Google
//! documents first and the emulators implement: uploads are `uploadType=multipart` (one
//! request, metadata with the bytes) up to a part and resumable sessions above it
//! (`gcs_upload.rs`); reads fetch the object's metadata and then its bytes pinned to that
//! generation; listings are `objects.list` pages; copies are `rewriteTo`. Credentials still come
//! from object_store's GCS credential providers (service account file, application default
//! credentials, the metadata server).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use http::{Method, Request, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use object_store::gcp::GcpCredentialProvider;
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, CopyMode, CopyOptions, Error, GetOptions, GetResult,
    GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use percent_encoding::utf8_percent_encode;
use serde::Deserialize;

use super::gcs_upload::Session;
use crate::adapters::http_client::{self, HttpsClient};

pub(super) type Body = BoxBody<Bytes, Infallible>;
const STORE: &str = "GCS";
/// Longest wait for a response's head; the body then streams.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts of an idempotent request on a connection error, 429 or 5xx.
const ATTEMPTS: u32 = 3;

pub(super) fn enc(s: &str) -> String {
    utf8_percent_encode(s, super::URL_SEGMENT).to_string()
}

/// The failure of one request, as object_store's error kinds.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct GcsError(pub String);

pub(super) fn generic(msg: impl Into<String>) -> Error {
    Error::Generic {
        store: STORE,
        source: Box::new(GcsError(msg.into())),
    }
}

/// Maps a refusal to object_store's kinds; `create` turns 412 into `AlreadyExists`.
pub(super) fn status_err(status: StatusCode, body: &[u8], path: &str, create: bool) -> Error {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    let source = Box::new(GcsError(format!("{status}: {text}")));
    let path = path.to_string();
    match status.as_u16() {
        404 => Error::NotFound { path, source },
        412 if create => Error::AlreadyExists { path, source },
        412 => Error::Precondition { path, source },
        304 => Error::NotModified { path, source },
        401 => Error::Unauthenticated { path, source },
        403 => Error::PermissionDenied { path, source },
        _ => Error::Generic {
            store: STORE,
            source,
        },
    }
}

pub(super) fn full(b: Bytes) -> Body {
    Full::new(b).boxed()
}

pub(super) fn payload_body(p: PutPayload) -> Body {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
        p.into_iter().map(|b| Ok(Frame::data(b))).collect();
    BodyExt::boxed(StreamBody::new(futures::stream::iter(frames)))
}

/// A listed name as a path: names are what `Path` made of them on the way in, so they parse
/// as they are (`Path::from` would encode a `%` a second time).
pub(super) fn key_path(name: &str) -> Path {
    Path::parse(name).unwrap_or_else(|_| Path::from(name))
}

/// One object's resource, as `objects.get` and `objects.list` give it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Object {
    pub(super) name: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    generation: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

impl Object {
    pub(super) fn meta(&self) -> Result<ObjectMeta> {
        let size = match &self.size {
            Some(s) => s
                .parse()
                .map_err(|_| generic(format!("object {}: size {s:?}", self.name)))?,
            None => 0,
        };
        let last_modified = self
            .updated
            .as_deref()
            .and_then(|u| chrono::DateTime::parse_from_rfc3339(u).ok())
            .map(|d| d.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        Ok(ObjectMeta {
            location: key_path(&self.name),
            last_modified,
            size,
            e_tag: self.etag.clone(),
            version: self.generation.clone(),
        })
    }

    pub(super) fn result(&self) -> Result<PutResult> {
        Ok(PutResult {
            e_tag: self.etag.clone(),
            version: self.generation.clone(),
            extensions: Default::default(),
        })
    }

    fn attributes(&self) -> Attributes {
        let mut a = Attributes::new();
        if let Some(t) = &self.content_type {
            a.insert(Attribute::ContentType, AttributeValue::from(t.clone()));
        }
        for (k, v) in &self.metadata {
            a.insert(
                Attribute::Metadata(k.clone().into()),
                AttributeValue::from(v.clone()),
            );
        }
        a
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rewrite {
    done: bool,
    #[serde(default)]
    rewrite_token: Option<String>,
}

/// The metadata resource an upload names: the object's name, content type and custom metadata.
pub(super) fn resource(path: &Path, attributes: &Attributes) -> Result<serde_json::Value> {
    let mut metadata = serde_json::Map::new();
    let mut v = serde_json::json!({ "name": path.as_ref() });
    for (k, val) in attributes {
        match k {
            Attribute::Metadata(name) => {
                metadata.insert(name.to_string(), val.as_ref().into());
            }
            Attribute::ContentType => v["contentType"] = val.as_ref().into(),
            Attribute::CacheControl => v["cacheControl"] = val.as_ref().into(),
            Attribute::ContentDisposition => v["contentDisposition"] = val.as_ref().into(),
            Attribute::ContentEncoding => v["contentEncoding"] = val.as_ref().into(),
            Attribute::ContentLanguage => v["contentLanguage"] = val.as_ref().into(),
            other => {
                return Err(Error::NotSupported {
                    source: Box::new(GcsError(format!("attribute {other:?} on GCS"))),
                });
            }
        }
    }
    if !metadata.is_empty() {
        v["metadata"] = serde_json::Value::Object(metadata);
    }
    Ok(v)
}

/// The shared state of one bucket's client.
#[derive(Debug)]
pub(super) struct Inner {
    http: HttpsClient<Body>,
    /// `https://storage.googleapis.com` or an emulator's address, without a trailing slash.
    pub(super) base: String,
    pub(super) bucket: String,
    credentials: GcpCredentialProvider,
    /// Open resumable uploads, by session URL.
    pub(super) sessions: Mutex<HashMap<String, Arc<Session>>>,
}

/// A GCS bucket.
#[derive(Debug, Clone)]
pub(crate) struct Gcs {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Display for Gcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GoogleCloudStorage({})", self.inner.bucket)
    }
}

impl Inner {
    pub(super) fn object_url(&self, path: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            enc(&self.bucket),
            enc(path)
        )
    }

    pub(super) fn upload_url(&self) -> String {
        format!("{}/upload/storage/v1/b/{}/o", self.base, enc(&self.bucket))
    }

    /// A request with the bearer token (none for an emulator's `disable_oauth` credentials).
    pub(super) async fn request(
        &self,
        method: Method,
        url: &str,
    ) -> Result<http::request::Builder> {
        let cred = self.credentials.get_credential().await?;
        let mut b = Request::builder().method(method).uri(url);
        if !cred.bearer.is_empty() {
            b = b.header(header::AUTHORIZATION, format!("Bearer {}", cred.bearer));
        }
        Ok(b)
    }

    /// Sends a request and waits for its response's head.
    pub(super) async fn send(
        &self,
        req: http::request::Builder,
        body: Body,
    ) -> Result<http::Response<hyper::body::Incoming>> {
        let req = req.body(body).map_err(|e| generic(e.to_string()))?;
        match tokio::time::timeout(RESPONSE_TIMEOUT, self.http.request(req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(generic(format!("GCS unreachable: {e}"))),
            Err(_) => Err(generic("GCS did not answer in time")),
        }
    }

    /// Sends a request and reads its whole (small) answer.
    pub(super) async fn call(
        &self,
        req: http::request::Builder,
        body: Body,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes)> {
        let resp = self.send(req, body).await?;
        let (parts, body) = resp.into_parts();
        let bytes = tokio::time::timeout(RESPONSE_TIMEOUT, body.collect())
            .await
            .map_err(|_| generic("GCS answer stalled"))?
            .map_err(|e| generic(format!("GCS answer: {e}")))?
            .to_bytes();
        Ok((parts.status, parts.headers, bytes))
    }

    /// An idempotent request without a body, retried on a connection error, 429 or 5xx.
    pub(super) async fn idempotent(
        &self,
        method: Method,
        url: &str,
    ) -> Result<(StatusCode, Bytes)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = self.request(method.clone(), url).await?;
            let r = self.call(req, full(Bytes::new())).await;
            let retry = match &r {
                Err(Error::Generic { .. }) => true,
                Ok((s, _, _)) => s.is_server_error() || *s == StatusCode::TOO_MANY_REQUESTS,
                Err(_) => false,
            };
            if !retry || attempt >= ATTEMPTS {
                return r.map(|(s, _, b)| (s, b));
            }
            tokio::time::sleep(Duration::from_millis(100 << (2 * attempt))).await;
        }
    }

    async fn metadata(&self, path: &Path, generation: Option<&str>) -> Result<Object> {
        let mut url = self.object_url(path.as_ref());
        if let Some(g) = generation {
            url.push_str(&format!("?generation={}", enc(g)));
        }
        let (status, body) = self.idempotent(Method::GET, &url).await?;
        if !status.is_success() {
            return Err(status_err(status, &body, path.as_ref(), false));
        }
        serde_json::from_slice(&body).map_err(|e| generic(format!("objects.get answer: {e}")))
    }

    async fn delete(&self, path: &Path) -> Result<()> {
        let (status, body) = self
            .idempotent(Method::DELETE, &self.object_url(path.as_ref()))
            .await?;
        // Gone already is what a delete wants, as on S3.
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(status_err(status, &body, path.as_ref(), false))
    }
}

impl Gcs {
    /// A client for `bucket` at `base` (the public service or an emulator).
    pub(crate) fn new(
        base: &str,
        bucket: &str,
        credentials: GcpCredentialProvider,
    ) -> std::result::Result<Self, String> {
        Ok(Self {
            inner: Arc::new(Inner {
                http: http_client::build()?,
                base: base.trim_end_matches('/').to_string(),
                bucket: bucket.to_string(),
                credentials,
                sessions: Mutex::new(HashMap::new()),
            }),
        })
    }
}

#[async_trait]
impl ObjectStore for Gcs {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let inner = &self.inner;
        let mut url = format!("{}?uploadType=multipart", inner.upload_url());
        let create = matches!(opts.mode, PutMode::Create);
        match &opts.mode {
            PutMode::Overwrite => {}
            PutMode::Create => url.push_str("&ifGenerationMatch=0"),
            PutMode::Update(v) => {
                let g = v
                    .version
                    .as_deref()
                    .ok_or_else(|| generic("a conditional update needs the object's generation"))?;
                url.push_str(&format!("&ifGenerationMatch={}", enc(g)));
            }
        }
        let boundary = format!("gatehouse-{}", uuid::Uuid::new_v4().simple());
        let meta = resource(location, &opts.attributes)?;
        let len = payload.content_length();
        let head = format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let total = head.len() + len + tail.len();
        let mut frames: Vec<Result<Frame<Bytes>, Infallible>> =
            vec![Ok(Frame::data(Bytes::from(head)))];
        frames.extend(payload.into_iter().map(|b| Ok(Frame::data(b))));
        frames.push(Ok(Frame::data(Bytes::from(tail))));
        let req = inner
            .request(Method::POST, &url)
            .await?
            .header(
                header::CONTENT_TYPE,
                format!("multipart/related; boundary={boundary}"),
            )
            .header(header::CONTENT_LENGTH, total);
        let (status, _, body) = inner
            .call(
                req,
                BodyExt::boxed(StreamBody::new(futures::stream::iter(frames))),
            )
            .await?;
        if !status.is_success() {
            return Err(status_err(status, &body, location.as_ref(), create));
        }
        let o: Object =
            serde_json::from_slice(&body).map_err(|e| generic(format!("upload answer: {e}")))?;
        o.result()
    }

    async fn put_multipart_opts(
        &self,
        _location: &Path,
        _opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        // The backend drives uploads through `MultipartStore` (its ids are journalled).
        Err(Error::NotSupported {
            source: Box::new(GcsError("put_multipart: use MultipartStore".into())),
        })
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let inner = &self.inner;
        let object = inner.metadata(location, options.version.as_deref()).await?;
        let meta = object.meta()?;
        options.check_preconditions(&meta)?;
        let range = match &options.range {
            Some(r) => r.as_range(meta.size).map_err(|e| Error::Generic {
                store: STORE,
                source: Box::new(e),
            })?,
            None => 0..meta.size,
        };
        let attributes = object.attributes();
        if options.head || range.is_empty() {
            return Ok(GetResult {
                payload: GetResultPayload::Stream(futures::stream::empty().boxed()),
                meta,
                range,
                attributes,
                extensions: Default::default(),
            });
        }
        // The bytes of the generation just described, or an error if it was replaced since.
        let generation = meta.version.clone().unwrap_or_default();
        let url = format!(
            "{}?alt=media&generation={}",
            inner.object_url(location.as_ref()),
            enc(&generation)
        );
        let mut req = inner.request(Method::GET, &url).await?;
        if range != (0..meta.size) {
            req = req.header(
                header::RANGE,
                format!("bytes={}-{}", range.start, range.end - 1),
            );
        }
        let resp = inner.send(req, full(Bytes::new())).await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(status_err(status, &body, location.as_ref(), false));
        }
        let stream = http_body_util::BodyDataStream::new(resp.into_body())
            .map_err(|e| generic(format!("GCS download: {e}")))
            .boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream),
            meta,
            range,
            attributes,
            extensions: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = self.inner.clone();
        locations
            .map(move |l| {
                let inner = inner.clone();
                async move {
                    let l = l?;
                    inner.delete(&l).await?;
                    Ok(l)
                }
            })
            .buffered(4)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.list_all(prefix, None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.list_all(prefix, Some(offset.to_string()))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.list_delimited(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let inner = &self.inner;
        let create = matches!(options.mode, CopyMode::Create);
        let base = format!(
            "{}/rewriteTo/b/{}/o/{}",
            inner.object_url(from.as_ref()),
            enc(&inner.bucket),
            enc(to.as_ref())
        );
        let mut token: Option<String> = None;
        // A large object may take several calls; each answers with where it got to.
        loop {
            let url = {
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                if create {
                    q.append_pair("ifGenerationMatch", "0");
                }
                if let Some(t) = &token {
                    q.append_pair("rewriteToken", t);
                }
                format!("{base}?{}", q.finish())
            };
            let req = inner
                .request(Method::POST, &url)
                .await?
                .header(header::CONTENT_TYPE, "application/json");
            let (status, _, body) = inner.call(req, full(Bytes::from_static(b"{}"))).await?;
            if !status.is_success() {
                let path = if status == StatusCode::NOT_FOUND {
                    from
                } else {
                    to
                };
                return Err(status_err(status, &body, path.as_ref(), create));
            }
            let r: Rewrite = serde_json::from_slice(&body)
                .map_err(|e| generic(format!("rewrite answer: {e}")))?;
            if r.done {
                return Ok(());
            }
            token = Some(
                r.rewrite_token
                    .ok_or_else(|| generic("rewrite not done and no token to go on"))?,
            );
        }
    }
}
