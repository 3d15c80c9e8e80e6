//! Login-failure tracking shared by every protocol, counted two ways that never reset each other:
//! per source address (IPv4 alone, IPv6 by /64, since one host holds a whole /64) and per account.
//! `max` failures of an address within `window_secs` ban it for `ban_secs`; `account_max` failed
//! password logins to one account, from anywhere, lock that account's password logins for
//! `ban_secs`. A success clears only that account's count.
//!
//! An attempt is *reserved* before its credentials are checked, so N parallel attempts from one
//! address get at most the address's remaining allowance, not N guesses: once the failures plus
//! the attempts in flight reach the limit, further attempts are refused without being verified.
//! Both tables are bounded: stale entries are pruned when they grow (`ban_table.rs`).

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ban_table::{Full, Table};
use crate::cluster::{LoginKeys, LoginLimits, Reserve, SharedStore};
use crate::config::{LoginFailuresConfig, StoreErrorMode};

/// The unit an address is counted in: an IPv4 address (IPv4-mapped IPv6 included) alone, an
/// IPv6 address by its /64.
pub fn addr_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// How an address key reads in logs and audit records (`2001:db8::/64` for IPv6).
pub fn addr_label(key: IpAddr) -> String {
    match key {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

/// Why an attempt was refused before its credentials were looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address is banned.
    AddressBanned,
    /// The account's password logins are locked.
    AccountLocked,
    /// The address (or account) already has as many attempts in flight as failures left.
    TooManyInFlight,
    /// The shared store is down and `on_store_error = "closed"`.
    StoreUnavailable,
}

/// A ban or lock that a failure just started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanStarted {
    /// The address (key as from [`addr_key`]) is banned for this long.
    Address(IpAddr, Duration),
    /// The account's password logins are locked for this long.
    Account(String, Duration),
}

/// How long an attempt reserved in the shared store may stay unresolved (a node that dies
/// mid-login frees it then).
const SHARED_LEASE: Duration = Duration::from_secs(120);

/// The ban list: node-local tables, or the cluster's shared store with the local tables as
/// the `on_store_error = "local"` fallback.
#[derive(Debug)]
pub struct BanList {
    window: Duration,
    ban: Duration,
    addrs: Table<IpAddr>,
    accounts: Table<String>,
    shared: Option<Arc<SharedStore>>,
}

impl BanList {
    /// An empty node-local list with these limits.
    pub fn new(cfg: LoginFailuresConfig) -> Self {
        Self::with_store(cfg, None)
    }

    /// A list kept in `shared` when given (every node counts and bans together).
    pub fn with_store(cfg: LoginFailuresConfig, shared: Option<Arc<SharedStore>>) -> Self {
        Self {
            window: Duration::from_secs(cfg.window_secs),
            ban: Duration::from_secs(cfg.ban_secs),
            addrs: Table::new(cfg.max),
            accounts: Table::new(cfg.account_max.unwrap_or(cfg.max.saturating_mul(2))),
            shared,
        }
    }

    fn limits(&self) -> LoginLimits {
        LoginLimits {
            max_addr: self.addrs.max,
            max_account: self.accounts.max,
            window: self.window,
        }
    }

    /// Remaining ban time for `ip`'s address key, if banned.
    pub async fn banned(&self, ip: IpAddr) -> Option<Duration> {
        let key = addr_key(ip);
        if let Some(s) = &self.shared {
            match s.ban_remaining(&addr_label(key)).await {
                Ok(d) => return d,
                // Open and closed decide at the login itself; local asks the local table.
                Err(_) if s.on_error() != StoreErrorMode::Local => return None,
                Err(_) => {}
            }
        }
        self.addrs.banned(&key, Instant::now())
    }

    /// Whether `ip` is banned or `account`'s password logins are locked (for an attempt that
    /// needs no reservation: a password that verified moments ago).
    pub async fn standing(&self, ip: IpAddr, account: Option<&str>) -> Result<(), Refused> {
        let key = addr_key(ip);
        if let Some(s) = &self.shared {
            match s.bans_standing(&addr_label(key), account).await {
                Ok(Reserve::Ok) => return Ok(()),
                Ok(Reserve::AccountLocked) => return Err(Refused::AccountLocked),
                Ok(_) => return Err(Refused::AddressBanned),
                Err(_) => match s.on_error() {
                    StoreErrorMode::Local => {}
                    StoreErrorMode::Open => return Ok(()),
                    StoreErrorMode::Closed => return Err(Refused::StoreUnavailable),
                },
            }
        }
        let now = Instant::now();
        if self.addrs.banned(&key, now).is_some() {
            return Err(Refused::AddressBanned);
        }
        if let Some(a) = account
            && self.accounts.banned(&a.to_string(), now).is_some()
        {
            return Err(Refused::AccountLocked);
        }
        Ok(())
    }

    /// Reserves one attempt from `ip`, and for `account` when the attempt is a password login
    /// to an existing account. Resolve it with [`Attempt::succeeded`] or [`Attempt::failed`];
    /// dropping it unresolved (cancelled, or the verifier was busy) releases it uncounted.
    pub async fn reserve(&self, ip: IpAddr, account: Option<&str>) -> Result<Attempt<'_>, Refused> {
        if let Some(s) = &self.shared {
            let keys = LoginKeys::new(&addr_label(addr_key(ip)), account);
            let id = uuid::Uuid::new_v4().simple().to_string();
            match s
                .login_reserve(&keys, &id, self.limits(), SHARED_LEASE)
                .await
            {
                Ok(Reserve::Ok) => {
                    return Ok(self.attempt(ip, account, Kept::Shared { keys, id }));
                }
                Ok(Reserve::AddressBanned) => return Err(Refused::AddressBanned),
                Ok(Reserve::AccountLocked) => return Err(Refused::AccountLocked),
                Ok(Reserve::InFlight) => return Err(Refused::TooManyInFlight),
                Err(_) => match s.on_error() {
                    StoreErrorMode::Local => {}
                    StoreErrorMode::Open => return Ok(self.attempt(ip, account, Kept::Nowhere)),
                    StoreErrorMode::Closed => return Err(Refused::StoreUnavailable),
                },
            }
        }
        self.reserve_at(ip, account, Instant::now())
    }

    fn attempt(&self, ip: IpAddr, account: Option<&str>, kept: Kept) -> Attempt<'_> {
        Attempt {
            list: self,
            addr: addr_key(ip),
            account: account.map(str::to_string),
            kept,
            done: false,
        }
    }

    fn reserve_at(
        &self,
        ip: IpAddr,
        account: Option<&str>,
        now: Instant,
    ) -> Result<Attempt<'_>, Refused> {
        let addr = addr_key(ip);
        self.addrs
            .reserve(&addr, now, self.window)
            .map_err(|f| match f {
                Full::Banned => Refused::AddressBanned,
                Full::InFlight => Refused::TooManyInFlight,
            })?;
        if let Some(a) = account
            && let Err(f) = self.accounts.reserve(&a.to_string(), now, self.window)
        {
            self.addrs.release(&addr);
            return Err(match f {
                Full::Banned => Refused::AccountLocked,
                Full::InFlight => Refused::TooManyInFlight,
            });
        }
        Ok(self.attempt(ip, account, Kept::Local))
    }
}

/// Where an attempt's reservation is kept.
#[derive(Debug)]
enum Kept {
    /// In the node-local tables.
    Local,
    /// In the shared store, under this attempt id.
    Shared { keys: LoginKeys, id: String },
    /// Nowhere: the store was down and `on_store_error = "open"`.
    Nowhere,
}

/// A reserved login attempt.
#[derive(Debug)]
pub struct Attempt<'a> {
    list: &'a BanList,
    addr: IpAddr,
    account: Option<String>,
    kept: Kept,
    done: bool,
}

impl Attempt<'_> {
    /// The credentials were good: the address's reservation is released (its earlier failures
    /// stand) and the account's failures are forgotten.
    pub async fn succeeded(mut self) {
        self.done = true;
        match &self.kept {
            Kept::Local => {
                self.list.addrs.release(&self.addr);
                if let Some(a) = &self.account {
                    self.list.accounts.clear(a);
                }
            }
            Kept::Shared { keys, id } => {
                if let Some(s) = &self.list.shared {
                    // A lost release only holds the slot until its lease runs out.
                    let _ = s.login_end(keys, id, self.list.limits(), true).await;
                }
            }
            Kept::Nowhere => {}
        }
    }

    /// The credentials were wrong: counts the failure; returns the bans it started.
    pub async fn failed(mut self) -> Vec<BanStarted> {
        self.done = true;
        if let (Kept::Shared { keys, id }, Some(s)) = (&self.kept, &self.list.shared) {
            let limits = self.list.limits();
            match s.login_fail(keys, id, limits, self.list.ban).await {
                Ok((addr, account)) => {
                    let mut started = Vec::new();
                    if addr {
                        started.push(BanStarted::Address(self.addr, self.list.ban));
                    }
                    if account && let Some(a) = &self.account {
                        started.push(BanStarted::Account(a.clone(), self.list.ban));
                    }
                    return started;
                }
                Err(_) if s.on_error() == StoreErrorMode::Local => {}
                Err(_) => return Vec::new(),
            }
        }
        if matches!(self.kept, Kept::Nowhere) {
            return Vec::new();
        }
        self.failed_local(Instant::now())
    }

    /// Counts the failure in the local tables (the fallback of a shared attempt too, which
    /// holds no local reservation).
    fn failed_local(&mut self, now: Instant) -> Vec<BanStarted> {
        self.done = true;
        let reserved = matches!(self.kept, Kept::Local);
        let mut started = Vec::new();
        if let Some(d) = self
            .list
            .addrs
            .fail(&self.addr, now, self.list.ban, reserved)
        {
            started.push(BanStarted::Address(self.addr, d));
        }
        if let Some(a) = &self.account
            && let Some(d) = self.list.accounts.fail(a, now, self.list.ban, reserved)
        {
            started.push(BanStarted::Account(a.clone(), d));
        }
        started
    }

    #[cfg(test)]
    fn failed_at(mut self, now: Instant) -> Vec<BanStarted> {
        self.failed_local(now)
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match &self.kept {
            Kept::Local => {
                self.list.addrs.release(&self.addr);
                if let Some(a) = &self.account {
                    self.list.accounts.release(a);
                }
            }
            Kept::Shared { keys, id } => {
                if let (Some(s), Ok(rt)) = (
                    self.list.shared.clone(),
                    tokio::runtime::Handle::try_current(),
                ) {
                    let (keys, id, limits) = (keys.clone(), id.clone(), self.list.limits());
                    rt.spawn(async move {
                        let _ = s.login_end(&keys, &id, limits, false).await;
                    });
                }
            }
            Kept::Nowhere => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(max: u32, account_max: Option<u32>) -> BanList {
        BanList::new(LoginFailuresConfig {
            max,
            window_secs: 60,
            ban_secs: 120,
            account_max,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bans_after_max_within_window() {
        let b = list(3, None);
        let a = ip("10.0.0.1");
        let t0 = Instant::now();
        for i in 0..2 {
            let at = t0 + Duration::from_secs(i);
            assert!(b.reserve_at(a, None, at).unwrap().failed_at(at).is_empty());
        }
        let at = t0 + Duration::from_secs(2);
        let started = b.reserve_at(a, None, at).unwrap().failed_at(at);
        assert_eq!(
            started,
            vec![BanStarted::Address(a, Duration::from_secs(120))]
        );
        let during = t0 + Duration::from_secs(3);
        assert_eq!(
            b.reserve_at(a, None, during).unwrap_err(),
            Refused::AddressBanned
        );
        assert!(b.reserve_at(ip("10.0.0.2"), None, during).is_ok());
        assert!(b.reserve_at(a, None, t0 + Duration::from_secs(200)).is_ok());
    }

    #[test]
    fn old_failures_fall_out_of_the_window() {
        let b = list(2, None);
        let a = ip("::1");
        let t0 = Instant::now();
        b.reserve_at(a, None, t0).unwrap().failed_at(t0);
        let t1 = t0 + Duration::from_secs(61);
        assert!(b.reserve_at(a, None, t1).unwrap().failed_at(t1).is_empty());
        let t2 = t0 + Duration::from_secs(62);
        assert_eq!(b.reserve_at(a, None, t2).unwrap().failed_at(t2).len(), 1);
    }

    #[tokio::test]
    async fn parallel_attempts_get_only_the_remaining_allowance() {
        let b = list(5, None);
        let a = ip("10.0.0.9");
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(b.reserve(a, None).await.unwrap());
        }
        assert_eq!(
            b.reserve(a, None).await.unwrap_err(),
            Refused::TooManyInFlight
        );
        let mut started = Vec::new();
        for h in held {
            started.extend(h.failed().await);
        }
        assert_eq!(started.len(), 1, "the fifth failure starts the ban");
        assert_eq!(
            b.reserve(a, None).await.unwrap_err(),
            Refused::AddressBanned
        );
    }

    #[tokio::test]
    async fn an_unresolved_attempt_is_released_uncounted() {
        let b = list(1, None);
        let a = ip("10.0.0.3");
        drop(b.reserve(a, None).await.unwrap());
        assert!(b.reserve(a, None).await.is_ok());
    }

    #[tokio::test]
    async fn success_clears_only_the_account() {
        let b = list(3, Some(3));
        let a = ip("10.0.0.1");
        // Two failures on "bob", then a success on "alice" from the same address.
        b.reserve(a, Some("bob")).await.unwrap().failed().await;
        b.reserve(a, Some("bob")).await.unwrap().failed().await;
        b.reserve(a, Some("alice")).await.unwrap().succeeded().await;
        // The address still has its two failures: one more bans it.
        let started = b.reserve(a, Some("carol")).await.unwrap().failed().await;
        assert!(matches!(started[..], [BanStarted::Address(..)]));
    }

    #[tokio::test]
    async fn an_account_is_locked_from_any_address() {
        let b = list(100, Some(3));
        for i in 0..3 {
            let from = ip(&format!("10.0.1.{i}"));
            let started = b.reserve(from, Some("acme")).await.unwrap().failed().await;
            assert_eq!(started.len(), usize::from(i == 2));
        }
        assert_eq!(
            b.reserve(ip("10.9.9.9"), Some("acme")).await.unwrap_err(),
            Refused::AccountLocked
        );
        // Other accounts, and the same address without a password login, are unaffected.
        assert!(b.reserve(ip("10.9.9.9"), Some("other")).await.is_ok());
        assert!(b.reserve(ip("10.0.1.0"), None).await.is_ok());
    }

    #[tokio::test]
    async fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let b = list(2, None);
        b.reserve(ip("2001:db8:1:2::1"), None)
            .await
            .unwrap()
            .failed()
            .await;
        let started = b
            .reserve(ip("2001:db8:1:2:ffff::9"), None)
            .await
            .unwrap()
            .failed()
            .await;
        assert_eq!(
            started,
            vec![BanStarted::Address(
                ip("2001:db8:1:2::"),
                Duration::from_secs(120)
            )]
        );
        assert!(b.banned(ip("2001:db8:1:2:abcd::1")).await.is_some());
        assert!(b.banned(ip("2001:db8:1:3::1")).await.is_none());
        assert_eq!(addr_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(addr_label(ip("2001:db8:1:2::")), "2001:db8:1:2::/64");
    }

    #[tokio::test]
    async fn zero_disables() {
        let b = list(0, Some(0));
        let a = ip("10.0.0.1");
        for _ in 0..10 {
            assert!(
                b.reserve(a, Some("x"))
                    .await
                    .unwrap()
                    .failed()
                    .await
                    .is_empty()
            );
        }
    }
}
