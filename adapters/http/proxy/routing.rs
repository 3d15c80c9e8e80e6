//! The proxy's routes as they are now: the route table, each route's upstream pool and
//! limiters, the aggregates' limiters and the response cache. A reload that changes
//! `[[routes]]` or `[[aggregates]]` swaps in a new table in the core; the first request after
//! it builds the next [`Routing`] from it. A route (or aggregate) whose settings did not change
//! keeps its state (upstream health, rate-limit buckets); a changed or removed one stops its
//! health check once no request in flight uses it. The cache starts empty, so no answer of an
//! old route is served for a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::cache::ResponseCache;
use super::forward::Client;
use super::upstream::Pool;
use crate::core::Core;
use crate::ratelimit::Limits;
use crate::route::{Aggregate, Route, RouteTable};
use crate::telemetry;

/// One route's state between requests.
pub(super) struct RouteState {
    route: Route,
    pub pool: Arc<Pool>,
    pub limits: Limits,
    /// The route's name as a metric label (built once).
    pub label: telemetry::Label,
    /// Stops the route's health check when the state is dropped.
    stop: CancellationToken,
}

impl Drop for RouteState {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One aggregate's state between requests.
pub(super) struct AggregateState {
    aggregate: Aggregate,
    pub limits: Limits,
}

/// The routes in effect.
pub(super) struct Routing {
    pub table: Arc<RouteTable>,
    pub routes: HashMap<String, Arc<RouteState>>,
    pub aggregates: HashMap<String, Arc<AggregateState>>,
    pub cache: Option<ResponseCache>,
}

impl Routing {
    /// Builds the state for `table`, keeping `previous`'s for what did not change, and starts
    /// the health checks of new routes.
    fn build(
        core: &Core,
        client: &Client,
        table: Arc<RouteTable>,
        previous: Option<&Routing>,
    ) -> Self {
        let mut routes = HashMap::new();
        let mut max_ttl = Duration::ZERO;
        for r in table.routes() {
            if let Some(c) = r.cache {
                max_ttl = max_ttl.max(c.ttl);
            }
            let kept = previous
                .and_then(|p| p.routes.get(&r.name))
                .filter(|s| s.route == *r);
            let state = match kept {
                Some(s) => s.clone(),
                None => Arc::new(start_route(core, client, r)),
            };
            routes.insert(r.name.clone(), state);
        }
        let aggregates = table
            .aggregates()
            .iter()
            .map(|a| {
                let kept = previous
                    .and_then(|p| p.aggregates.get(&a.name))
                    .filter(|s| s.aggregate == *a);
                let state = match kept {
                    Some(s) => s.clone(),
                    None => Arc::new(AggregateState {
                        aggregate: a.clone(),
                        limits: Limits::new(
                            format!("aggregate:{}", a.name),
                            a.rate_limit,
                            a.global_rate_limit,
                            core.cluster.clone(),
                        ),
                    }),
                };
                (a.name.clone(), state)
            })
            .collect();
        Self {
            table,
            routes,
            aggregates,
            cache: (max_ttl > Duration::ZERO).then(|| ResponseCache::new(max_ttl)),
        }
    }

    fn prune(&self) {
        for r in self.routes.values() {
            r.limits.prune();
        }
        for a in self.aggregates.values() {
            a.limits.prune();
        }
    }
}

fn start_route(core: &Core, client: &Client, r: &Route) -> RouteState {
    let pool = Arc::new(Pool::new(r));
    let stop = core.shutdown.token.child_token();
    if let Some(hc) = &r.health_check {
        tokio::spawn(pool.clone().health_loop(
            client.clone(),
            hc.path.clone(),
            hc.interval,
            stop.clone(),
        ));
    }
    RouteState {
        route: r.clone(),
        pool,
        limits: Limits::new(
            format!("route:{}", r.name),
            r.rate_limit,
            r.global_rate_limit,
            core.cluster.clone(),
        ),
        label: telemetry::label(&r.name),
        stop,
    }
}

/// The current [`Routing`], rebuilt when the core's route table has been replaced.
pub(super) struct Current {
    now: arc_swap::ArcSwap<Routing>,
    rebuild: Mutex<()>,
}

impl Current {
    /// The routing for the core's table at start, with limiter pruning every minute (until
    /// shutdown).
    pub fn start(core: &Arc<Core>, client: &Client) -> Arc<Self> {
        let first = Routing::build(core, client, core.routes.load_full(), None);
        let current = Arc::new(Self {
            now: arc_swap::ArcSwap::from_pointee(first),
            rebuild: Mutex::new(()),
        });
        let c = Arc::downgrade(&current);
        let stop = core.shutdown.token.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
                let Some(c) = c.upgrade() else { return };
                c.now.load().prune();
            }
        });
        current
    }

    /// The routing in effect for the core's current table.
    pub fn get(&self, core: &Core, client: &Client) -> Arc<Routing> {
        let now = self.now.load_full();
        if Arc::ptr_eq(&now.table, &core.routes.load()) {
            return now;
        }
        let _one = self.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.now.load_full();
        let table = core.routes.load_full();
        if Arc::ptr_eq(&now.table, &table) {
            return now;
        }
        let next = Arc::new(Routing::build(core, client, table, Some(&now)));
        tracing::info!(
            routes = next.routes.len(),
            aggregates = next.aggregates.len(),
            "proxy routes replaced"
        );
        self.now.store(next.clone());
        next
    }
}
