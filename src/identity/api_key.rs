//! API keys: generated as 32 random bytes (base64url), stored in the config only as
//! `sha256:<hex>`, compared in constant time against every configured key.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new random key and its `key_hash` line.
pub fn generate() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = format!(
        "gh_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = format!("sha256:{}", hex::encode(digest(&key)));
    (key, hash)
}

/// sha256 of a presented key.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Parses a config `key_hash`.
pub fn parse_hash(s: &str) -> Result<[u8; 32], String> {
    let hex_part = s
        .strip_prefix("sha256:")
        .ok_or("must start with \"sha256:\" (make one with `gatehouse gen-api-key`)")?;
    let bytes = hex::decode(hex_part).map_err(|_| "not hex after \"sha256:\"".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "a sha256 hash is 64 hex digits".to_string())
}

/// Index of the matching hash, looking at every entry so timing does not depend on which matched.
pub fn find(hashes: &[[u8; 32]], presented: &str) -> Option<usize> {
    let d = digest(presented);
    let mut found = None;
    for (i, h) in hashes.iter().enumerate() {
        if bool::from(h.ct_eq(&d)) {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_and_find() {
        let (k1, h1) = generate();
        let (k2, h2) = generate();
        assert_ne!(k1, k2);
        let hashes = [parse_hash(&h1).unwrap(), parse_hash(&h2).unwrap()];
        assert_eq!(find(&hashes, &k2), Some(1));
        assert_eq!(find(&hashes, &k1), Some(0));
        assert_eq!(find(&hashes, "nope"), None);
    }

    #[test]
    fn parse_errors() {
        assert!(parse_hash("abc").is_err());
        assert!(parse_hash("sha256:zz").is_err());
        assert!(parse_hash("sha256:abcd").is_err());
    }
}
