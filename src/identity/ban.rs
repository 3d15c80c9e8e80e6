//! Login-failure tracking per source IP, shared by every protocol: `max` failures within
//! `window_secs` ban the address for `ban_secs`. Bounded: expired entries are pruned.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::LoginFailuresConfig;

/// Above this many tracked addresses, stale entries are pruned on the next failure.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Default)]
struct Entry {
    failures: VecDeque<Instant>,
    banned_until: Option<Instant>,
}

/// The ban list.
#[derive(Debug)]
pub struct BanList {
    cfg: LoginFailuresConfig,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl BanList {
    /// An empty list with these limits.
    pub fn new(cfg: LoginFailuresConfig) -> Self {
        Self {
            cfg,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.cfg.window_secs)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // A panic elsewhere must not turn every later login into a panic.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remaining ban time for `ip`, if banned.
    pub fn banned(&self, ip: IpAddr) -> Option<Duration> {
        self.banned_at(ip, Instant::now())
    }

    fn banned_at(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.lock();
        let until = map.get(&ip)?.banned_until?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// Records a failure; returns true if it caused a ban.
    pub fn failure(&self, ip: IpAddr) -> bool {
        self.failure_at(ip, Instant::now())
    }

    fn failure_at(&self, ip: IpAddr, now: Instant) -> bool {
        if self.cfg.max == 0 {
            return false;
        }
        let window = self.window();
        let mut map = self.lock();
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, e| {
                e.banned_until.is_some_and(|u| u > now)
                    || e.failures
                        .back()
                        .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let e = map.entry(ip).or_default();
        while e
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            e.failures.pop_front();
        }
        e.failures.push_back(now);
        if e.failures.len() >= self.cfg.max as usize {
            e.failures.clear();
            e.banned_until = Some(now + Duration::from_secs(self.cfg.ban_secs));
            return true;
        }
        false
    }

    /// A successful login clears the address's failure count.
    pub fn success(&self, ip: IpAddr) {
        let mut map = self.lock();
        if map.get(&ip).is_some_and(|e| e.banned_until.is_none()) {
            map.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(max: u32) -> BanList {
        BanList::new(LoginFailuresConfig {
            max,
            window_secs: 60,
            ban_secs: 120,
        })
    }

    #[test]
    fn bans_after_max_within_window() {
        let b = list(3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(!b.failure_at(ip, t0));
        assert!(!b.failure_at(ip, t0 + Duration::from_secs(1)));
        assert!(b.failure_at(ip, t0 + Duration::from_secs(2)));
        assert!(b.banned_at(ip, t0 + Duration::from_secs(3)).is_some());
        assert!(b.banned_at(ip, t0 + Duration::from_secs(200)).is_none());
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(b.banned_at(other, t0).is_none());
    }

    #[test]
    fn old_failures_fall_out_of_the_window() {
        let b = list(2);
        let ip: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        assert!(!b.failure_at(ip, t0));
        assert!(!b.failure_at(ip, t0 + Duration::from_secs(61)));
        assert!(b.failure_at(ip, t0 + Duration::from_secs(62)));
    }

    #[test]
    fn success_resets_and_zero_disables() {
        let b = list(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        b.failure(ip);
        b.success(ip);
        assert!(!b.failure(ip));
        let off = list(0);
        for _ in 0..10 {
            assert!(!off.failure(ip));
        }
    }
}
