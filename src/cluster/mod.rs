//! The multi-node mode's shared store: rate limits, login-failure counts and bans kept in Redis,
//! so every node behind a load balancer gives the same answer. Each decision is one Lua script
//! run atomically by Redis on Redis's clock (`TIME`), so node clocks do not matter.
//!
//! Every call is bounded by `timeout_ms`. A failed or slow call marks the store down: from then
//! on decisions skip Redis at once and follow `on_store_error` (node-local limits, admit, or
//! refuse) until a background probe (a `PING` a second) finds it answering again. Each switch is
//! logged, audited (`config` record), and shown by the `gatehouse_cluster_store_up` gauge and
//! `/readyz`.

mod lease;
mod scripts;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::audit::{AuditAction, AuditEvent, AuditLog, Outcome};
use crate::config::{ClusterConfig, StoreErrorMode};

pub use lease::Lease;
pub use scripts::{LoginKeys, LoginLimits, Reserve};

/// How often a down store is probed.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Why a shared decision could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis answered with an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within `timeout_ms`.
    #[error("redis did not answer within {0} ms")]
    Timeout(u64),
    /// The store is marked down; not tried.
    #[error("redis marked down")]
    Down,
}

/// The settings the shared store is built from.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Redis URL.
    pub url: String,
    /// What to do while Redis is down.
    pub on_error: StoreErrorMode,
    /// Bound on each call.
    pub timeout: Duration,
    /// This node's name (in its session leases).
    pub node: String,
}

impl StoreSettings {
    /// The settings of `[cluster]`, if it names a Redis server.
    pub fn from_config(c: Option<&ClusterConfig>, node: &str) -> Option<Self> {
        let c = c?;
        Some(Self {
            url: c.redis.clone()?,
            on_error: c.on_store_error,
            timeout: Duration::from_millis(c.timeout_ms),
            node: node.to_string(),
        })
    }
}

/// The connection to Redis, with its health.
pub struct SharedStore {
    conn: ConnectionManager,
    on_error: StoreErrorMode,
    timeout: Duration,
    up: AtomicBool,
    audit: AuditLog,
    scripts: scripts::Scripts,
    node: String,
    held: lease::Held,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore")
            .field("on_error", &self.on_error)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl SharedStore {
    /// Sets up the connection (made lazily: the gateway starts while Redis is down, and then
    /// follows `on_store_error`) and starts the probe, which stops with `stop`.
    pub fn start(
        s: &StoreSettings,
        audit: AuditLog,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Arc<Self>, StoreError> {
        let client = redis::Client::open(s.url.as_str())?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(s.timeout.max(Duration::from_millis(250))))
            .set_response_timeout(Some(s.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, cfg)?;
        let store = Arc::new(Self {
            conn,
            on_error: s.on_error,
            timeout: s.timeout,
            // Assumed up until a call says otherwise; the first probe runs at once.
            up: AtomicBool::new(true),
            audit,
            scripts: scripts::Scripts::new(),
            node: s.node.clone(),
            held: lease::Held::default(),
        });
        metrics::gauge!("gatehouse_cluster_store_up").set(1.0);
        tokio::spawn(store.clone().probe_loop(stop));
        Ok(store)
    }

    /// What decisions do while the store is down.
    pub fn on_error(&self) -> StoreErrorMode {
        self.on_error
    }

    /// Whether the last call (or probe) was answered.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    async fn probe_loop(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut since_renewal = Duration::ZERO;
        loop {
            if since_renewal >= lease::RENEW_EVERY {
                since_renewal = Duration::ZERO;
                self.renew_leases().await;
            }
            since_renewal += PROBE_EVERY;
            // A write, as the decisions make (a replica or a full Redis answers PING but
            // refuses them); it counts as up only when as fast as a decision must be, so a
            // Redis hovering around timeout_ms does not flap the mode every second.
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("SET");
            cmd.arg(format!("gh:probe:{}", self.node))
                .arg(1)
                .arg("PX")
                .arg(5000);
            let started = std::time::Instant::now();
            let probe = cmd.query_async::<redis::Value>(&mut conn);
            let bound = self.timeout.max(Duration::from_millis(250));
            match tokio::time::timeout(bound, probe).await {
                Ok(Ok(_)) if started.elapsed() <= self.timeout => {
                    // Back up: the leases this node holds are taken again at once (those that
                    // ran out during the outage come back, so the counts are right again).
                    if !self.is_up() {
                        self.mark(true, None);
                        since_renewal = Duration::ZERO;
                        self.renew_leases().await;
                    }
                }
                // Slow but answering: no switch either way (a slow call marks it down).
                Ok(Ok(_)) => {}
                Ok(Err(e)) => self.mark(false, Some(e.to_string())),
                Err(_) => self.mark(
                    false,
                    Some(format!("no answer within {} ms", bound.as_millis())),
                ),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(PROBE_EVERY) => {}
            }
        }
    }

    /// Records a switch between up and down (only the switch: not every failed call).
    fn mark(&self, up: bool, why: Option<String>) {
        if self.up.swap(up, Ordering::AcqRel) == up {
            return;
        }
        metrics::gauge!("gatehouse_cluster_store_up").set(if up { 1.0 } else { 0.0 });
        let detail = if up {
            tracing::info!("shared store (redis) answering again: shared limits and bans resumed");
            "cluster store up: shared limits and bans resumed".to_string()
        } else {
            let why = why.unwrap_or_default();
            tracing::warn!(error = %why, on_store_error = self.on_error.as_str(), "shared store (redis) unavailable");
            format!(
                "cluster store down ({why}): on_store_error={}",
                self.on_error.as_str()
            )
        };
        let audit = self.audit.clone();
        let outcome = if up { Outcome::Ok } else { Outcome::Error };
        tokio::spawn(async move {
            let ev = AuditEvent::new(AuditAction::Config, outcome).detail(detail);
            if let Err(e) = audit.record(ev).await {
                tracing::error!(error = %e, "could not record the cluster store switch");
            }
        });
    }

    /// Runs a release (of a lease or a reservation) even while the store is marked down: it
    /// is off the request path, and one that gets through spares the slot its lease time. Its
    /// failure does not change the store's health.
    async fn invoke_release(&self, inv: redis::ScriptInvocation<'_>) {
        let mut conn = self.conn.clone();
        let bound = self.timeout.max(Duration::from_millis(250));
        let _ = tokio::time::timeout(bound, inv.invoke_async::<redis::Value>(&mut conn)).await;
    }

    /// Runs one script invocation, bounded by `timeout_ms`; skipped at once while down.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        if !self.is_up() {
            return Err(StoreError::Down);
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, inv.invoke_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                metrics::counter!("gatehouse_cluster_store_errors_total").increment(1);
                self.mark(false, Some(e.to_string()));
                Err(e.into())
            }
            Err(_) => {
                metrics::counter!("gatehouse_cluster_store_errors_total").increment(1);
                let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
                self.mark(false, Some(format!("no answer within {ms} ms")));
                Err(StoreError::Timeout(ms))
            }
        }
    }
}
