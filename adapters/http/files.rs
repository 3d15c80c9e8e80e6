//! `/v1/files/{path}`: the REST file API. The path is taken raw from the URI, percent-decoded
//! exactly once and normalised by `VPath` inside the caller's home, so `..`, `%2e%2e` and
//! `%2f` can never leave it, and a backslash, NUL or bad UTF-8 is a 400. Bodies stream both ways.
//! - GET: file (Range, ETag, Last-Modified, conditional requests, `Repr-Digest`) or directory
//!   listing (JSON array, streamed). HEAD: the same headers.
//! - PUT: streamed, atomic upload; 201 + JSON when new, 204 when replaced (HTTP forbids a body
//!   on 204, so the same facts go in `X-Gatehouse-*` headers and `Repr-Digest`).
//!   `If-Match` guards a replace, `If-None-Match: *` makes it create-only.
//! - DELETE: file or empty directory. POST `?op=mkdir`, `?op=rename&to=P[&overwrite=true]`.

use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::auth::Authenticated;
use super::files_http::{
    content_type, etag_matches, etag_value, header_value, http_date, parse_range, rfc3339, set,
    utf8_percent_encode_path,
};
use super::openapi::{CommonErrors, DownloadHeaders, FilePath, PostParams, UploadHeaders};
use super::ops::RouteLabel;
use super::{ApiError, AppState, ErrorBody};
use crate::session::Session;
use crate::vfs::{self, VPath, WriteMode};

/// One entry of a directory listing.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ListEntry {
    /// The entry's name within the directory.
    name: String,
    /// `file` or `dir`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(file|dir)$")]
    kind: &'static str,
    /// Size in bytes (0 for directories).
    size: u64,
    /// Last modification, RFC 3339 UTC, when the backend knows it.
    modified: Option<String>,
}

/// What a PUT that created a file stored (the same facts come as `X-Gatehouse-*` headers).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct PutResult {
    /// The file's path in the caller's view.
    path: String,
    /// Bytes stored.
    size: u64,
    /// Hex sha256 of the bytes stored, computed while they streamed.
    sha256: String,
}

/// The result of `POST ?op=mkdir` (`to` is absent) or `POST ?op=rename` (`to` is the new path).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct OpResult {
    /// The path the operation acted on.
    path: String,
    /// The rename target.
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
}

pub(crate) fn router() -> Router<AppState> {
    // Every file response is for one authenticated user: shared caches must not keep it, and
    // without this a cache may apply heuristic freshness to it (REDbot warns).
    let private = tower_http::set_header::SetResponseHeaderLayer::if_not_present(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private"),
    );
    Router::new()
        .route("/v1/files", any(files))
        .route("/v1/files/", any(files))
        .route("/v1/files/{*rest}", any(files))
        .layer(private)
}

/// The user-view path a request names, and whether it ends in `/` (a directory request).
fn request_path(uri: &http::Uri) -> Result<(VPath, bool), ApiError> {
    let raw = uri.path().strip_prefix("/v1/files").unwrap_or("");
    let dir = raw.is_empty() || raw.ends_with('/');
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    let text = String::from_utf8(bytes).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "path is not valid UTF-8",
        )
    })?;
    let path = VPath::parse(&text).map_err(|e| ApiError::from(vfs::Error::InvalidPath(e)))?;
    Ok((path, dir))
}

fn query_params(uri: &http::Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

async fn files(
    State(state): State<AppState>,
    Authenticated(session): Authenticated,
    req: Request,
) -> Response {
    let result = dispatch(&state, &session, req).await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    resp.extensions_mut()
        .insert(RouteLabel(crate::telemetry::Label::const_str("files")));
    resp
}

async fn dispatch(state: &AppState, s: &Session, req: Request) -> Result<Response, ApiError> {
    let (path, dir) = request_path(req.uri())?;
    let vfs = &state.core.vfs;
    // Owned: a borrow of the request (whose body is not Sync) must not live across awaits.
    let method = req.method().clone();
    match method {
        Method::GET | Method::HEAD => {
            let head = method == Method::HEAD;
            if dir {
                return list(vfs, s, &path, head).await;
            }
            let headers = req.headers().clone();
            get(vfs, s, &path, &headers, head).await
        }
        Method::PUT => {
            if dir {
                return Err(ApiError::bad_request(
                    "PUT needs a file path, not a directory",
                ));
            }
            put(vfs, s, &path, req).await
        }
        Method::DELETE => delete(vfs, s, &path).await,
        Method::POST => {
            let uri = req.uri().clone();
            post(vfs, s, &path, &uri).await
        }
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET, HEAD, PUT, DELETE or POST",
        )
        .with_header(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, PUT, DELETE, POST"),
        )),
    }
}

#[utoipa::path(
    method(get, head),
    path = "/v1/files/{path}",
    tag = "files",
    params(FilePath, DownloadHeaders),
    responses(
        (status = 200, description = "The file; a directory's path answers with its listing",
            content(([u8] = "application/octet-stream"), (Vec<ListEntry> = "application/json")),
            headers(
                ("ETag" = String, description = "Entity tag; use with If-None-Match / If-Match / If-Range"),
                ("Last-Modified" = String),
                ("Repr-Digest" = String, description = "`sha-256=:<base64>:` when the gateway knows the file's sha256"),
                ("Accept-Ranges" = String),
            )),
        (status = 206, description = "The requested byte range", content_type = "application/octet-stream", body = [u8]),
        (status = 304, description = "Not modified (If-None-Match / If-Modified-Since)"),
        (status = 416, description = "The range is outside the file", body = ErrorBody),
        CommonErrors,
    ),
    security(("basic" = []), ("bearer" = []), ("api_key" = [])),
)]
/// Download a file (streamed; one `bytes=` range).
async fn get(
    vfs: &vfs::Vfs,
    s: &Session,
    path: &VPath,
    req_headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let mut dl = match vfs.open_read(s, path).await {
        Ok(dl) => dl,
        Err(vfs::Error::WrongKind(_)) => return list(vfs, s, path, head).await,
        Err(e) => return Err(e.into()),
    };
    let entry = dl.entry().clone();
    let etag = etag_value(&entry);
    let mut headers = HeaderMap::new();
    set(&mut headers, header::CONTENT_TYPE, &content_type(path));
    set(&mut headers, header::ACCEPT_RANGES, "bytes");
    if let Some(e) = &etag {
        set(&mut headers, header::ETAG, e);
    }
    if let Some(m) = entry.modified {
        set(&mut headers, header::LAST_MODIFIED, &http_date(m));
    }
    if let Some(d) = dl.digest().await {
        let b64 = base64::engine::general_purpose::STANDARD.encode(d);
        set(
            &mut headers,
            header::HeaderName::from_static("repr-digest"),
            &format!("sha-256=:{b64}:"),
        );
    }
    // Conditional GET: If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
    let not_modified = match header_value(req_headers, header::IF_NONE_MATCH) {
        Some(list) => etag_matches(list, etag.as_deref()),
        None => match (
            header_value(req_headers, header::IF_MODIFIED_SINCE)
                .and_then(|v| httpdate::parse_http_date(v).ok()),
            entry.modified,
        ) {
            (Some(since), Some(m)) => {
                m.duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
                    <= since
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
            }
            _ => false,
        },
    };
    if not_modified || head {
        dl.discard();
        let status = if not_modified {
            StatusCode::NOT_MODIFIED
        } else {
            StatusCode::OK
        };
        if !not_modified {
            set(
                &mut headers,
                header::CONTENT_LENGTH,
                &entry.size.to_string(),
            );
        }
        return Ok((status, headers).into_response());
    }
    let size = entry.size;
    let if_range_ok = header_value(req_headers, header::IF_RANGE)
        .is_none_or(|v| etag.as_deref() == Some(v.trim()));
    let range = match header_value(req_headers, header::RANGE) {
        Some(r) if if_range_ok => match parse_range(r, size) {
            Ok(r) => r,
            Err(()) => {
                dl.discard();
                set(
                    &mut headers,
                    header::CONTENT_RANGE,
                    &format!("bytes */{size}"),
                );
                let mut e = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    "range outside the file",
                );
                e.headers
                    .extend(headers.into_iter().filter_map(|(k, v)| k.map(|k| (k, v))));
                return Err(e);
            }
        },
        _ => None,
    };
    let status = match &range {
        Some(r) => {
            set(
                &mut headers,
                header::CONTENT_RANGE,
                &format!("bytes {}-{}/{size}", r.start, r.end.saturating_sub(1)),
            );
            set(
                &mut headers,
                header::CONTENT_LENGTH,
                &(r.end - r.start).to_string(),
            );
            StatusCode::PARTIAL_CONTENT
        }
        None => {
            set(&mut headers, header::CONTENT_LENGTH, &size.to_string());
            StatusCode::OK
        }
    };
    let stream = dl.into_stream(range).await?;
    Ok((status, headers, Body::from_stream(stream)).into_response())
}

#[utoipa::path(
    method(get, head),
    path = "/v1/files/{path}/",
    tag = "files",
    params(FilePath),
    responses(
        (status = 200, description = "The directory's entries (streamed). `GET /v1/files/` lists the home.", body = Vec<ListEntry>),
        (status = 409, description = "The path is a file", body = ErrorBody),
        CommonErrors,
    ),
    security(("basic" = []), ("bearer" = []), ("api_key" = [])),
)]
/// List a directory.
async fn list(vfs: &vfs::Vfs, s: &Session, path: &VPath, head: bool) -> Result<Response, ApiError> {
    let entries = vfs.list(s, path).await?;
    let headers = [
        (header::CONTENT_TYPE, "application/json"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    if head {
        return Ok((StatusCode::OK, headers).into_response());
    }
    // Streamed as it is read, so a directory of a million objects needs no memory for it.
    let items = entries.enumerate().map(|(i, e)| {
        e.map(|e| {
            let json = serde_json::to_string(&ListEntry {
                kind: if e.is_dir() { "dir" } else { "file" },
                size: e.size,
                modified: rfc3339(e.modified),
                name: e.name,
            })
            .unwrap_or_default();
            let sep = if i == 0 { "" } else { "," };
            Bytes::from(format!("{sep}{json}"))
        })
    });
    let body = futures::stream::once(async { Ok(Bytes::from_static(b"[")) })
        .chain(items)
        .chain(futures::stream::once(async {
            Ok(Bytes::from_static(b"]"))
        }));
    Ok((StatusCode::OK, headers, Body::from_stream(body)).into_response())
}

#[utoipa::path(
    put,
    path = "/v1/files/{path}",
    tag = "files",
    params(FilePath, UploadHeaders),
    request_body(content = [u8], content_type = "application/octet-stream", description = "The file's bytes, streamed"),
    responses(
        (status = 201, description = "Created", body = PutResult, headers(("Location" = String), ("Repr-Digest" = String))),
        (status = 204, description = "Replaced an existing file (no body: the same facts are in the headers)",
            headers(("X-Gatehouse-Path" = String), ("X-Gatehouse-Size" = u64), ("X-Gatehouse-Sha256" = String), ("Repr-Digest" = String))),
        (status = 409, description = "The path is a directory", body = ErrorBody),
        (status = 412, description = "If-Match or If-None-Match failed", body = ErrorBody),
        (status = 422, description = "A `[[validate]]` rule refused the file (`validation_failed`, with `details`); nothing was stored", body = ErrorBody),
        CommonErrors,
    ),
    security(("basic" = []), ("bearer" = []), ("api_key" = [])),
)]
/// Upload a file: streamed, atomic (visible only when complete).
async fn put(
    vfs: &vfs::Vfs,
    s: &Session,
    path: &VPath,
    req: Request,
) -> Result<Response, ApiError> {
    let headers = req.headers().clone();
    let create_only =
        header_value(&headers, header::IF_NONE_MATCH).is_some_and(|v| v.trim() == "*");
    if let Some(want) = header_value(&headers, header::IF_MATCH) {
        let current = match vfs.stat(s, path).await {
            Ok(e) if !e.is_dir() => etag_value(&e),
            Ok(_) | Err(vfs::Error::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        if !etag_matches(want, current.as_deref()) {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "the file changed (If-Match)",
            ));
        }
    }
    let mode = if create_only {
        WriteMode::CreateNew
    } else {
        WriteMode::Replace
    };
    let mut upload = match vfs.create(s, path, mode).await {
        Ok(u) => u,
        Err(vfs::Error::AlreadyExists) if create_only => {
            return Err(exists_precondition());
        }
        Err(e) => return Err(e.into()),
    };
    let mut body = req.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(data) => {
                if let Err(e) = upload.write(data).await {
                    let _ = upload.abort(&format!("write failed: {e}")).await;
                    return Err(e.into());
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "request body ended early");
                upload
                    .abort("interrupted: request body ended early")
                    .await?;
                return Err(ApiError::bad_request(
                    "request body ended early; nothing was stored",
                ));
            }
        }
    }
    let c = match upload.commit().await {
        Ok(c) => c,
        // Someone created the file while this create-only upload streamed.
        Err(vfs::Error::AlreadyExists) if create_only => {
            return Err(exists_precondition());
        }
        Err(e) => return Err(e.into()),
    };
    let sha = hex::encode(c.sha256);
    let digest = format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(c.sha256)
    );
    let mut h = HeaderMap::new();
    set(
        &mut h,
        header::HeaderName::from_static("repr-digest"),
        &digest,
    );
    set(
        &mut h,
        header::HeaderName::from_static("x-gatehouse-path"),
        path.as_str(),
    );
    set(
        &mut h,
        header::HeaderName::from_static("x-gatehouse-size"),
        &c.size.to_string(),
    );
    set(
        &mut h,
        header::HeaderName::from_static("x-gatehouse-sha256"),
        &sha,
    );
    if c.replaced {
        return Ok((StatusCode::NO_CONTENT, h).into_response());
    }
    let loc: String = format!("/v1/files{}", utf8_percent_encode_path(path.as_str()));
    set(&mut h, header::LOCATION, &loc);
    let body = PutResult {
        path: path.as_str().to_string(),
        size: c.size,
        sha256: sha,
    };
    Ok((StatusCode::CREATED, h, axum::Json(body)).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/files/{path}",
    tag = "files",
    params(FilePath),
    responses(
        (status = 204, description = "Deleted (a file, or an empty directory)"),
        (status = 409, description = "The directory is not empty", body = ErrorBody),
        CommonErrors,
    ),
    security(("basic" = []), ("bearer" = []), ("api_key" = [])),
)]
/// Delete a file or an empty directory.
async fn delete(vfs: &vfs::Vfs, s: &Session, path: &VPath) -> Result<Response, ApiError> {
    let entry = vfs.stat(s, path).await?;
    if entry.is_dir() {
        vfs.rmdir(s, path).await?;
    } else {
        vfs.delete(s, path).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post,
    path = "/v1/files/{path}",
    tag = "files",
    params(FilePath, PostParams),
    responses(
        (status = 201, description = "Directory created (`op=mkdir`)", body = OpResult),
        (status = 200, description = "Renamed (`op=rename`)", body = OpResult),
        (status = 409, description = "The target exists (rename without `overwrite`, or mkdir of an existing path)", body = ErrorBody),
        (status = 422, description = "A rename into a path with a `[[validate]]` rule, of a file that rule refuses", body = ErrorBody),
        CommonErrors,
    ),
    security(("basic" = []), ("bearer" = []), ("api_key" = [])),
)]
/// Make a directory (`?op=mkdir`) or rename (`?op=rename&to=<path>[&overwrite=true]`).
async fn post(
    vfs: &vfs::Vfs,
    s: &Session,
    path: &VPath,
    uri: &http::Uri,
) -> Result<Response, ApiError> {
    let params = query_params(uri);
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let overwrite = match param("overwrite") {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => return Err(ApiError::bad_request("overwrite must be true or false")),
    };
    match param("op") {
        Some("mkdir") if params.iter().any(|(k, _)| k == "to" || k == "overwrite") => {
            Err(ApiError::bad_request("mkdir takes no `to` or `overwrite`"))
        }
        Some("mkdir") => {
            vfs.mkdir(s, path).await?;
            let body = OpResult {
                path: path.as_str().to_string(),
                to: None,
            };
            Ok((StatusCode::CREATED, axum::Json(body)).into_response())
        }
        Some("rename") => {
            let to = param("to").ok_or_else(|| ApiError::bad_request("rename needs ?to=<path>"))?;
            let to = VPath::parse(to).map_err(|e| ApiError::from(vfs::Error::InvalidPath(e)))?;
            vfs.rename(s, path, &to, !overwrite).await?;
            let body = OpResult {
                path: path.as_str().to_string(),
                to: Some(to.as_str().to_string()),
            };
            Ok((StatusCode::OK, axum::Json(body)).into_response())
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "unknown op {other:?} (mkdir or rename)"
        ))),
        None => Err(ApiError::bad_request(
            "POST needs ?op=mkdir or ?op=rename&to=<path>",
        )),
    }
}

/// `412` for a create-only upload (`If-None-Match: *`) whose file exists.
fn exists_precondition() -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        "the file exists (If-None-Match: *)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_decode_once_and_stay_home() {
        let p = |s: &str| {
            request_path(&s.parse::<http::Uri>().unwrap()).map(|(p, d)| (p.to_string(), d))
        };
        assert_eq!(p("/v1/files/a/b.txt").unwrap(), ("/a/b.txt".into(), false));
        assert_eq!(p("/v1/files/a/").unwrap(), ("/a".into(), true));
        assert_eq!(p("/v1/files").unwrap(), ("/".into(), true));
        assert_eq!(
            p("/v1/files/%2e%2e/%2e%2e/etc/passwd").unwrap().0,
            "/etc/passwd"
        );
        assert_eq!(p("/v1/files/a%2f..%2f..%2fx").unwrap().0, "/x");
        assert_eq!(p("/v1/files/%252e%252e/x").unwrap().0, "/%2e%2e/x");
        assert!(p("/v1/files/a%5c..%5cb").is_err());
        assert!(p("/v1/files/a%00b").is_err());
        assert!(p("/v1/files/%ff").is_err());
    }
}
