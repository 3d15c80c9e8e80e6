//! A logged-in session: who, over which front door, from where. Every file operation and audit
//! record carries one.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::identity::{Principal, Protocol};
use crate::limits::SessionSlot;

/// One authenticated connection (SFTP/FTP) or request (HTTP).
#[derive(Debug, Clone)]
pub struct Session {
    /// Short id (time-ordered, then random: [`new_id`]), the same in every record of the session.
    pub id: String,
    /// Front door.
    pub protocol: Protocol,
    /// Client address.
    pub remote: SocketAddr,
    /// The user.
    pub principal: Principal,
    /// The user's session slot (`max_sessions_per_user`), held by SFTP and FTP sessions until
    /// the last clone is dropped; HTTP requests hold none.
    pub slot: Option<Arc<SessionSlot>>,
    /// The session's entry in the live sessions (SFTP and FTP sessions; HTTP requests have none).
    pub live: Option<Arc<crate::live::LiveEntry>>,
}

impl Session {
    /// A session with a fresh id.
    pub fn new(protocol: Protocol, remote: SocketAddr, principal: Principal) -> Self {
        Self {
            id: new_id(),
            protocol,
            remote,
            principal,
            slot: None,
            live: None,
        }
    }

    /// Starts a transfer in the session's live entry (none for HTTP requests).
    pub fn transfer(
        &self,
        path: &str,
        direction: crate::live::Direction,
        size: Option<u64>,
    ) -> Option<crate::live::Transfer> {
        self.live
            .as_ref()
            .map(|l| l.transfer(path, direction, size))
    }
}

/// A fresh session id: 20 hex digits, the milliseconds since the Unix epoch (10 digits, good
/// until 2318) then 40 random bits. Time first, so ids sort in the order their sessions began:
/// the audit index's `session` index takes each new id at its right edge, where a random id
/// landed on a random page and every index transaction rewrote most of that index (the proxy
/// makes one session per request). The random part comes from the thread's CSPRNG (seeded once
/// per thread from the OS), not a `getrandom` system call per id.
pub fn new_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    format!(
        "{:010x}{:010x}",
        ms & 0xff_ffff_ffff,
        rand::random::<u64>() >> 24
    )
}

/// A fresh random v4 UUID from the thread's CSPRNG (request ids; no system call per id).
pub fn new_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::new_id;

    #[test]
    fn ids_are_hex_and_sort_in_the_order_they_were_made() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        for id in [&a, &b] {
            assert_eq!(id.len(), 20, "{id}");
            assert!(id.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
        }
        assert!(a < b, "{a} then {b}");
        let many: std::collections::HashSet<String> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(
            many.len(),
            10_000,
            "ids made in the same millisecond stay distinct"
        );
    }
}
