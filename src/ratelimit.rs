//! Rate limits of proxy routes and aggregates: a token bucket per caller (per client address on
//! public routes) and optionally one for the whole route. Node-local with governor; in the
//! multi-node mode one GCRA bucket in the shared store for all nodes, with the local buckets
//! as the `on_store_error = "local"` fallback. A refusal says how long to wait.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use crate::cluster::SharedStore;
use crate::config::StoreErrorMode;
use crate::route::Quota as RouteQuota;

fn quota(q: RouteQuota) -> Quota {
    let rate = NonZeroU32::new(q.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(q.burst).unwrap_or(rate);
    Quota::per_second(rate).allow_burst(burst)
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// A bucket is empty: retry after this long.
    Wait(Duration),
    /// The shared store is down and `on_store_error = "closed"`.
    StoreUnavailable,
}

/// A route's (or aggregate's) limiters.
pub struct Limits {
    /// `route:<name>` or `aggregate:<name>`: the shared buckets' key prefix.
    scope: String,
    per_caller_quota: Option<RouteQuota>,
    global_quota: Option<RouteQuota>,
    per_caller: Option<DefaultKeyedRateLimiter<String>>,
    global: Option<DefaultDirectRateLimiter>,
    clock: DefaultClock,
    shared: Option<Arc<SharedStore>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// Limiters for `rate_limit` and `global_rate_limit` of the route or aggregate `scope`.
    pub fn new(
        scope: String,
        per_caller: Option<RouteQuota>,
        global: Option<RouteQuota>,
        shared: Option<Arc<SharedStore>>,
    ) -> Self {
        Self {
            scope,
            per_caller_quota: per_caller,
            global_quota: global,
            per_caller: per_caller.map(|q| DefaultKeyedRateLimiter::keyed(quota(q))),
            global: global.map(|q| DefaultDirectRateLimiter::direct(quota(q))),
            clock: DefaultClock::default(),
            shared,
        }
    }

    /// Takes a token for `caller` from each bucket.
    pub async fn check(&self, caller: &str) -> Result<(), Limited> {
        if self.per_caller.is_none() && self.global.is_none() {
            return Ok(());
        }
        if let Some(s) = &self.shared {
            match self.check_shared(s, caller).await {
                Ok(r) => return r,
                Err(_) => match s.on_error() {
                    StoreErrorMode::Local => {}
                    StoreErrorMode::Open => return Ok(()),
                    StoreErrorMode::Closed => return Err(Limited::StoreUnavailable),
                },
            }
        }
        self.check_local(caller).map_err(Limited::Wait)
    }

    async fn check_shared(
        &self,
        s: &SharedStore,
        caller: &str,
    ) -> Result<Result<(), Limited>, crate::cluster::StoreError> {
        if let Some(q) = self.per_caller_quota {
            let key = format!("{}:c:{caller}", self.scope);
            if let Err(wait) = s.rate(&key, q.per_second, q.burst).await? {
                return Ok(Err(Limited::Wait(wait)));
            }
        }
        if let Some(q) = self.global_quota {
            let key = format!("{}:all", self.scope);
            if let Err(wait) = s.rate(&key, q.per_second, q.burst).await? {
                return Ok(Err(Limited::Wait(wait)));
            }
        }
        Ok(Ok(()))
    }

    fn check_local(&self, caller: &str) -> Result<(), Duration> {
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
