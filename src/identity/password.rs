//! argon2id password hashes: creating them (`hash-password`), checking them off the async
//! runtime, and validating PHC strings from the config.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Hashes a password with argon2id and the crate's default parameters (m=19456, t=2, p=1).
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks that a config string is an argon2id PHC hash.
pub fn validate(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC password hash ({e})"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "password hashes must be argon2id (this one is {}); make one with `gatehouse hash-password`",
            parsed.algorithm
        ));
    }
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err("PHC string has no salt or hash".into());
    }
    Ok(())
}

/// Verifies `password` against `phc`. CPU-heavy (tens of ms): call from `spawn_blocking`.
pub fn verify(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = hash("demo").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        validate(&h).unwrap();
        assert!(verify(&h, b"demo"));
        assert!(!verify(&h, b"Demo"));
        assert!(!verify("garbage", b"demo"));
    }

    #[test]
    fn refuses_other_formats() {
        assert!(validate("plain").is_err());
        assert!(validate("$2b$12$abcdefghijklmnopqrstuv").is_err());
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$2S9YmqoxDXrQ9mOYrq0NmQ";
        assert!(validate(argon2i).unwrap_err().contains("argon2id"));
    }
}
