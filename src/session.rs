//! A logged-in session: who, over which front door, from where. Every file operation and audit
//! record carries one.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::identity::{Principal, Protocol};
use crate::limits::SessionSlot;

/// One authenticated connection (SFTP/FTP) or request (HTTP).
#[derive(Debug, Clone)]
pub struct Session {
    /// Short random id, the same in every record of the session.
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

/// A fresh session id: 16 hex digits (64 random bits: unique enough, short in logs). From the
/// thread's CSPRNG (seeded once per thread from the OS), not a `getrandom` system call per id:
/// the proxy makes one per request.
pub fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A fresh random v4 UUID from the thread's CSPRNG (request ids; no system call per id).
pub fn new_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}
