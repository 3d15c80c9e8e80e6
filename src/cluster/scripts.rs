//! The Lua scripts behind each shared decision, and their typed calls. Keys:
//! - `gh:rl:<limit>:<caller>`: a rate limit's GCRA "theoretical arrival time" (µs, Redis time);
//! - `gh:lf:<a|u>:<who>:f`: failure times (sorted set, ms) within the window;
//! - `gh:lf:<a|u>:<who>:p`: attempts in flight (sorted set of attempt ids, scored by when their
//!   lease runs out, so a node that dies mid-login cannot hold them for ever);
//! - `gh:lf:<a|u>:<who>:ban`: present while banned (its TTL is the ban).
//!
//! `a` keys are source addresses (as `addr_label` writes them: IPv6 by /64), `u` keys accounts.
//! Every key has a TTL: Redis holds nothing once it is stale.

use std::time::Duration;

use super::{SharedStore, StoreError};

/// GCRA: admits a request when its new arrival time is within `burst` emission intervals of
/// now. Returns `{1, 0}` (admitted) or `{0, wait_us}`.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local tolerance = emission * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
";

/// Shared by the login scripts: `now` in ms, and the pruning of one table's sets.
const LOGIN_PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local window = tonumber(ARGV[2])
local maxes = {tonumber(ARGV[4]), tonumber(ARGV[5])}
local tables = {{KEYS[1], KEYS[2], KEYS[3]}}
if #KEYS == 6 then tables[2] = {KEYS[4], KEYS[5], KEYS[6]} end
local function prune(k)
  redis.call('ZREMRANGEBYSCORE', k[1], '-inf', now - window)
  redis.call('ZREMRANGEBYSCORE', k[2], '-inf', now)
end
";

/// Reserves an attempt: 0 ok, 1 address banned, 2 too many in flight, 3 account locked.
/// ARGV: id, window_ms, lease_ms, max_addr, max_account.
const RESERVE: &str = r"
local lease = tonumber(ARGV[3])
for i, k in ipairs(tables) do
  if maxes[i] > 0 then
    if redis.call('EXISTS', k[3]) == 1 then
      if i == 1 then return 1 else return 3 end
    end
    prune(k)
    if redis.call('ZCARD', k[1]) + redis.call('ZCARD', k[2]) >= maxes[i] then return 2 end
  end
end
for i, k in ipairs(tables) do
  if maxes[i] > 0 then
    redis.call('ZADD', k[2], now + lease, id)
    redis.call('PEXPIRE', k[2], lease)
  end
end
return 0
";

/// Turns a reservation into a failure. ARGV: id, window_ms, ban_ms, max_addr, max_account.
/// Returns one flag per table: 1 when this failure started its ban.
const FAIL: &str = r"
local ban = tonumber(ARGV[3])
local started = {0, 0}
for i, k in ipairs(tables) do
  if maxes[i] > 0 then
    redis.call('ZREM', k[2], id)
    prune(k)
    redis.call('ZADD', k[1], now, id)
    redis.call('PEXPIRE', k[1], window)
    if redis.call('ZCARD', k[1]) >= maxes[i] and redis.call('EXISTS', k[3]) == 0 then
      redis.call('DEL', k[1])
      redis.call('SET', k[3], '1', 'PX', ban)
      started[i] = 1
    end
  end
end
return started
";

/// Ends a reservation: releases it, and with ARGV[3] = 1 (a success) forgets the account's
/// failures (the address's stand).
const END: &str = r"
for i, k in ipairs(tables) do
  redis.call('ZREM', k[2], id)
end
if ARGV[3] == '1' and tables[2] then redis.call('DEL', tables[2][1]) end
return 0
";

/// The compiled scripts (each is sent once, then run by its sha1).
pub(super) struct Scripts {
    gcra: redis::Script,
    reserve: redis::Script,
    fail: redis::Script,
    end: redis::Script,
    pttl: redis::Script,
    standing: redis::Script,
    pub(super) acquire: redis::Script,
    pub(super) renew: redis::Script,
    pub(super) release: redis::Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            gcra: redis::Script::new(GCRA),
            reserve: redis::Script::new(&format!("{LOGIN_PRELUDE}{RESERVE}")),
            fail: redis::Script::new(&format!("{LOGIN_PRELUDE}{FAIL}")),
            end: redis::Script::new(&format!("{LOGIN_PRELUDE}{END}")),
            pttl: redis::Script::new("return redis.call('PTTL', KEYS[1])"),
            standing: redis::Script::new(
                "if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end \
                 if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then return 3 end return 0",
            ),
            acquire: redis::Script::new(super::lease::ACQUIRE),
            renew: redis::Script::new(super::lease::RENEW),
            release: redis::Script::new(super::lease::RELEASE),
        }
    }
}

/// Whose login attempt: a source address (its `addr_label`) and, for password logins to an
/// existing account, the account.
#[derive(Debug, Clone)]
pub struct LoginKeys {
    keys: Vec<String>,
}

impl LoginKeys {
    /// Keys for an address label and an optional account.
    pub fn new(addr_label: &str, account: Option<&str>) -> Self {
        let mut keys = Vec::with_capacity(6);
        for (kind, who) in std::iter::once(("a", addr_label)).chain(account.map(|a| ("u", a))) {
            for part in ["f", "p", "ban"] {
                keys.push(format!("gh:lf:{kind}:{who}:{part}"));
            }
        }
        Self { keys }
    }

    fn has_account(&self) -> bool {
        self.keys.len() == 6
    }
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// Reserved.
    Ok,
    /// The address is banned.
    AddressBanned,
    /// As many attempts in flight as failures left.
    InFlight,
    /// The account's password logins are locked.
    AccountLocked,
}

/// A table's limits in a login call.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Failures of an address that ban it (0: not counted).
    pub max_addr: u32,
    /// Failures of an account that lock it (0: not counted).
    pub max_account: u32,
    /// The window failures are counted in.
    pub window: Duration,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl SharedStore {
    /// Takes a token from the shared bucket `key` (`per_second`, `burst`): `Ok(Ok(()))`
    /// admitted, `Ok(Err(wait))` refused for `wait`.
    pub async fn rate(
        &self,
        key: &str,
        per_second: u32,
        burst: u32,
    ) -> Result<Result<(), Duration>, StoreError> {
        let emission = 1_000_000 / u64::from(per_second.max(1));
        let burst = if burst == 0 { per_second.max(1) } else { burst };
        let mut inv = self.scripts.gcra.key(format!("gh:rl:{key}"));
        inv.arg(emission.max(1)).arg(burst);
        let (ok, wait_us): (i64, i64) = self.invoke(inv).await?;
        Ok(if ok == 1 {
            Ok(())
        } else {
            Err(Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)))
        })
    }

    fn login_inv<'a>(
        &self,
        script: &'a redis::Script,
        keys: &LoginKeys,
        id: &str,
        third: u64,
        l: LoginLimits,
    ) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for k in &keys.keys {
            inv.key(k);
        }
        let account_max = if keys.has_account() { l.max_account } else { 0 };
        inv.arg(id)
            .arg(ms(l.window))
            .arg(third)
            .arg(l.max_addr)
            .arg(account_max);
        inv
    }

    /// Reserves attempt `id`; `lease` bounds how long it may stay unresolved.
    pub async fn login_reserve(
        &self,
        keys: &LoginKeys,
        id: &str,
        l: LoginLimits,
        lease: Duration,
    ) -> Result<Reserve, StoreError> {
        let inv = self.login_inv(&self.scripts.reserve, keys, id, ms(lease), l);
        Ok(match self.invoke::<i64>(inv).await? {
            0 => Reserve::Ok,
            1 => Reserve::AddressBanned,
            3 => Reserve::AccountLocked,
            _ => Reserve::InFlight,
        })
    }

    /// Counts attempt `id` as a failure; returns whether it started the address's ban and the
    /// account's lock (each `ban` long).
    pub async fn login_fail(
        &self,
        keys: &LoginKeys,
        id: &str,
        l: LoginLimits,
        ban: Duration,
    ) -> Result<(bool, bool), StoreError> {
        let inv = self.login_inv(&self.scripts.fail, keys, id, ms(ban), l);
        let (a, u): (i64, i64) = self.invoke(inv).await?;
        Ok((a == 1, u == 1))
    }

    /// Ends attempt `id` without a failure: a success (forgetting the account's failures) or a
    /// release uncounted.
    pub async fn login_end(
        &self,
        keys: &LoginKeys,
        id: &str,
        l: LoginLimits,
        success: bool,
    ) -> Result<(), StoreError> {
        let inv = self.login_inv(&self.scripts.end, keys, id, u64::from(success), l);
        self.invoke_release(inv).await;
        Ok(())
    }

    /// Whether the address is banned (`AddressBanned`) or the account locked (`AccountLocked`),
    /// in one call.
    pub async fn bans_standing(
        &self,
        addr_label: &str,
        account: Option<&str>,
    ) -> Result<Reserve, StoreError> {
        let mut inv = self.scripts.standing.prepare_invoke();
        inv.key(format!("gh:lf:a:{addr_label}:ban"));
        if let Some(a) = account {
            inv.key(format!("gh:lf:u:{a}:ban"));
        }
        Ok(match self.invoke::<i64>(inv).await? {
            1 => Reserve::AddressBanned,
            3 => Reserve::AccountLocked,
            _ => Reserve::Ok,
        })
    }

    /// The remaining ban of an address label, if it is banned.
    pub async fn ban_remaining(&self, addr_label: &str) -> Result<Option<Duration>, StoreError> {
        let key = format!("gh:lf:a:{addr_label}:ban");
        let ms: i64 = self.invoke(self.scripts.pttl.key(key)).await?;
        Ok((ms > 0).then(|| Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
    }
}
