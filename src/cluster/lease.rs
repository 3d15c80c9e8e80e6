//! Counts every node shares: a user's open SFTP and FTP sessions (`gh:conn:u:<user>`) and a
//! source address's connections to one door (`gh:conn:a:<door>:<address key>`), each as leases
//! in one sorted set (members `<node>:<id>` scored by when the lease runs out). Each node renews its leases every [`RENEW_EVERY`]; a node that dies stops renewing and
//! its sessions stop counting within [`LEASE`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{SharedStore, StoreError};

/// How long a lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a node renews its leases.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Takes a lease when fewer than ARGV[1] are live. ARGV: max, lease_ms, member.
pub(super) const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
";

/// Renews leases: KEYS[i] holds member ARGV[i + 1]; ARGV[1] is the lease in ms. A lease that
/// ran out (the store was unreachable for longer than [`LEASE`]) is taken again: the session
/// it counts is still open.
pub(super) const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i, k in ipairs(KEYS) do
  redis.call('ZADD', k, now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', k, lease)
end
return #KEYS
";

/// Drops a lease: ZREM.
pub(super) const RELEASE: &str = "return redis.call('ZREM', KEYS[1], ARGV[1])";

/// The leases this node holds (member → key), renewed by the store's renewal task.
#[derive(Debug, Default)]
pub(super) struct Held(Mutex<HashMap<String, String>>);

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One held lease; dropping it releases it.
#[derive(Debug)]
pub struct Lease {
    store: Arc<SharedStore>,
    key: String,
    member: String,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.store.held.lock().remove(&self.member);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (store, key, member) = (self.store.clone(), self.key.clone(), self.member.clone());
            rt.spawn(async move {
                let mut inv = store.scripts.release.key(&key);
                inv.arg(&member);
                // A lost release only counts until the lease runs out.
                store.invoke_release(inv).await;
            });
        }
    }
}

impl SharedStore {
    /// Takes one of `user`'s `max` session slots over the cluster: `Ok(Some(lease))`, or
    /// `Ok(None)` when all are taken.
    pub async fn user_session(
        self: &Arc<Self>,
        user: &str,
        max: usize,
    ) -> Result<Option<Lease>, StoreError> {
        self.lease(format!("gh:conn:u:{user}"), max).await
    }

    /// Takes one of the `max` connections `addr` (an address key) may hold on `door` over the
    /// cluster: `Ok(Some(lease))`, or `Ok(None)` when all are taken.
    pub async fn addr_connection(
        self: &Arc<Self>,
        door: &str,
        addr: std::net::IpAddr,
        max: usize,
    ) -> Result<Option<Lease>, StoreError> {
        self.lease(format!("gh:conn:a:{door}:{addr}"), max).await
    }

    async fn lease(self: &Arc<Self>, key: String, max: usize) -> Result<Option<Lease>, StoreError> {
        let member = format!("{}:{}", self.node, uuid::Uuid::new_v4().simple());
        let mut inv = self.scripts.acquire.key(&key);
        inv.arg(max).arg(lease_ms()).arg(&member);
        if self.invoke::<i64>(inv).await? != 1 {
            return Ok(None);
        }
        self.held.lock().insert(member.clone(), key.clone());
        Ok(Some(Lease {
            store: self.clone(),
            key,
            member,
        }))
    }

    /// Renews every lease this node holds (in batches of 500).
    pub(super) async fn renew_leases(&self) {
        let held: Vec<(String, String)> = self
            .held
            .lock()
            .iter()
            .map(|(m, k)| (m.clone(), k.clone()))
            .collect();
        for batch in held.chunks(500) {
            let mut inv = self.scripts.renew.prepare_invoke();
            inv.arg(lease_ms());
            for (member, key) in batch {
                inv.key(key);
                inv.arg(member);
            }
            if let Err(e) = self.invoke::<i64>(inv).await {
                tracing::debug!(error = %e, "session leases not renewed");
                return;
            }
            // A lease released while its renewal was under way was just added back: release
            // it again.
            let gone: Vec<&(String, String)> = {
                let held = self.held.lock();
                batch
                    .iter()
                    .filter(|(m, _)| !held.contains_key(m))
                    .collect()
            };
            for (member, key) in gone {
                let mut inv = self.scripts.release.key(key);
                inv.arg(member);
                self.invoke_release(inv).await;
            }
        }
    }
}

fn lease_ms() -> u64 {
    u64::try_from(LEASE.as_millis()).unwrap_or(30_000)
}
