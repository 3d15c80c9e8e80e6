//! One delivery's bytes: a CloudEvents 1.0 JSON body (structured mode) built from an audit
//! record, and its Standard Webhooks signature (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use serde_json::json;

use super::Trigger;
use crate::audit::Record;

/// The id of the event for a record: the same on every attempt and after restarts (receivers
/// deduplicate on it), and different for another log (the record's own hash is in it).
pub fn event_id(r: &Record) -> String {
    let hash = r.hash.as_deref().unwrap_or("");
    format!("{}-{}-{}", r.node, r.seq, &hash[..hash.len().min(16)])
}

/// The CloudEvents body.
pub fn body(r: &Record, trigger: Trigger) -> Vec<u8> {
    let ev = json!({
        "specversion": "1.0",
        "id": event_id(r),
        "source": format!("/gatehouse/{}", r.node),
        "type": format!("dev.gatehouse.{}", trigger.as_str()),
        "subject": r.path,
        "time": r.ts,
        "datacontenttype": "application/json",
        "data": {
            "user": r.user,
            "protocol": r.protocol,
            "session": r.session,
            "remote": r.remote,
            "path": r.path,
            "to": r.to,
            "size": r.bytes,
            "sha256": r.sha256,
            "outcome": r.outcome,
            "detail": r.detail,
            "audit_seq": r.seq,
            "audit_hash": r.hash,
        },
    });
    // A json! value always serialises.
    serde_json::to_vec(&ev).unwrap_or_default()
}

/// The `webhook-signature` value for one attempt.
pub fn signature(secret: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Decodes a Standard Webhooks secret (`whsec_` + base64).
pub fn decode_secret(s: &str) -> Result<Vec<u8>, String> {
    let b64 = s.strip_prefix("whsec_").unwrap_or(s);
    let key = STANDARD
        .decode(b64)
        .map_err(|_| "must be \"whsec_\" followed by base64 (as Standard Webhooks secrets are)")?;
    if key.len() < 16 {
        return Err("must decode to at least 16 bytes".into());
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_standard_webhooks_example() {
        // From the Standard Webhooks specification's test vectors.
        let secret = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(decode_secret("whsec_!!").is_err());
        assert!(decode_secret("whsec_c2hvcnQ=").is_err());
    }
}
