//! Rate limits with governor: a token bucket per principal (per client IP on public routes),
//! and optionally one bucket for the whole route. A refusal says how long to wait.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use crate::route::Quota as RouteQuota;

fn quota(q: RouteQuota) -> Quota {
    let rate = NonZeroU32::new(q.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(q.burst).unwrap_or(rate);
    Quota::per_second(rate).allow_burst(burst)
}

/// A route's limiters.
pub(crate) struct Limits {
    per_caller: Option<DefaultKeyedRateLimiter<String>>,
    global: Option<DefaultDirectRateLimiter>,
    clock: DefaultClock,
}

impl Limits {
    /// Limiters for a route or aggregate's `rate_limit` and `global_rate_limit`.
    pub fn new(per_caller: Option<RouteQuota>, global: Option<RouteQuota>) -> Self {
        Self {
            per_caller: per_caller.map(|q| DefaultKeyedRateLimiter::keyed(quota(q))),
            global: global.map(|q| DefaultDirectRateLimiter::direct(quota(q))),
            clock: DefaultClock::default(),
        }
    }

    /// Takes a token for `caller`; `Err(wait)` when either bucket is empty.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        let now = self.clock.now();
        if let Some(l) = &self.per_caller
            && let Err(not_until) = l.check_key(&caller.to_string())
        {
            return Err(not_until.wait_time_from(now));
        }
        if let Some(g) = &self.global
            && let Err(not_until) = g.check()
        {
            return Err(not_until.wait_time_from(now));
        }
        Ok(())
    }

    /// Forgets callers whose buckets are full again (bounded memory).
    pub fn prune(&self) {
        if let Some(l) = &self.per_caller {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}
