//! OpenSSH public keys from `users[].public_keys`: `<algorithm> <base64 blob> [comment]`.
//! Only the wire blob matters for matching; it is compared in constant time.

use base64::Engine;
use subtle::ConstantTimeEq;

/// A parsed authorized key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// The SSH wire encoding of the key (what a client presents).
    pub blob: Vec<u8>,
}

const KNOWN: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Parses one `authorized_keys`-style line (options before the key are not supported).
pub fn parse(line: &str) -> Result<PublicKey, String> {
    let mut parts = line.split_whitespace();
    let algorithm = parts.next().ok_or("empty public key")?;
    if !KNOWN.contains(&algorithm) {
        return Err(format!("unsupported key type {algorithm:?}"));
    }
    let b64 = parts.next().ok_or("missing base64 key data")?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "key data is not base64".to_string())?;
    // The blob starts with the algorithm name as an SSH string.
    let len = blob
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("key data too short")?;
    if blob.get(4..4 + len) != Some(algorithm.as_bytes()) {
        return Err("key data does not match its type".into());
    }
    Ok(PublicKey {
        algorithm: algorithm.to_string(),
        blob,
    })
}

/// True if `blob` equals one of `keys` (every key is compared).
pub fn matches(keys: &[PublicKey], blob: &[u8]) -> bool {
    let mut hit = false;
    for k in keys {
        if k.blob.len() == blob.len() && bool::from(k.blob.as_slice().ct_eq(blob)) {
            hit = true;
        }
    }
    hit
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@host";

    #[test]
    fn parses_and_matches() {
        let k = parse(ED).unwrap();
        assert_eq!(k.algorithm, "ssh-ed25519");
        assert!(matches(std::slice::from_ref(&k), &k.blob));
        assert!(!matches(std::slice::from_ref(&k), &k.blob[..10]));
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse("").is_err());
        assert!(parse("ssh-dss AAAA").is_err());
        assert!(parse("ssh-ed25519 !!!").is_err());
        assert!(
            parse("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
                .is_err()
        );
    }
}
