//! `gatehouse serve`: the composition root, and the only file in `src/` that knows the
//! adapters. Config → audit log → backends → core → listeners; then wait for SIGINT/SIGTERM,
//! stop accepting, let work in flight finish within the grace period, flush the audit log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::adapters;
use crate::audit::{AuditAction, AuditError, AuditEvent, AuditLog, AuditOptions, Outcome};
use crate::config::{ConfigErrors, ConfigSource, EnvLookup, ValidConfig};
use crate::core::Core;
use crate::identity::Identity;
use crate::refusals::RefusalLog;
use crate::shutdown::{self, Shutdown};
use crate::telemetry::{self, LogFormat};
use crate::vfs::backend::StorageError;
use crate::vfs::{Mount, MountTable, Vfs};

/// How often work left behind (multipart uploads whose abort failed) is retried.
const SWEEP_SECS: u64 = 10;

/// How often counted (not individually recorded) refused logins are summarised.
const REFUSAL_SUMMARY_SECS: u64 = 60;

/// Default audit rotation size.
const DEFAULT_ROTATE_BYTES: u64 = 64 * 1024 * 1024;

/// Why `serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The config is invalid.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A directory could not be created.
    #[error("cannot create {path}: {source}")]
    StateDir {
        /// Directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The audit log could not be opened or written.
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    /// Event delivery could not start.
    #[error(transparent)]
    Events(#[from] crate::events::EventsError),
    /// A backend could not be set up.
    #[error("backend {name}: {source}")]
    Backend {
        /// Backend name.
        name: String,
        /// Cause.
        source: StorageError,
    },
    /// A listener could not start.
    #[error("{0}")]
    Listener(String),
}

/// Node name for audit records: `cluster.node`, else `gateway.node`, else the host name.
pub fn node_name(cfg: &ValidConfig) -> String {
    let named = cfg.config.cluster.as_ref().and_then(|c| c.node.clone());
    named
        .or_else(|| cfg.config.gateway.node.clone())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "gatehouse".into())
        })
}

/// Builds the core: audit log, backends, mounts, identity.
pub async fn build_core(cfg: ValidConfig) -> Result<(Arc<Core>, Option<String>), ServeError> {
    let state_dir = &cfg.config.gateway.state_dir;
    std::fs::create_dir_all(state_dir).map_err(|source| ServeError::StateDir {
        path: state_dir.display().to_string(),
        source,
    })?;
    let (audit, repair) = AuditLog::open(AuditOptions {
        dir: cfg.audit_dir.clone(),
        fsync: cfg.config.audit.fsync,
        rotate_bytes: cfg
            .config
            .audit
            .rotate_bytes
            .unwrap_or(DEFAULT_ROTATE_BYTES),
        node: node_name(&cfg),
        reserve_bytes: cfg.config.audit.reserve_bytes.unwrap_or(8 * 1024 * 1024),
    })?;
    let mut built = HashMap::new();
    let mut mounts = Vec::new();
    for m in &cfg.mounts {
        let backend = match built.get(&m.backend) {
            Some(b) => Arc::clone(b),
            None => {
                let spec = cfg
                    .backends
                    .get(&m.backend)
                    .ok_or_else(|| ServeError::Backend {
                        name: m.backend.clone(),
                        source: StorageError::not_found("not configured"),
                    })?;
                let b = adapters::storage::build(
                    &m.backend,
                    spec,
                    Some(cfg.config.gateway.state_dir.as_path()),
                )
                .map_err(|source| ServeError::Backend {
                    name: m.backend.clone(),
                    source,
                })?;
                built.insert(m.backend.clone(), Arc::clone(&b));
                b
            }
        };
        mounts.push(Mount {
            path: m.path.clone(),
            backend_name: m.backend.clone(),
            backend,
            prefix: m.prefix.clone(),
        });
    }
    // What a crash left behind (multipart uploads on object stores) goes before anything new.
    for b in built.values() {
        b.sweep(true).await;
    }
    let shutdown = Shutdown::new(cfg.shutdown_grace());
    let vfs = Vfs::new(
        MountTable::new(mounts),
        audit.clone(),
        shutdown.tasks.clone(),
    )
    .with_validation(cfg.validation.clone());
    for u in &cfg.users {
        if let Err(e) = vfs.ensure_dir_all(&u.home).await {
            tracing::warn!(user = %u.name, home = %u.home, error = %e, "cannot create the user's home directory");
        }
    }
    let node = node_name(&cfg);
    let cluster =
        match crate::cluster::StoreSettings::from_config(cfg.config.cluster.as_ref(), &node) {
            Some(s) => Some(
                crate::cluster::SharedStore::start(&s, audit.clone(), shutdown.token.clone())
                    .map_err(|e| ServeError::Listener(format!("cluster.redis: {e}")))?,
            ),
            None => None,
        };
    let identity = Identity::new(&cfg, cluster.clone());
    let index = match crate::audit::index::AuditIndex::start(
        crate::audit::index::path_in(state_dir),
        cfg.audit_dir.clone(),
        audit.written(),
        shutdown.token.clone(),
    )
    .await
    {
        Ok(ix) => Some(ix),
        Err(e) => {
            tracing::error!(error = %e, "audit index unavailable; audit queries scan the files");
            None
        }
    };
    let shipped =
        cfg.config
            .audit
            .ship
            .as_ref()
            .and_then(|ship| match named_backend(&cfg, &ship.backend) {
                Ok(b) => Some(crate::ship::read::ShippedLog::new(
                    b,
                    ship.backend.clone(),
                    crate::ship::Layout::new(&ship.prefix),
                )),
                Err(e) => {
                    tracing::warn!(error = %e, "the console cannot read the shipped audit log");
                    None
                }
            });
    let core = Arc::new(Core {
        certs: crate::certs::Certs::default(),
        shipped,
        config_sha256: std::sync::Mutex::new(String::new()),
        live: crate::live::LiveSessions::default(),
        console: crate::console::ConsoleSessions::default(),
        index,
        cluster,
        refusals: RefusalLog::new(cfg.config.limits.refused_login_records_per_sec),
        user_sessions: crate::limits::UserLimiter::new(cfg.config.limits.max_sessions_per_user),
        routes: arc_swap::ArcSwap::from_pointee(cfg.routes.clone()),
        config: cfg,
        identity: arc_swap::ArcSwap::from_pointee(identity),
        vfs,
        audit,
        shutdown,
    });
    Ok((core, repair))
}

async fn record_config(
    audit: &AuditLog,
    outcome: Outcome,
    detail: String,
) -> Result<(), AuditError> {
    audit
        .record(AuditEvent::new(AuditAction::Config, outcome).detail(detail))
        .await
        .map(|_| ())
}

/// Runs the gateway until SIGINT/SIGTERM.
pub async fn run(
    config: Option<&Path>,
    log_format: LogFormat,
    log_level: &str,
    env: EnvLookup<'_>,
) -> Result<(), ServeError> {
    telemetry::init_logging(log_format, log_level);
    let source = ConfigSource::find(config);
    let cfg = source.load(env)?;
    tracing::info!(config = %source, "configuration loaded");
    for w in &cfg.warnings {
        tracing::warn!(config = %source, "{w}");
    }
    if source == ConfigSource::Demo {
        tracing::warn!(
            "running the built-in demo config: users demo/demo and admin/admin, loopback only; write a gatehouse.toml (start from `gatehouse demo-config`) before real use"
        );
    }
    let metrics = telemetry::init_metrics();
    let (core, repair) = build_core(cfg).await?;
    if let Some(r) = repair {
        tracing::warn!("{r}");
        record_config(&core.audit, Outcome::Error, r).await?;
    }
    // Event delivery starts before the doors open (a new sink's first event is the first upload
    // after it), runs on until the sessions have ended, then saves its progress before the audit
    // log closes.
    let events_stop = tokio_util::sync::CancellationToken::new();
    let events = match start_events(&core, events_stop.clone()) {
        Ok(e) => e,
        Err(e) => {
            let _ = record_config(&core.audit, Outcome::Error, format!("start failed: {e}")).await;
            let _ = core.audit.close().await;
            return Err(e);
        }
    };
    let ship_stop = tokio_util::sync::CancellationToken::new();
    let shipper = match start_shipper(&core, ship_stop.clone()) {
        Ok(s) => s,
        Err(e) => {
            let _ = record_config(&core.audit, Outcome::Error, format!("start failed: {e}")).await;
            let _ = core.audit.close().await;
            return Err(e);
        }
    };
    let listeners = start_listeners(&core, metrics.clone()).await;
    let mut tasks = match listeners {
        Ok(t) => t,
        Err(e) => {
            let _ = record_config(&core.audit, Outcome::Error, format!("start failed: {e}")).await;
            let _ = core.audit.close().await;
            return Err(e);
        }
    };
    record_config(
        &core.audit,
        Outcome::Ok,
        format!(
            "started {} (config {}, sha256 {})",
            env!("CARGO_PKG_VERSION"),
            source,
            crate::reload::digest(&source)
        ),
    )
    .await?;
    {
        // Multipart uploads whose abort failed (store down) are retried every few seconds (a
        // directory listing in the state dir when there is nothing to do).
        let core = core.clone();
        tokio::spawn(async move {
            let token = core.shutdown.token.clone();
            let mut tick = tokio::time::interval(Duration::from_secs(SWEEP_SECS));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {
                        for m in core.vfs.mounts().mounts() {
                            m.backend.sweep(false).await;
                        }
                    }
                }
            }
        });
    }
    {
        let core = core.clone();
        tokio::spawn(async move {
            let token = core.shutdown.token.clone();
            let mut tick = tokio::time::interval(Duration::from_secs(REFUSAL_SUMMARY_SECS));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => core.record_refusal_summary(REFUSAL_SUMMARY_SECS).await,
                }
            }
        });
    }
    if let Some(m) = metrics.clone() {
        let token = core.shutdown.token.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => m.run_upkeep(),
                }
            }
        });
    }

    *core.config_sha256.lock().unwrap_or_else(|p| p.into_inner()) = crate::reload::digest(&source);
    let mut hangup = reload_signal();
    // Made once: a SIGTERM that arrives while a reload runs is still seen.
    let stop = shutdown::signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => {
                tracing::info!("shutdown requested; finishing work in flight");
                break;
            }
            Some(_) = tasks.join_next() => {
                tracing::error!("a listener stopped unexpectedly; shutting down");
                break;
            }
            Some(()) = recv_hangup(&mut hangup) => {
                tracing::info!("SIGHUP: reloading the config");
                let _ = crate::reload::reload(&core, &source, env).await;
            }
        }
    }
    core.shutdown.trigger();
    // Listeners stop accepting at once; their connections get the grace period.
    let grace = core.shutdown.grace + Duration::from_secs(1);
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    let drained = core.shutdown.drain().await;
    let detail = if drained {
        "stopped".to_string()
    } else {
        format!(
            "stopped; work still running after the {}s grace period was cut off",
            core.shutdown.grace.as_secs()
        )
    };
    // Interrupted uploads record themselves from their drop guards on tracked tasks: stop the
    // listeners, then wait for those records before the log closes.
    core.shutdown.stop.cancel();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    core.shutdown.settle(|| core.user_sessions.total()).await;
    core.record_refusal_summary(REFUSAL_SUMMARY_SECS).await;
    events_stop.cancel();
    if let Some(ev) = &events
        && tokio::time::timeout(Duration::from_secs(5), ev.stopped())
            .await
            .is_err()
    {
        tracing::warn!(
            "event delivery did not stop within 5 s; undelivered events are sent at the next start"
        );
    }
    record_config(&core.audit, Outcome::Ok, detail).await?;
    // The last shipment carries everything up to the stop record.
    ship_stop.cancel();
    if let Some(h) = shipper
        && tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .is_err()
    {
        tracing::warn!(
            "the last audit shipment did not finish within 30 s; it ships at the next start"
        );
    }
    core.audit.close().await?;
    core.shutdown.exit.cancel();
    tracing::info!("stopped");
    Ok(())
}

/// Builds the backend `name` of `[backends]` (not necessarily mounted).
pub fn named_backend(
    cfg: &ValidConfig,
    name: &str,
) -> Result<Arc<dyn crate::vfs::backend::Backend>, ServeError> {
    let spec = cfg.backends.get(name).ok_or_else(|| ServeError::Backend {
        name: name.to_string(),
        source: StorageError::not_found("not configured"),
    })?;
    adapters::storage::build(name, spec, Some(cfg.config.gateway.state_dir.as_path())).map_err(
        |source| ServeError::Backend {
            name: name.to_string(),
            source,
        },
    )
}

/// The signing key file of `[audit.ship]`.
pub fn ship_key_path(cfg: &ValidConfig, ship: &crate::config::ShipConfig) -> std::path::PathBuf {
    ship.signing_key.clone().unwrap_or_else(|| {
        cfg.config
            .gateway
            .state_dir
            .join(crate::ship::DEFAULT_KEY_FILE)
    })
}

/// Starts audit shipping when `[audit.ship]` is configured (creating the signing key on the
/// first start).
fn start_shipper(
    core: &Arc<Core>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, ServeError> {
    let cfg = &core.config;
    let Some(ship) = &cfg.config.audit.ship else {
        return Ok(None);
    };
    let key_path = ship_key_path(cfg, ship);
    let key = crate::ship::checkpoint::load_or_create(&key_path)
        .map_err(|e| ServeError::Listener(format!("audit.ship.signing_key: {e}")))?;
    tracing::info!(
        key = %key_path.display(),
        public = %crate::ship::checkpoint::public_text(&key.verifying_key()),
        "audit shipping on; checkpoints are signed with this key"
    );
    // The backend built for the console's shipped-log view, or built now if that failed.
    let backend = match &core.shipped {
        Some(log) => log.backend(),
        None => named_backend(cfg, &ship.backend)?,
    };
    let shipper = crate::ship::Shipper {
        backend,
        backend_name: ship.backend.clone(),
        layout: crate::ship::Layout::new(&ship.prefix),
        node: node_name(cfg),
        interval: Duration::from_secs(ship.interval_secs),
        key,
        state_dir: cfg.config.gateway.state_dir.clone(),
        audit: core.audit.clone(),
    };
    Ok(Some(tokio::spawn(shipper.run(stop))))
}

/// SIGHUP (config reload), if the platform has it.
fn reload_signal() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; config reload is off");
            None
        }
    }
}

async fn recv_hangup(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Starts webhook delivery when `[[events]]` are configured.
fn start_events(
    core: &Arc<Core>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Option<crate::events::Events>, ServeError> {
    let sinks = core.config.events.clone();
    if sinks.is_empty() {
        return Ok(None);
    }
    let transport = adapters::webhook::Webhooks::new().map_err(crate::events::EventsError)?;
    let n = sinks.len();
    let ev = crate::events::Events::start(
        sinks,
        &core.config.config.gateway.state_dir,
        core.audit.clone(),
        Arc::new(transport),
        stop,
    )?;
    tracing::info!(sinks = n, "event delivery started");
    Ok(Some(ev))
}

fn log_listening(what: &str, addr: SocketAddr, extra: &str) {
    tracing::info!("{what} listening on {addr}{extra}");
}

async fn start_listeners(
    core: &Arc<Core>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<JoinSet<()>, ServeError> {
    let mut tasks = JoinSet::new();
    let l = core.config.listeners.clone();
    let err = |e: &dyn std::fmt::Display| ServeError::Listener(e.to_string());
    if let Some(addr) = l.http {
        let http = adapters::http::bind(core.clone(), addr, metrics.clone())
            .await
            .map_err(|e| err(&e))?;
        let bound = http.local_addr().map_err(|e| err(&e))?;
        log_listening(if http.is_tls() { "https" } else { "http" }, bound, "");
        tasks.spawn(http.run());
    }
    if let Some(addr) = l.sftp {
        let sftp = adapters::sftp::bind(core.clone(), addr)
            .await
            .map_err(|e| err(&e))?;
        log_listening("sftp", sftp.local_addr().map_err(|e| err(&e))?, "");
        tasks.spawn(sftp.run());
    }
    if let Some(addr) = l.ftp {
        let ftp = adapters::ftp::bind(core.clone(), addr)
            .await
            .map_err(|e| err(&e))?;
        let tls = core.config.config.ftp.as_ref().and_then(|f| f.tls.as_ref());
        let extra = match tls {
            Some(t) if t.required => " (explicit FTPS required)",
            Some(_) => " (explicit FTPS available)",
            None => "",
        };
        log_listening("ftp", ftp.local_addr(), extra);
        tasks.spawn(ftp.run());
    }
    if let Some(addr) = l.metrics {
        let m = adapters::http::bind_metrics(core.clone(), addr, metrics)
            .await
            .map_err(|e| err(&e))?;
        log_listening(
            "metrics",
            m.local_addr().map_err(|e| err(&e))?,
            " (/metrics, no auth)",
        );
        tasks.spawn(m.run());
    }
    Ok(tasks)
}
