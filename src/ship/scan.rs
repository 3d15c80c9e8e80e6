//! Reading audit file content for shipping and for checking what was shipped: the sha256 of
//! the bytes, and the chain inside (every record's hash recomputed, `prev` links, seq order,
//! canonical form: the checks of `audit verify`).

use std::path::PathBuf;

use sha2::Digest;

use super::ShipError;
use super::checkpoint::ShippedFile;
use crate::audit::record::Record;

/// A file's shipping facts.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// Name, sha256, size, seq range.
    pub file: ShippedFile,
    /// The first record's `prev`.
    pub first_prev: String,
    /// The last record's hash.
    pub last_hash: String,
}

/// Where a chain stands while it is checked across files.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// The hash the next record must name as `prev` (None: anything, at the start).
    pub prev: Option<String>,
    /// The seq the next record must have (None: anything).
    pub seq: Option<u64>,
    /// Records checked.
    pub records: u64,
}

impl Chain {
    /// Checks `bytes` (one whole file) as the chain's continuation; returns the file's facts
    /// (None for an empty file) or what is wrong, naming the seq.
    pub fn check(&mut self, name: &str, bytes: &[u8]) -> Result<Option<FileInfo>, String> {
        let mut first: Option<(u64, String)> = None;
        let mut last: Option<(u64, String)> = None;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            let Some(text) = line.strip_suffix(b"\n") else {
                return Err("the last line has no newline (cut or torn)".into());
            };
            let rec: Record = serde_json::from_slice(text).map_err(|e| {
                format!(
                    "not a valid audit record after seq {:?} ({e})",
                    last.as_ref().map(|l| l.0)
                )
            })?;
            if let Some(want) = self.seq
                && rec.seq != want
            {
                return Err(format!(
                    "found seq {} where seq {want} belongs (records removed, added or reordered)",
                    rec.seq
                ));
            }
            if let Some(want) = &self.prev
                && &rec.prev != want
            {
                return Err(format!(
                    "seq {}: prev does not match the previous record's hash",
                    rec.seq
                ));
            }
            let hash = rec.compute_hash();
            if rec.hash.as_deref() != Some(hash.as_str()) || rec.expected_line().as_bytes() != text
            {
                return Err(format!("seq {}: record modified", rec.seq));
            }
            first.get_or_insert((rec.seq, rec.prev.clone()));
            self.prev = Some(hash.clone());
            self.seq = Some(rec.seq + 1);
            self.records += 1;
            last = Some((rec.seq, hash));
        }
        let (Some((first_seq, first_prev)), Some((last_seq, last_hash))) = (first, last) else {
            return Ok(None);
        };
        Ok(Some(FileInfo {
            file: ShippedFile {
                name: name.to_string(),
                sha256: hex::encode(sha2::Sha256::digest(bytes)),
                bytes: bytes.len() as u64,
                first_seq,
                last_seq,
            },
            first_prev,
            last_hash,
        }))
    }
}

/// Reads a complete local audit file and checks its own chain (on the blocking pool); returns
/// its facts with the bytes read, which are what gets uploaded (so the object is exactly what
/// was hashed). Files are bounded by `audit.rotate_bytes`.
pub async fn scan(path: PathBuf) -> Result<Option<(FileInfo, bytes::Bytes)>, ShipError> {
    tokio::task::spawn_blocking(move || {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let bytes = std::fs::read(&path)
            .map_err(|e| ShipError::Local(format!("{}: {e}", path.display())))?;
        let info = Chain::default()
            .check(&name, &bytes)
            .map_err(|why| ShipError::Chain(format!("{name}: {why}")))?;
        Ok(info.map(|i| (i, bytes::Bytes::from(bytes))))
    })
    .await
    .map_err(|e| ShipError::Local(format!("scan task: {e}")))?
}
