//! Connection limits shared by the front doors: a cap on concurrent connections per listener,
//! per source address (IPv6 by /64, as the ban list counts), and sessions per user. Each slot is
//! a guard that frees it when dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Counts a listener's open connections.
#[derive(Debug, Clone)]
pub struct ConnLimiter {
    max: usize,
    open: Arc<AtomicUsize>,
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnGuard {
    open: Arc<AtomicUsize>,
}

impl ConnLimiter {
    /// A limiter admitting at most `max` connections at once.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Admits a connection if there is room.
    pub fn try_acquire(&self) -> Option<ConnGuard> {
        let mut cur = self.open.load(Ordering::Relaxed);
        loop {
            if cur >= self.max {
                return None;
            }
            match self
                .open
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Some(ConnGuard {
                        open: self.open.clone(),
                    });
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts open slots per key (a source address, a user name), at most `max` each.
#[derive(Debug)]
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    max: usize,
    open: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Hash + Eq + Clone> Clone for KeyedLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            max: self.max,
            open: Arc::clone(&self.open),
        }
    }
}

/// One slot of a [`KeyedLimiter`]; dropping it frees the slot.
#[derive(Debug)]
pub struct KeyedGuard<K: Hash + Eq + Clone> {
    key: K,
    open: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// At most `max` slots per key (0: no limit).
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// Takes a slot for `key` if it has one free.
    pub fn try_acquire(&self, key: K) -> Option<KeyedGuard<K>> {
        let mut map = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.clone()).or_insert(0);
        if self.max != 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(KeyedGuard {
            key,
            open: Arc::clone(&self.open),
        })
    }

    /// Slots open over all keys.
    pub fn total(&self) -> usize {
        let map = self.open.lock().unwrap_or_else(|e| e.into_inner());
        map.values().sum()
    }

    /// Slots open for `key`.
    pub fn open(&self, key: &K) -> usize {
        let map = self.open.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).copied().unwrap_or(0)
    }
}

impl<K: Hash + Eq + Clone> Drop for KeyedGuard<K> {
    fn drop(&mut self) {
        let mut map = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// One of a user's `max_sessions_per_user` slots: this node's count, and in the multi-node
/// mode the cluster's lease too. Dropping it frees both.
#[derive(Debug)]
pub struct SessionSlot {
    _local: KeyedGuard<String>,
    _shared: Option<crate::cluster::Lease>,
}

impl SessionSlot {
    /// A slot from this node's count and, when given, the cluster's.
    pub fn new(local: KeyedGuard<String>, shared: Option<crate::cluster::Lease>) -> Self {
        Self {
            _local: local,
            _shared: shared,
        }
    }
}

/// Connections per source address key (see `identity::ban::addr_key`).
pub type AddrLimiter = KeyedLimiter<IpAddr>;
/// Sessions per user name.
pub type UserLimiter = KeyedLimiter<String>;

/// A listener's admission: the per-listener cap and the per-address cap together, and in the
/// multi-node mode the per-address cap over every node too.
#[derive(Debug, Clone)]
pub struct Admission {
    total: ConnLimiter,
    per_addr: AddrLimiter,
    shared: Option<SharedCount>,
}

/// The cluster's per-address count for one door.
#[derive(Debug, Clone)]
struct SharedCount {
    store: Arc<crate::cluster::SharedStore>,
    door: &'static str,
    max: usize,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdmitted {
    /// The listener is at `max_connections`.
    ListenerFull,
    /// The source address is at `max_connections_per_ip` (on this node or over the cluster).
    AddressFull,
}

impl NotAdmitted {
    /// The limit named in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ListenerFull => "max_connections reached",
            Self::AddressFull => "max_connections_per_ip reached",
        }
    }
}

/// An admitted connection's slots.
#[derive(Debug)]
pub struct Admitted {
    _total: ConnGuard,
    addr: Option<KeyedGuard<IpAddr>>,
    _lease: Option<crate::cluster::Lease>,
}

impl Admission {
    /// A listener's limits.
    pub fn new(max_connections: usize, max_per_ip: usize) -> Self {
        Self {
            total: ConnLimiter::new(max_connections),
            per_addr: AddrLimiter::new(max_per_ip),
            shared: None,
        }
    }

    /// Counts connections per address over the cluster too (when `store` is given and the
    /// per-address cap is on), under `door`'s own count.
    pub fn shared(
        mut self,
        store: Option<Arc<crate::cluster::SharedStore>>,
        door: &'static str,
    ) -> Self {
        let max = self.per_addr.max;
        self.shared = store
            .filter(|_| max > 0)
            .map(|store| SharedCount { store, door, max });
        self
    }

    /// Admits a connection from `ip` (counted by its address key) if both of this node's caps
    /// allow. In the multi-node mode, [`Admission::share`] then asks the cluster.
    pub fn admit(&self, ip: IpAddr) -> Result<Admitted, NotAdmitted> {
        let addr = self
            .per_addr
            .try_acquire(crate::identity::ban::addr_key(ip))
            .ok_or(NotAdmitted::AddressFull)?;
        let total = self.total.try_acquire().ok_or(NotAdmitted::ListenerFull)?;
        Ok(Admitted {
            _total: total,
            addr: Some(addr),
            _lease: None,
        })
    }

    /// Admits a connection from a trusted proxy: the listener's cap only (every client behind
    /// the proxy arrives from its one address, so the per-address cap would throttle them all).
    /// When the proxy names the client (PROXY protocol), [`Admission::admit_client`] counts it.
    pub fn admit_proxy(&self) -> Result<Admitted, NotAdmitted> {
        let total = self.total.try_acquire().ok_or(NotAdmitted::ListenerFull)?;
        Ok(Admitted {
            _total: total,
            addr: None,
            _lease: None,
        })
    }

    /// Counts a proxied connection against the client `ip` its PROXY header named (this
    /// node's per-address cap, then the cluster's).
    pub async fn admit_client(
        &self,
        admitted: &mut Admitted,
        ip: IpAddr,
    ) -> Result<(), NotAdmitted> {
        if admitted.addr.is_none() {
            let key = crate::identity::ban::addr_key(ip);
            admitted.addr = Some(
                self.per_addr
                    .try_acquire(key)
                    .ok_or(NotAdmitted::AddressFull)?,
            );
        }
        self.share(admitted, ip).await
    }

    /// In the multi-node mode, takes the connection's lease in the cluster's count of `ip`'s
    /// connections to this door (one Redis call; run it on the connection's own task). When
    /// the store cannot be asked, this node's count alone applies whatever `on_store_error`
    /// says: it still bounds the address, and `closed` would otherwise turn every connection
    /// away, the balancer's health checks and `/readyz` included.
    pub async fn share(&self, admitted: &mut Admitted, ip: IpAddr) -> Result<(), NotAdmitted> {
        let Some(s) = &self.shared else {
            return Ok(());
        };
        let key = crate::identity::ban::addr_key(ip);
        match s.store.addr_connection(s.door, key, s.max).await {
            Ok(Some(lease)) => {
                admitted._lease = Some(lease);
                Ok(())
            }
            Ok(None) => Err(NotAdmitted::AddressFull),
            Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_releases() {
        let l = ConnLimiter::new(2);
        let a = l.try_acquire().unwrap();
        let _b = l.try_acquire().unwrap();
        assert!(l.try_acquire().is_none());
        drop(a);
        assert!(l.try_acquire().is_some());
        assert_eq!(l.open(), 1);
    }

    #[test]
    fn per_key_caps_and_releases() {
        let l = UserLimiter::new(1);
        let a = l.try_acquire("acme".into()).unwrap();
        assert!(l.try_acquire("acme".into()).is_none());
        assert!(l.try_acquire("other".into()).is_some());
        drop(a);
        assert_eq!(l.open(&"acme".to_string()), 0);
        assert!(l.try_acquire("acme".into()).is_some());
    }

    #[test]
    fn admission_counts_ipv6_by_64() {
        let adm = Admission::new(10, 1);
        let _a = adm.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            adm.admit("2001:db8::2".parse().unwrap()).unwrap_err(),
            NotAdmitted::AddressFull
        );
        assert!(adm.admit("2001:db8:0:1::2".parse().unwrap()).is_ok());
    }
}
