//! One audit record as it is stored: the CONTRACT.md field order, its canonical JSON, and the hash
//! chain step. `hash = sha256(prev_hex + canonical JSON without "hash")`, where the canonical JSON
//! is serde_json's compact output of [`Record`] with `hash` left out, fields in contract order.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A stored record (every field of a line, in file order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// RFC 3339 UTC with microseconds.
    pub ts: String,
    /// Node that wrote it.
    pub node: String,
    /// sftp | ftp | http, or null for process events.
    pub protocol: Option<String>,
    /// Session id.
    pub session: Option<String>,
    /// User (the name tried, for refused logins).
    pub user: Option<String>,
    /// Client address.
    pub remote: Option<String>,
    /// What happened.
    pub action: String,
    /// Full virtual path, or the request path for proxy records.
    pub path: Option<String>,
    /// Rename target.
    pub to: Option<String>,
    /// Bytes transferred.
    pub bytes: Option<u64>,
    /// Hex sha256 of the content transferred.
    pub sha256: Option<String>,
    /// HTTP status, for HTTP records.
    pub status: Option<u16>,
    /// ok | denied | error.
    pub outcome: String,
    /// Free text (never secrets).
    pub detail: Option<String>,
    /// Hash of the previous record.
    pub prev: String,
    /// This record's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl Record {
    /// The canonical JSON the hash covers (the record without `hash`).
    pub fn canonical(&self) -> String {
        let mut r = self.clone();
        r.hash = None;
        // Serialising a struct of strings and numbers cannot fail.
        serde_json::to_string(&r).unwrap_or_default()
    }

    /// `sha256(prev + canonical)` as hex.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.prev.as_bytes());
        h.update(self.canonical().as_bytes());
        hex::encode(h.finalize())
    }

    /// Fills in `hash` and returns the line to store (without the newline).
    pub fn seal(&mut self) -> String {
        let canonical = self.canonical();
        let mut h = Sha256::new();
        h.update(self.prev.as_bytes());
        h.update(canonical.as_bytes());
        let hash = hex::encode(h.finalize());
        // canonical ends with '}': splice the hash in as the last field.
        let mut line = canonical;
        line.pop();
        line.push_str(",\"hash\":\"");
        line.push_str(&hash);
        line.push_str("\"}");
        self.hash = Some(hash);
        line
    }

    /// The exact line this record must be stored as.
    pub fn expected_line(&self) -> String {
        let mut r = self.clone();
        r.seal()
    }
}

/// Name of the `n`th audit file.
pub fn file_name(n: u64) -> String {
    format!("audit-{n:06}.jsonl")
}

/// The number in an audit file name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("audit-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

/// Audit files in `dir`, in chain order.
pub fn list_files(dir: &std::path::Path) -> std::io::Result<Vec<(u64, std::path::PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_file_name) {
            files.push((n, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Current time as the record timestamp.
pub fn now_ts() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record {
            seq: 1,
            ts: "2026-11-22T10:00:00.123456Z".into(),
            node: "gw-1".into(),
            protocol: Some("sftp".into()),
            session: Some("7f3a".into()),
            user: Some("acme".into()),
            remote: Some("127.0.0.1:53422".into()),
            action: "upload".into(),
            path: Some("/partners/acme/inbox/m.csv".into()),
            to: None,
            bytes: Some(1234),
            sha256: Some("ab".into()),
            status: None,
            outcome: "ok".into(),
            detail: None,
            prev: GENESIS.into(),
            hash: None,
        }
    }

    #[test]
    fn line_has_contract_field_order_and_verifies() {
        let mut r = rec();
        let line = r.seal();
        assert!(line.starts_with(
            r#"{"seq":1,"ts":"2026-11-22T10:00:00.123456Z","node":"gw-1","protocol":"sftp""#
        ));
        assert!(line.contains(r#""to":null,"bytes":1234,"sha256":"ab","status":null,"outcome":"ok","detail":null,"prev":"000"#));
        let parsed: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed.hash.as_deref(), Some(parsed.compute_hash().as_str()));
        assert_eq!(parsed.expected_line(), line);
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(file_name(7), "audit-000007.jsonl");
        assert_eq!(parse_file_name("audit-000007.jsonl"), Some(7));
        assert_eq!(parse_file_name("audit-000007.jsonl.torn-5"), None);
        assert!(now_ts().ends_with('Z'));
    }
}
