//! What a shipment writes beside the audit files: a checkpoint naming the files, their sha256
//! and the chain hashes they start from and end at, linked to the previous checkpoint by its
//! signature and signed with the node's Ed25519 key. And the key itself: PKCS#8 PEM on disk
//! (readable by `openssl pkey`), created with mode 0600 on first start.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The PKCS#8 (RFC 8410) prefix of an Ed25519 private key; the 32-byte seed follows.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// One shipped audit file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedFile {
    /// File name (`audit-000042.jsonl`), also its object name under the node's prefix.
    pub name: String,
    /// sha256 of the whole file (hex).
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// First and last record in it.
    pub first_seq: u64,
    /// Last record's seq.
    pub last_seq: u64,
}

/// The signed part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The node whose chain this is.
    pub node: String,
    /// 1, 2, 3... per node, without gaps.
    pub number: u64,
    /// When it was written (RFC 3339 UTC).
    pub ts: String,
    /// The files of this shipment, in chain order.
    pub files: Vec<ShippedFile>,
    /// `prev` of the first record of the first file (the hash the shipment continues from).
    pub first_prev: String,
    /// Hash of the last record of the last file.
    pub last_hash: String,
    /// The previous checkpoint's signature (none for number 1).
    pub previous_signature: Option<String>,
}

/// A checkpoint as stored: the body and its signature (base64) over the body's JSON bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Signed {
    /// What is signed.
    pub body: Checkpoint,
    /// Ed25519 signature of `serde_json::to_vec(&body)`, base64.
    pub signature: String,
}

impl Signed {
    /// Signs `body`.
    pub fn sign(body: Checkpoint, key: &SigningKey) -> Self {
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let signature = B64.encode(key.sign(&bytes).to_bytes());
        Self { body, signature }
    }

    /// Whether the signature is `key`'s over this body.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Ok(raw) = B64.decode(&self.signature) else {
            return false;
        };
        let Ok(raw) = <[u8; 64]>::try_from(raw.as_slice()) else {
            return false;
        };
        let bytes = serde_json::to_vec(&self.body).unwrap_or_default();
        key.verify_strict(&bytes, &Signature::from_bytes(&raw))
            .is_ok()
    }
}

/// Why a signing key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or creating the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not an Ed25519 PKCS#8 PEM key.
    #[error("{0}: not an Ed25519 private key (PKCS#8 PEM)")]
    Format(String),
    /// A public key given as text did not parse.
    #[error("not an Ed25519 public key (ed25519:BASE64): {0}")]
    Public(String),
}

/// Reads the key at `path`.
pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let bad = || KeyError::Format(path.display().to_string());
    let b64: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = B64.decode(b64).map_err(|_| bad())?;
    if der.len() != 48 || der[..16] != PKCS8_PREFIX {
        return Err(bad());
    }
    let seed = <[u8; 32]>::try_from(&der[16..]).map_err(|_| bad())?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads the key at `path`, creating it (mode 0600) if there is none.
pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyError> {
    if path.exists() {
        return load(path);
    }
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let mut der = PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        B64.encode(&der)
    );
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(pem.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// How a public key is printed and given: `ed25519:BASE64`.
pub fn public_text(key: &VerifyingKey) -> String {
    format!("ed25519:{}", B64.encode(key.to_bytes()))
}

/// Parses [`public_text`]'s form.
pub fn parse_public(text: &str) -> Result<VerifyingKey, KeyError> {
    let bad = || KeyError::Public(text.to_string());
    let b64 = text.trim().strip_prefix("ed25519:").ok_or_else(bad)?;
    let raw = B64.decode(b64).map_err(|_| bad())?;
    let raw = <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| bad())?;
    VerifyingKey::from_bytes(&raw).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: u64) -> Checkpoint {
        Checkpoint {
            node: "gw-1".into(),
            number: n,
            ts: "2026-12-01T00:00:00Z".into(),
            files: vec![],
            first_prev: "0".repeat(64),
            last_hash: "a".repeat(64),
            previous_signature: None,
        }
    }

    #[test]
    fn keys_round_trip_and_signatures_catch_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let k = load_or_create(&path).unwrap();
        assert_eq!(load(&path).unwrap().to_bytes(), k.to_bytes());
        let public = parse_public(&public_text(&k.verifying_key())).unwrap();
        let s = Signed::sign(body(1), &k);
        assert!(s.verify(&public));
        let mut edited = s.clone();
        edited.body.last_hash = "b".repeat(64);
        assert!(!edited.verify(&public));
        let other = SigningKey::from_bytes(&[7u8; 32]);
        assert!(!Signed::sign(body(1), &other).verify(&public));
        std::fs::write(&path, "not a key").unwrap();
        assert!(load(&path).is_err());
    }
}
