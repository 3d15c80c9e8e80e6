//! The node-local counters behind the ban list: one table per kind of key (source addresses,
//! accounts), each key's failures within the window, attempts in flight and ban, bounded by
//! pruning stale entries once the table grows past [`PRUNE_ABOVE`].

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Above this many tracked keys, stale entries are pruned on the next reservation.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Default)]
struct Counter {
    failures: VecDeque<Instant>,
    /// Attempts reserved and not yet resolved.
    pending: u32,
    banned_until: Option<Instant>,
}

impl Counter {
    fn prune(&mut self, now: Instant, window: Duration) {
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            self.failures.pop_front();
        }
        if self.banned_until.is_some_and(|u| u <= now) {
            self.banned_until = None;
        }
    }

    fn banned(&self, now: Instant) -> Option<Duration> {
        self.banned_until
            .and_then(|u| u.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    fn stale(&self, now: Instant, window: Duration) -> bool {
        self.pending == 0
            && self.banned_until.is_none_or(|u| u <= now)
            && self
                .failures
                .back()
                .is_none_or(|t| now.duration_since(*t) >= window)
    }
}

/// One table of counters (addresses or accounts).
#[derive(Debug)]
pub(super) struct Table<K> {
    pub(super) max: u32,
    map: Mutex<HashMap<K, Counter>>,
}

/// Why a table refused to reserve an attempt.
pub(super) enum Full {
    Banned,
    InFlight,
}

impl<K: Hash + Eq + Clone> Table<K> {
    pub(super) fn new(max: u32) -> Self {
        Self {
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Counter>> {
        // A panic elsewhere must not turn every later login into a panic.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn banned(&self, key: &K, now: Instant) -> Option<Duration> {
        self.lock().get(key)?.banned(now)
    }

    pub(super) fn reserve(&self, key: &K, now: Instant, window: Duration) -> Result<(), Full> {
        if self.max == 0 {
            return Ok(());
        }
        let mut map = self.lock();
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, c| !c.stale(now, window));
        }
        let c = map.entry(key.clone()).or_default();
        c.prune(now, window);
        if c.banned(now).is_some() {
            return Err(Full::Banned);
        }
        if c.failures.len() + c.pending as usize >= self.max as usize {
            return Err(Full::InFlight);
        }
        c.pending += 1;
        Ok(())
    }

    pub(super) fn release(&self, key: &K) {
        if self.max == 0 {
            return;
        }
        if let Some(c) = self.lock().get_mut(key) {
            c.pending = c.pending.saturating_sub(1);
        }
    }

    /// Turns a reservation into a failure (`reserved`: the attempt holds one here); returns the
    /// ban length if this failure started one.
    pub(super) fn fail(
        &self,
        key: &K,
        now: Instant,
        ban: Duration,
        reserved: bool,
    ) -> Option<Duration> {
        if self.max == 0 {
            return None;
        }
        let mut map = self.lock();
        let c = map.entry(key.clone()).or_default();
        if reserved {
            c.pending = c.pending.saturating_sub(1);
        }
        c.failures.push_back(now);
        if c.failures.len() >= self.max as usize && c.banned(now).is_none() {
            c.failures.clear();
            c.banned_until = Some(now + ban);
            return Some(ban);
        }
        None
    }

    /// Releases a reservation and forgets the key's failures.
    pub(super) fn clear(&self, key: &K) {
        if self.max == 0 {
            return;
        }
        let mut map = self.lock();
        if let Some(c) = map.get_mut(key) {
            c.pending = c.pending.saturating_sub(1);
            c.failures.clear();
        }
    }
}
