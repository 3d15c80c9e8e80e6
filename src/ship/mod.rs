//! Audit shipping (`[audit.ship]`): at least every `interval_secs` the node rotates its audit
//! file and writes every complete file not yet shipped to `<prefix><node>/<file>` on a backend,
//! write-once (the backend's no-replace commit: `If-None-Match: *` on S3), then a signed
//! checkpoint `<prefix><node>/checkpoints/<number>.json` (see `checkpoint`). Local progress is
//! kept in `<state_dir>/audit-ship.json`, written after the checkpoint, so a crash in between
//! ships the same files again: an object already there with the same sha256 counts as shipped,
//! one with other content is an error and is never overwritten.
//!
//! `verify` checks what was shipped: `gatehouse audit verify --remote BACKEND`.

pub mod checkpoint;
pub mod read;
mod scan;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditAction, AuditEvent, AuditLog, Outcome, record};
use crate::vfs::backend::{Backend, CommitMode, Key, StageMode, StorageError, StorageErrorKind};
use checkpoint::{Checkpoint, Signed};

/// The local progress file, in the state directory.
pub const STATE_FILE: &str = "audit-ship.json";
/// Default signing key file name, in the state directory.
pub const DEFAULT_KEY_FILE: &str = "audit_signing_ed25519";

/// Why a shipment failed (it is tried again at the next interval).
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The audit log could not rotate.
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// A local file could not be read.
    #[error("{0}")]
    Local(String),
    /// The backend failed.
    #[error("backend: {0}")]
    Storage(#[from] StorageError),
    /// An object already exists with other content: never overwritten.
    #[error("{0} already exists on the backend with different content; not overwritten")]
    Conflict(String),
    /// The local chain does not continue what was shipped.
    #[error("{0}")]
    Chain(String),
}

/// What has been shipped (`audit-ship.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipState {
    /// The first local file number not shipped yet.
    pub next_file: u64,
    /// The last checkpoint written (0: none).
    pub checkpoint: u64,
    /// Its signature.
    pub signature: Option<String>,
    /// The hash of the last shipped record.
    pub last_hash: Option<String>,
    /// Its seq.
    pub last_seq: u64,
}

impl ShipState {
    /// Reads the state file in `state_dir` (default when absent).
    pub fn load(state_dir: &Path) -> Result<Self, ShipError> {
        let path = state_dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ShipError::Local(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(ShipError::Local(format!("{}: {e}", path.display()))),
        }
    }

    fn save(&self, state_dir: &Path) -> Result<(), ShipError> {
        let path = state_dir.join(STATE_FILE);
        let tmp = state_dir.join(format!("{STATE_FILE}.tmp"));
        let err = |e: std::io::Error| ShipError::Local(format!("{}: {e}", path.display()));
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }
}

/// Object keys of a node's shipment.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `prefix` without its trailing `/`.
    prefix: String,
}

impl Layout {
    /// The layout under `prefix` (`audit/`).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// `<prefix>`: one directory per node below it.
    pub fn root(&self) -> Key {
        Key::new("", &self.prefix)
    }

    /// `<prefix><node>/<rel>` (`rel` empty: the node's directory).
    pub fn key(&self, node: &str, rel: &str) -> Key {
        let node_dir = Key::new(&self.prefix, node);
        Key::new(node_dir.as_str(), rel)
    }

    /// The checkpoint `number`'s name under the node's `checkpoints/`.
    pub fn checkpoint_name(number: u64) -> String {
        format!("{number:08}.json")
    }
}

/// The shipper of one node.
pub struct Shipper {
    /// Where to.
    pub backend: Arc<dyn Backend>,
    /// The backend's name (for records).
    pub backend_name: String,
    /// Object layout.
    pub layout: Layout,
    /// This node.
    pub node: String,
    /// How often.
    pub interval: Duration,
    /// Signs checkpoints.
    pub key: SigningKey,
    /// Holds `audit-ship.json`.
    pub state_dir: PathBuf,
    /// The log to rotate and read.
    pub audit: AuditLog,
}

impl Shipper {
    /// Ships every `interval` until `stop`, then once more (what the last interval wrote).
    pub async fn run(self, stop: tokio_util::sync::CancellationToken) {
        loop {
            let stopping = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep(self.interval) => false,
            };
            if let Err(e) = self.ship_once().await {
                tracing::error!(error = %e, backend = %self.backend_name, "audit shipment failed; retried at the next interval");
                self.audit.record_detached(
                    AuditEvent::new(AuditAction::Config, Outcome::Error)
                        .detail(format!("audit shipment failed: {e}")),
                );
            }
            if stopping {
                return;
            }
        }
    }

    /// Rotates and ships what is complete; returns the checkpoint written, if any.
    pub async fn ship_once(&self) -> Result<Option<u64>, ShipError> {
        let mut st = self.recover(ShipState::load(&self.state_dir)?).await?;
        // Nothing since the last shipment but its own record: no new file, no checkpoint.
        let written = *self.audit.written().borrow();
        if st.checkpoint > 0 && written <= st.last_seq + 1 {
            return Ok(None);
        }
        let newest = self.audit.rotate().await?;
        let dir = self.audit.dir().to_path_buf();
        let files = record::list_files(&dir)
            .map_err(|e| ShipError::Local(format!("{}: {e}", dir.display())))?;
        let todo: Vec<(u64, PathBuf)> = files
            .into_iter()
            .filter(|(n, _)| *n >= st.next_file && *n <= newest)
            .collect();
        let Some(last_n) = todo.last().map(|(n, _)| *n) else {
            return Ok(None);
        };
        self.ensure_dirs().await;
        let mut shipped = Vec::new();
        let mut first_prev = None;
        let mut last = None;
        for (_, path) in &todo {
            let Some((info, content)) = scan::scan(path.clone()).await? else {
                continue;
            };
            let expect = last
                .as_ref()
                .map(|(_, h): &(u64, String)| h.clone())
                .or(st.last_hash.clone());
            if let Some(want) = expect
                && info.first_prev != want
            {
                return Err(ShipError::Chain(format!(
                    "{} does not continue the shipped chain (its first record's prev is not the last shipped hash)",
                    info.file.name
                )));
            }
            self.upload(content, &info.file.name, &info.file.sha256)
                .await?;
            first_prev.get_or_insert(info.first_prev.clone());
            last = Some((info.file.last_seq, info.last_hash.clone()));
            shipped.push(info.file);
        }
        let (Some(first_prev), Some((last_seq, last_hash))) = (first_prev, last) else {
            // Only empty files: nothing to certify.
            st.next_file = last_n + 1;
            st.save(&self.state_dir)?;
            return Ok(None);
        };
        let number = st.checkpoint + 1;
        let body = Checkpoint {
            node: self.node.clone(),
            number,
            ts: record::now_ts(),
            files: shipped.clone(),
            first_prev,
            last_hash: last_hash.clone(),
            previous_signature: st.signature.clone(),
        };
        let signed = Signed::sign(body, &self.key);
        let mut json = serde_json::to_vec_pretty(&signed).unwrap_or_default();
        json.push(b'\n');
        let name = format!("checkpoints/{}", Layout::checkpoint_name(number));
        self.put_bytes(&name, Bytes::from(json)).await?;
        st = ShipState {
            next_file: last_n + 1,
            checkpoint: number,
            signature: Some(signed.signature.clone()),
            last_hash: Some(last_hash),
            last_seq,
        };
        st.save(&self.state_dir)?;
        let names: Vec<&str> = shipped.iter().map(|f| f.name.as_str()).collect();
        tracing::info!(checkpoint = number, files = ?names, "audit files shipped");
        self.audit
            .record(
                AuditEvent::new(AuditAction::Config, Outcome::Ok).detail(format!(
                    "audit shipped to {}:{}: {} (through seq {last_seq}), checkpoint {number}",
                    self.backend_name,
                    self.layout.key(&self.node, "").as_str(),
                    names.join(", ")
                )),
            )
            .await?;
        Ok(Some(number))
    }

    /// The local state, caught up with the backend: a checkpoint written there after the last
    /// saved state (a crash between the two, or a lost state directory) is taken over when it
    /// is this node's, signed with this key; otherwise shipping stops and says why.
    async fn recover(&self, mut st: ShipState) -> Result<ShipState, ShipError> {
        let Some((number, signed)) =
            verify::latest_checkpoint(self.backend.as_ref(), &self.layout, &self.node).await?
        else {
            return Ok(st);
        };
        if number <= st.checkpoint {
            return Ok(st);
        }
        if !signed.verify(&self.key.verifying_key()) || signed.body.node != self.node {
            return Err(ShipError::Chain(format!(
                "checkpoint {number} on the backend is newer than this node's state and not signed by this node's key: not shipping over it"
            )));
        }
        let last = signed.body.files.last();
        st.checkpoint = number;
        st.signature = Some(signed.signature.clone());
        st.last_hash = Some(signed.body.last_hash.clone());
        st.last_seq = last.map_or(st.last_seq, |f| f.last_seq);
        if let Some(n) = last.and_then(|f| record::parse_file_name(&f.name)) {
            st.next_file = st.next_file.max(n + 1);
        }
        tracing::warn!(
            checkpoint = number,
            "audit shipping state taken over from the backend (it was behind)"
        );
        st.save(&self.state_dir)?;
        Ok(st)
    }

    /// Creates the node's directories where the backend has real ones (local disk).
    async fn ensure_dirs(&self) {
        let root = self.layout.root();
        let mut at = String::new();
        for part in root.as_str().split('/').filter(|p| !p.is_empty()) {
            at = if at.is_empty() {
                part.to_string()
            } else {
                format!("{at}/{part}")
            };
            let _ = self.backend.mkdir(&Key::new("", &at)).await;
        }
        let _ = self.backend.mkdir(&self.layout.key(&self.node, "")).await;
        let _ = self
            .backend
            .mkdir(&self.layout.key(&self.node, "checkpoints"))
            .await;
    }

    /// Writes `content` (as scanned) to the node's `name`, write-once, in 256 KiB chunks.
    async fn upload(&self, content: Bytes, name: &str, sha256_hex: &str) -> Result<(), ShipError> {
        let key = self.layout.key(&self.node, name);
        let mut w = self.backend.stage(&key, StageMode::Create).await?;
        let mut at = 0;
        while at < content.len() {
            let end = (at + 256 * 1024).min(content.len());
            if let Err(e) = w.write(content.slice(at..end)).await {
                w.abort().await;
                return Err(e.into());
            }
            at = end;
        }
        let mut sha = [0u8; 32];
        hex::decode_to_slice(sha256_hex, &mut sha)
            .map_err(|e| ShipError::Local(format!("sha256 of {name}: {e}")))?;
        self.commit_once(w, sha, &key).await
    }

    async fn put_bytes(&self, name: &str, data: Bytes) -> Result<(), ShipError> {
        let key = self.layout.key(&self.node, name);
        let sha: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&data).into();
        let mut w = self.backend.stage(&key, StageMode::Create).await?;
        if let Err(e) = w.write(data).await {
            w.abort().await;
            return Err(e.into());
        }
        self.commit_once(w, sha, &key).await
    }

    /// Commits without replacing; an object already there with the same content (a shipment
    /// repeated after a crash) is fine.
    async fn commit_once(
        &self,
        w: Box<dyn crate::vfs::backend::StagedWrite>,
        sha: [u8; 32],
        key: &Key,
    ) -> Result<(), ShipError> {
        match w.commit(sha, CommitMode::NoReplace).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind == StorageErrorKind::AlreadyExists => {
                let there = read_sha256(self.backend.as_ref(), key).await?;
                if there == sha {
                    Ok(())
                } else {
                    Err(ShipError::Conflict(key.to_string()))
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The sha256 of an object, read back in full.
pub async fn read_sha256(backend: &dyn Backend, key: &Key) -> Result<[u8; 32], StorageError> {
    use futures::StreamExt;
    use sha2::Digest;
    let mut s = backend.read(key, None).await?;
    let mut h = sha2::Sha256::new();
    while let Some(chunk) = s.next().await {
        h.update(&chunk?);
    }
    Ok(h.finalize().into())
}
