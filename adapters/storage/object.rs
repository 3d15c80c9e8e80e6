//! Object-store backend (S3 and S3-compatible servers, Azure Blob Storage, Google Cloud Storage,
//! and in-process memory) on object_store: one code path for every cloud.
//! - Directories: prefixes; `mkdir` writes a marker object `<dir>/.gatehouse-dir`, hidden in
//!   listings, so empty directories exist; a prefix with objects under it is a directory too.
//! - Uploads: buffered up to one part, then a multipart upload with bounded parts in flight
//!   (memory does not grow with file size); aborted if the upload is dropped. Nothing is visible
//!   before `commit`. No append or resume: object stores cannot.
//! - sha256: small (single PUT) objects carry it as `x-amz-meta-sha256`; multipart objects get a
//!   sidecar `.gatehouse/sha256/<key>` holding `<hex> <etag>`, trusted only while the ETag matches.
//! - Listing is paginated on S3 (1000 keys per request), so huge directories stream.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, GetRange, ListResult, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

use super::multipart::{Journal, Multipart};

use crate::vfs::backend::{
    Backend, ByteStream, Capabilities, CommitMode, Entry, EntryKind, EntryStream, Key, StageMode,
    StagedWrite, StorageError, StorageErrorKind,
};

/// Marker object that makes an empty directory exist.
const DIR_MARKER: &str = ".gatehouse-dir";
/// Key space the gateway keeps for itself.
const RESERVED: &str = ".gatehouse";
/// Metadata key of the content hash.
const META_SHA256: &str = "sha256";
/// Keys per list request.
const PAGE: usize = 1000;

/// An object store as a backend.
pub struct ObjectBackend {
    store: Arc<dyn ObjectStore>,
    /// The same store's low-level multipart API (the upload id is ours to journal).
    multipart: Arc<dyn MultipartStore>,
    /// The same store's paginated listing (clouds; the memory store lists in one go).
    paged: Option<Arc<dyn PaginatedListStore>>,
    part_size: usize,
    /// Open multipart uploads, so those left behind are aborted later (None: not kept).
    journal: Option<Arc<Journal>>,
}

impl std::fmt::Debug for ObjectBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBackend")
            .field("store", &self.store)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

pub(super) fn map_err(e: object_store::Error) -> StorageError {
    use object_store::Error as E;
    let kind = match &e {
        E::NotFound { .. } => StorageErrorKind::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => StorageErrorKind::AlreadyExists,
        E::NotSupported { .. } | E::NotImplemented { .. } => StorageErrorKind::Unsupported,
        E::Generic { .. } => StorageErrorKind::Transient,
        _ => StorageErrorKind::Permanent,
    };
    StorageError::new(kind, e)
}

fn path_of(key: &str) -> Path {
    Path::from(key)
}

/// Decoded last name of an object path.
fn name_of(p: &Path) -> String {
    let raw = p.filename().unwrap_or("");
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

fn reserved(key: &Key) -> bool {
    key.as_str().split('/').next() == Some(RESERVED)
}

fn sidecar(key: &Key) -> Path {
    path_of(&format!("{RESERVED}/sha256/{}", key.as_str()))
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

fn file_entry(meta: &ObjectMeta, sha256: Option<[u8; 32]>) -> Entry {
    Entry {
        name: name_of(&meta.location),
        kind: EntryKind::File,
        size: meta.size,
        modified: Some(meta.last_modified.into()),
        sha256,
        etag: meta.e_tag.clone(),
    }
}

impl ObjectBackend {
    /// A cloud store: an S3 (or S3-compatible) bucket, an Azure container or a GCS bucket.
    pub(crate) fn cloud<T>(store: T, part_size: usize, journal: Option<Arc<Journal>>) -> Self
    where
        T: ObjectStore + MultipartStore + PaginatedListStore,
    {
        let store = Arc::new(store);
        Self {
            store: store.clone(),
            multipart: store.clone(),
            paged: Some(store),
            part_size,
            journal,
        }
    }

    /// Objects in memory (tests, scratch space); lost at exit.
    pub fn memory() -> Self {
        let mem = Arc::new(object_store::memory::InMemory::new());
        Self {
            store: mem.clone(),
            multipart: mem,
            paged: None,
            part_size: 5 * 1024 * 1024,
            journal: None,
        }
    }

    /// Whether any object lives under `key/`.
    async fn has_children(&self, key: &Key) -> Result<bool, StorageError> {
        let prefix = path_of(key.as_str());
        let mut s = self.store.list(Some(&prefix));
        match s.next().await {
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(map_err(e)),
            None => Ok(false),
        }
    }

    async fn head(
        &self,
        key: &Key,
    ) -> Result<Option<(ObjectMeta, Option<[u8; 32]>)>, StorageError> {
        if key.is_root() {
            return Ok(None);
        }
        let opts = GetOptions {
            head: true,
            ..Default::default()
        };
        match self.store.get_opts(&path_of(key.as_str()), opts).await {
            Ok(r) => {
                let sha = r
                    .attributes
                    .get(&Attribute::Metadata(META_SHA256.into()))
                    .and_then(|v| parse_hex(v.as_ref()));
                Ok(Some((r.meta, sha)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }

    fn page_entries(result: ListResult, hide_reserved: bool) -> Vec<Result<Entry, StorageError>> {
        let dirs = result
            .common_prefixes
            .iter()
            .map(name_of)
            .filter(|n| !(hide_reserved && n == RESERVED))
            .map(|n| Ok(Entry::dir(n)));
        let files = result
            .objects
            .iter()
            .filter(|m| name_of(&m.location) != DIR_MARKER)
            .map(|m| Ok(file_entry(m, None)));
        dirs.chain(files).collect()
    }

    /// Moves one object and its digest.
    async fn move_object(&self, from: &Key, to: &Key) -> Result<(), StorageError> {
        let (src, dst) = (path_of(from.as_str()), path_of(to.as_str()));
        self.store.copy(&src, &dst).await.map_err(map_err)?;
        if let Ok(r) = self.store.get(&sidecar(from)).await
            && let Ok(body) = r.bytes().await
            && let Some(hex_digest) = std::str::from_utf8(&body)
                .ok()
                .and_then(|s| s.split(' ').next())
            && let Ok(meta) = self.store.head(&dst).await
        {
            let value = format!("{hex_digest} {}", meta.e_tag.unwrap_or_default());
            let _ = self.store.put(&sidecar(to), PutPayload::from(value)).await;
            let _ = self.store.delete(&sidecar(from)).await;
        }
        self.store.delete(&src).await.map_err(map_err)
    }
}

#[async_trait]
impl Backend for ObjectBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            resume: false,
            set_times: false,
            real_dirs: false,
            random_write: false,
        }
    }

    async fn stat(&self, key: &Key) -> Result<Option<Entry>, StorageError> {
        if key.is_root() {
            return Ok(Some(Entry::dir("")));
        }
        if reserved(key) || key.name() == DIR_MARKER {
            return Ok(None);
        }
        if let Some((meta, sha)) = self.head(key).await? {
            return Ok(Some(file_entry(&meta, sha)));
        }
        if self.has_children(key).await? {
            return Ok(Some(Entry::dir(key.name())));
        }
        Ok(None)
    }

    async fn list(&self, dir: &Key) -> Result<EntryStream, StorageError> {
        let hide_reserved = dir.is_root();
        if reserved(dir) {
            return Err(StorageError::not_found("reserved name"));
        }
        let Some(s3) = self.paged.clone() else {
            let prefix = (!dir.is_root()).then(|| path_of(dir.as_str()));
            let result = self
                .store
                .list_with_delimiter(prefix.as_ref())
                .await
                .map_err(map_err)?;
            return Ok(futures::stream::iter(Self::page_entries(result, hide_reserved)).boxed());
        };
        // Paginated: one request per page of keys, pulled as the consumer reads.
        let prefix = (!dir.is_root()).then(|| format!("{}/", path_of(dir.as_str())));
        let state = (Some(None::<String>), prefix);
        let pages = futures::stream::unfold(state, move |(token, prefix)| {
            let s3 = s3.clone();
            async move {
                let token = token?;
                let opts = PaginatedListOptions {
                    delimiter: Some("/".into()),
                    max_keys: Some(PAGE),
                    page_token: token,
                    ..Default::default()
                };
                match s3.list_paginated(prefix.as_deref(), opts).await {
                    Ok(page) => {
                        let next = page.page_token.map(Some);
                        let entries = Self::page_entries(page.result, hide_reserved);
                        Some((entries, (next, prefix)))
                    }
                    Err(e) => Some((vec![Err(map_err(e))], (None, prefix))),
                }
            }
        });
        Ok(pages.flat_map(futures::stream::iter).boxed())
    }

    async fn read(&self, key: &Key, range: Option<Range<u64>>) -> Result<ByteStream, StorageError> {
        if reserved(key) {
            return Err(StorageError::not_found("reserved name"));
        }
        if let Some(r) = &range
            && r.start >= r.end
        {
            return Ok(futures::stream::empty().boxed());
        }
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let r = self
            .store
            .get_opts(&path_of(key.as_str()), opts)
            .await
            .map_err(map_err)?;
        Ok(r.into_stream().map(|c| c.map_err(map_err)).boxed())
    }

    async fn stage(
        &self,
        key: &Key,
        mode: StageMode,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        if reserved(key) || key.name() == DIR_MARKER {
            return Err(StorageError::new(
                StorageErrorKind::Permanent,
                "reserved name",
            ));
        }
        if let StageMode::KeepPrefix(_) = mode {
            return Err(StorageError::new(
                StorageErrorKind::Unsupported,
                "object stores cannot append or resume",
            ));
        }
        Ok(Box::new(ObjectStaged {
            store: self.store.clone(),
            multipart_store: self.multipart.clone(),
            journal: self.journal.clone(),
            key: key.clone(),
            part_size: self.part_size,
            buf: BytesMut::new(),
            multipart: None,
        }))
    }

    async fn delete(&self, key: &Key) -> Result<(), StorageError> {
        if reserved(key) {
            return Err(StorageError::not_found("reserved name"));
        }
        self.store
            .delete(&path_of(key.as_str()))
            .await
            .map_err(map_err)?;
        let _ = self.store.delete(&sidecar(key)).await;
        Ok(())
    }

    async fn mkdir(&self, key: &Key) -> Result<(), StorageError> {
        if reserved(key) {
            return Err(StorageError::new(
                StorageErrorKind::Permanent,
                "reserved name",
            ));
        }
        let marker = path_of(&format!("{}/{DIR_MARKER}", key.as_str()));
        self.store
            .put(&marker, PutPayload::new())
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    async fn rmdir(&self, key: &Key) -> Result<(), StorageError> {
        let mut s = self.store.list(Some(&path_of(key.as_str())));
        let mut marker = None;
        while let Some(item) = s.next().await {
            let meta = item.map_err(map_err)?;
            let direct_marker = meta
                .location
                .as_ref()
                .strip_prefix(path_of(key.as_str()).as_ref())
                .is_some_and(|rest| rest == format!("/{DIR_MARKER}"));
            if !direct_marker {
                return Err(StorageError::new(
                    StorageErrorKind::NotEmpty,
                    "directory not empty",
                ));
            }
            marker = Some(meta.location);
        }
        match marker {
            Some(m) => self.store.delete(&m).await.map_err(map_err),
            None => Err(StorageError::not_found("no such directory")),
        }
    }

    async fn rename(&self, from: &Key, to: &Key, no_overwrite: bool) -> Result<(), StorageError> {
        if reserved(from) || reserved(to) {
            return Err(StorageError::not_found("reserved name"));
        }
        if no_overwrite && self.stat(to).await?.is_some() {
            return Err(StorageError::new(
                StorageErrorKind::AlreadyExists,
                "target exists",
            ));
        }
        if self.head(from).await?.is_some() {
            return self.move_object(from, to).await;
        }
        // A directory: move every key under it (not atomic; S3 has no rename).
        let base = path_of(from.as_str());
        let keys: Vec<Path> = self
            .store
            .list(Some(&base))
            .map(|r| r.map(|m| m.location))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(map_err)?;
        if keys.is_empty() {
            return Err(StorageError::not_found("no such file or directory"));
        }
        for k in keys {
            let rest = k
                .as_ref()
                .strip_prefix(base.as_ref())
                .unwrap_or_default()
                .trim_start_matches('/');
            let src = Key::new("", k.as_ref());
            let dst = Key::new(to.as_str(), rest);
            self.move_object(&src, &dst).await?;
        }
        Ok(())
    }

    async fn sweep(&self, at_start: bool) -> usize {
        match &self.journal {
            Some(j) => j.sweep(self.multipart.as_ref(), at_start).await,
            None => 0,
        }
    }

    async fn check(&self) -> Result<(), StorageError> {
        match self
            .store
            .head(&path_of(&format!("{RESERVED}/ready")))
            .await
        {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn digest(&self, key: &Key, entry: &Entry) -> Option<[u8; 32]> {
        if entry.sha256.is_some() {
            return entry.sha256;
        }
        let body = self
            .store
            .get(&sidecar(key))
            .await
            .ok()?
            .bytes()
            .await
            .ok()?;
        let text = std::str::from_utf8(&body).ok()?;
        let (hex_digest, etag) = text.split_once(' ')?;
        (Some(etag) == entry.etag.as_deref()).then(|| parse_hex(hex_digest))?
    }
}

/// An upload: buffered until it outgrows one part, then multipart.
struct ObjectStaged {
    store: Arc<dyn ObjectStore>,
    multipart_store: Arc<dyn MultipartStore>,
    journal: Option<Arc<Journal>>,
    key: Key,
    part_size: usize,
    buf: BytesMut,
    multipart: Option<Multipart>,
}

impl ObjectStaged {
    async fn exists(
        store: Arc<dyn ObjectStore>,
        key: &Key,
    ) -> Result<Option<ObjectMeta>, StorageError> {
        match store.head(&path_of(key.as_str())).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }
}

#[async_trait]
impl StagedWrite for ObjectStaged {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        if let Some(mp) = self.multipart.as_mut() {
            return mp.write(data).await;
        }
        self.buf.extend_from_slice(&data);
        if self.buf.len() < self.part_size {
            return Ok(());
        }
        let first = std::mem::take(&mut self.buf);
        self.multipart = Some(
            Multipart::start(
                self.multipart_store.clone(),
                self.journal.as_ref(),
                self.key.as_str(),
                self.part_size,
                first,
            )
            .await?,
        );
        Ok(())
    }

    async fn commit(
        mut self: Box<Self>,
        sha256: [u8; 32],
        mode: CommitMode,
    ) -> Result<(), StorageError> {
        let hex_digest = hex::encode(sha256);
        match self.multipart.take() {
            None => {
                let mut attributes = Attributes::new();
                attributes.insert(
                    Attribute::Metadata(META_SHA256.into()),
                    AttributeValue::from(hex_digest),
                );
                // No-replace: `If-None-Match: *`, atomic on S3 and the memory store.
                let opts = PutOptions {
                    attributes,
                    mode: match mode {
                        CommitMode::Replace => PutMode::Overwrite,
                        CommitMode::NoReplace => PutMode::Create,
                    },
                    ..Default::default()
                };
                let body = PutPayload::from(std::mem::take(&mut self.buf).freeze());
                self.store
                    .put_opts(&path_of(self.key.as_str()), body, opts)
                    .await
                    .map(|_| ())
                    .map_err(map_err)
            }
            Some(mp) => {
                // object_store completes multipart uploads unconditionally, so a no-replace commit
                // checks just before completing: the window is one request, not the upload.
                if mode == CommitMode::NoReplace
                    && let Ok(Some(_)) = Self::exists(self.store.clone(), &self.key).await
                {
                    mp.abort().await;
                    return Err(StorageError::new(
                        StorageErrorKind::AlreadyExists,
                        "target appeared during the upload",
                    ));
                }
                let done = mp.complete().await?;
                let value = format!("{hex_digest} {}", done.e_tag.unwrap_or_default());
                // Best effort: without it the file just has no Repr-Digest.
                let _ = self
                    .store
                    .put(&sidecar(&self.key), PutPayload::from(value))
                    .await;
                Ok(())
            }
        }
    }

    async fn abort(mut self: Box<Self>) {
        if let Some(mp) = self.multipart.take() {
            mp.abort().await;
        }
    }
}
