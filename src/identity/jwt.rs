//! Bearer JWTs for `auth = ["jwt"]` routes: HS256 with a shared secret, RS256/ES256 with a PEM
//! public key or a JWKS file (key picked by `kid`). Only the configured algorithms are accepted
//! (`alg: none` never is), the signature, `exp` (required), `nbf`, and, when configured, `iss`
//! and `aud` (then required) are checked; the `user_claim` names the user.

use std::collections::HashSet;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::JwtConfig;

/// Verifies tokens against one `[jwt]` section.
pub struct JwtVerifier {
    algorithms: Vec<Algorithm>,
    secret: Option<DecodingKey>,
    pem: Option<DecodingKey>,
    jwks: Option<JwkSet>,
    issuer: Option<String>,
    audience: Option<String>,
    user_claim: String,
    leeway: u64,
    /// Tokens that verified recently (salted sha256 of the token → user and `exp`), so a client
    /// sending the same token with every request costs one signature check per minute, not one
    /// per request (an RS256 check is tens of microseconds). Successes only; `exp` is checked
    /// again on every hit.
    verified: moka::sync::Cache<[u8; 32], (String, u64)>,
    salt: [u8; 32],
}

/// How long a verified token is remembered (never past its `exp`).
const VERIFIED_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "HS256" => Some(Algorithm::HS256),
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        _ => None,
    }
}

impl JwtVerifier {
    /// Builds the verifier, reading key files. Errors name the key (`public_key`, `jwks`, ...).
    pub fn new(cfg: &JwtConfig) -> Result<Self, (&'static str, String)> {
        let algorithms: Vec<Algorithm> =
            cfg.algorithms.iter().filter_map(|a| algorithm(a)).collect();
        let secret = cfg
            .secret
            .as_ref()
            .map(|s| DecodingKey::from_secret(s.as_bytes()));
        let pem = match &cfg.public_key {
            None => None,
            Some(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| ("public_key", format!("cannot read {}: {e}", path.display())))?;
                let key = if algorithms.contains(&Algorithm::ES256)
                    && !algorithms.contains(&Algorithm::RS256)
                {
                    DecodingKey::from_ec_pem(&bytes)
                } else {
                    DecodingKey::from_rsa_pem(&bytes).or_else(|_| DecodingKey::from_ec_pem(&bytes))
                };
                Some(key.map_err(|e| {
                    (
                        "public_key",
                        format!("not an RSA or EC public key in PEM ({e})"),
                    )
                })?)
            }
        };
        let jwks = match &cfg.jwks {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ("jwks", format!("cannot read {}: {e}", path.display())))?;
                Some(
                    serde_json::from_str::<JwkSet>(&text)
                        .map_err(|e| ("jwks", format!("not a JWKS document ({e})")))?,
                )
            }
        };
        Ok(Self {
            algorithms,
            secret,
            pem,
            jwks,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            user_claim: cfg.user_claim.clone(),
            leeway: cfg.leeway_secs,
            verified: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(VERIFIED_TTL)
                .build(),
            salt: rand::random(),
        })
    }

    /// The user a valid token names (see [`Self::verify_uncached`]), from the cache of tokens
    /// that verified within the last minute when it is there and not yet expired.
    pub fn verify(&self, token: &str) -> Result<String, &'static str> {
        use sha2::{Digest, Sha256};
        let key: [u8; 32] = Sha256::new()
            .chain_update(self.salt)
            .chain_update(token.as_bytes())
            .finalize()
            .into();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some((user, exp)) = self.verified.get(&key) {
            if now <= exp.saturating_add(self.leeway) {
                return Ok(user);
            }
            self.verified.invalidate(&key);
            return Err("expired");
        }
        let (user, exp) = self.verify_uncached(token)?;
        self.verified.insert(key, (user.clone(), exp));
        Ok(user)
    }

    /// The user a valid token names and its `exp`, or why the token was refused (for the
    /// audit log).
    fn verify_uncached(&self, token: &str) -> Result<(String, u64), &'static str> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| "malformed token or unknown algorithm")?;
        if !self.algorithms.contains(&header.alg) {
            return Err("algorithm not allowed");
        }
        let owned;
        let key = match header.alg {
            Algorithm::HS256 => self.secret.as_ref().ok_or("no HS256 secret configured")?,
            _ => match (&self.jwks, &header.kid) {
                (Some(set), Some(kid)) => {
                    let jwk = set.find(kid).ok_or("unknown key id")?;
                    owned = DecodingKey::from_jwk(jwk).map_err(|_| "unusable key in JWKS")?;
                    &owned
                }
                _ => self
                    .pem
                    .as_ref()
                    .ok_or("no public key for this algorithm")?,
            },
        };
        let mut v = Validation::new(header.alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        let mut required: HashSet<String> = HashSet::from(["exp".to_string()]);
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.insert("iss".into());
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.insert("aud".into());
            }
            None => v.validate_aud = false,
        }
        v.required_spec_claims = required;
        let data =
            jsonwebtoken::decode::<serde_json::Value>(token, key, &v).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => "expired",
                    ErrorKind::ImmatureSignature => "not yet valid",
                    ErrorKind::InvalidSignature => "bad signature",
                    ErrorKind::InvalidAudience => "wrong audience",
                    ErrorKind::InvalidIssuer => "wrong issuer",
                    ErrorKind::InvalidAlgorithm => "algorithm not allowed",
                    ErrorKind::MissingRequiredClaim(_) => "missing a required claim",
                    _ => "invalid token",
                }
            })?;
        let exp = data
            .claims
            .get("exp")
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
            .ok_or("missing a required claim")?;
        let user = data
            .claims
            .get(&self.user_claim)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or("token does not name a user")?;
        Ok((user, exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn cfg() -> JwtConfig {
        JwtConfig {
            algorithms: vec!["HS256".into()],
            secret: Some(SECRET.into()),
            public_key: None,
            jwks: None,
            issuer: Some("https://id.example".into()),
            audience: Some("gatehouse".into()),
            user_claim: "sub".into(),
            leeway_secs: 0,
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn accepts_good_and_refuses_bad_tokens() {
        let v = JwtVerifier::new(&cfg()).unwrap();
        let good = serde_json::json!({"sub": "acme", "exp": now() + 60, "iss": "https://id.example", "aud": "gatehouse"});
        assert_eq!(v.verify(&token(good.clone(), SECRET)), Ok("acme".into()));
        let mut expired = good.clone();
        expired["exp"] = (now() - 120).into();
        assert_eq!(v.verify(&token(expired, SECRET)), Err("expired"));
        let mut aud = good.clone();
        aud["aud"] = "other".into();
        assert_eq!(v.verify(&token(aud, SECRET)), Err("wrong audience"));
        let mut iss = good.clone();
        iss["iss"] = "https://evil".into();
        assert_eq!(v.verify(&token(iss, SECRET)), Err("wrong issuer"));
        assert_eq!(
            v.verify(&token(good.clone(), "another-secret-another-secret-xx")),
            Err("bad signature")
        );
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            v.verify(&token(no_exp, SECRET)),
            Err("missing a required claim")
        );
        // alg: none, hand-made.
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&good.to_string())
        );
        assert!(v.verify(&none).is_err());
        assert!(v.verify("garbage").is_err());
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let v = JwtVerifier::new(&cfg()).unwrap();
        let t = token(
            serde_json::json!({"sub": "acme", "exp": now() + 1, "iss": "https://id.example", "aud": "gatehouse"}),
            SECRET,
        );
        assert_eq!(v.verify(&t), Ok("acme".into()));
        assert_eq!(v.verify(&t), Ok("acme".into())); // from the cache
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(v.verify(&t), Err("expired"));
        // A refused token is never remembered: a good one with the same claims still works.
        let other = token(
            serde_json::json!({"sub": "acme", "exp": now() + 60, "iss": "https://id.example", "aud": "gatehouse"}),
            "another-secret-another-secret-xx",
        );
        assert_eq!(v.verify(&other), Err("bad signature"));
        assert_eq!(v.verify(&other), Err("bad signature"));
    }
}
