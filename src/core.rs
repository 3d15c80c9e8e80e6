//! `Core`: everything a front door needs, built once from the validated config and shared as an
//! `Arc`. Also the one login path, so every protocol audits and counts logins the same way.

use std::net::SocketAddr;

use crate::audit::{AuditAction, AuditEvent, AuditLog, Outcome};
use crate::config::ValidConfig;
use crate::identity::ban::{BanStarted, addr_key, addr_label};
use crate::identity::{AuthError, Credentials, Identity, Protocol, Refusal};
use crate::limits::UserLimiter;
use crate::refusals::{RefusalLog, capped_name};
use crate::route::RouteTable;
use crate::session::{Session, new_id};
use crate::shutdown::Shutdown;
use crate::telemetry;
use crate::vfs::Vfs;

/// The shared core.
pub struct Core {
    /// The configuration it was built from.
    pub config: ValidConfig,
    /// Users, keys, bans: swapped whole by a config reload (`reload.rs`).
    pub identity: arc_swap::ArcSwap<Identity>,
    /// The sha256 of the config in effect (`/healthz`).
    pub config_sha256: std::sync::Mutex<String>,
    /// The virtual filesystem.
    pub vfs: Vfs,
    /// The audit log.
    pub audit: AuditLog,
    /// Proxy routes.
    pub routes: arc_swap::ArcSwap<RouteTable>,
    /// Shutdown state.
    pub shutdown: Shutdown,
    /// Which refused logins get a record of their own.
    pub refusals: RefusalLog,
    /// Open SFTP and FTP sessions per user.
    pub user_sessions: UserLimiter,
    /// Who is connected now (SFTP and FTP sessions), with their transfers in flight.
    pub live: crate::live::LiveSessions,
    /// Operator console sessions.
    pub console: crate::console::ConsoleSessions,
    /// The audit index (None when it could not be opened: queries scan the files then).
    pub index: Option<crate::audit::index::AuditIndex>,
    /// The cluster's shared store (`[cluster] redis`): limits and bans every node shares.
    pub cluster: Option<std::sync::Arc<crate::cluster::SharedStore>>,
    /// The listeners' TLS certificates, re-read on reload.
    pub certs: crate::certs::Certs,
    /// The shipped audit log (`[audit.ship]`), for the console.
    pub shipped: Option<crate::ship::read::ShippedLog>,
}

// By hand: the config holds password hashes and storage secrets, and protocol libraries put
// their handlers' Debug output into log spans.
impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").finish_non_exhaustive()
    }
}

/// A refused login, with whether recording it failed (then the caller must fail closed too).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Refused; the detail is for logs and audit only.
    #[error("login refused: {0}")]
    Refused(AuthError),
    /// The audit log could not record the login.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// Why a console login was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleRefusal {
    /// The login itself was refused (or could not be recorded).
    #[error(transparent)]
    Login(LoginError),
    /// The user is not an operator.
    #[error("operators only")]
    NotOperator,
}

impl Core {
    /// A listener's connection admission for `door`: `max_connections` and
    /// `max_connections_per_ip` on this node, and the per-address count over the cluster in
    /// the multi-node mode.
    pub fn admission(&self, door: &'static str) -> crate::limits::Admission {
        let limits = &self.config.config.limits;
        crate::limits::Admission::new(limits.max_connections, limits.max_connections_per_ip)
            .shared(self.cluster.clone(), door)
    }

    /// The index, once it holds every record written so far (waiting up to 2 s for it to
    /// catch up); `None` when there is none or it is behind: then scan the files.
    pub async fn current_index(&self) -> Option<&crate::audit::index::AuditIndex> {
        let ix = self.index.as_ref()?;
        let want = *self.audit.written().borrow();
        match ix.wait_for(want, std::time::Duration::from_secs(2)).await {
            Ok(()) => Some(ix),
            Err(e) => {
                tracing::warn!(error = %e, "audit index behind; scanning the files");
                None
            }
        }
    }

    /// Logs in through the identity store and records the outcome. `interactive` logins (SFTP
    /// and FTP sessions) take one of the user's `max_sessions_per_user` slots and are recorded
    /// when they succeed; HTTP authenticates every request and records only refusals, since each
    /// operation it then performs is recorded with the user.
    pub async fn login(
        &self,
        creds: &Credentials<'_>,
        protocol: Protocol,
        remote: SocketAddr,
        interactive: bool,
    ) -> Result<Session, LoginError> {
        let record_success = interactive;
        let identity = self.identity.load_full();
        let mut result = identity.login(creds, protocol, remote.ip()).await;
        let mut slot = None;
        if interactive && let Ok((principal, _)) = &result {
            match self.session_slot(principal.name()).await {
                Ok(s) => slot = Some(std::sync::Arc::new(s)),
                Err(e) => result = Err(e.into()),
            }
        }
        let outcome = if result.is_ok() { "ok" } else { "denied" };
        metrics::counter!(telemetry::LOGINS, "protocol" => protocol.as_str(), "outcome" => outcome)
            .increment(1);
        match result {
            Ok((principal, key_name)) => {
                let mut session = Session::new(protocol, remote, principal);
                session.slot = slot;
                if interactive {
                    session.live = Some(self.live.register(
                        &session.id,
                        protocol,
                        session.principal.name(),
                        remote,
                    ));
                }
                if record_success {
                    let mut ev = AuditEvent::for_session(&session, AuditAction::Login, Outcome::Ok);
                    ev.detail = Some(login_method(creds, key_name.as_deref()));
                    self.audit.record(ev).await?;
                }
                Ok(session)
            }
            Err(Refusal { error, started }) => {
                let addr = addr_label(addr_key(remote.ip()));
                let user = creds.user_tried().map(|u| capped_name(u).0);
                if error.is_throttle() {
                    tracing::debug!(%remote, %protocol, ?user, reason = %error, "login refused");
                } else {
                    tracing::info!(%remote, %protocol, ?user, reason = %error, "login refused");
                }
                if self.refusals.admit(error, !started.is_empty(), &addr) {
                    self.audit
                        .record(refusal_event(creds, protocol, remote, error, &started))
                        .await?;
                }
                Err(LoginError::Refused(error))
            }
        }
    }

    /// One of `user`'s `max_sessions_per_user` slots: on this node, and over the cluster when
    /// it shares a store (whose `on_store_error` decides while it is down).
    async fn session_slot(&self, user: &str) -> Result<crate::limits::SessionSlot, AuthError> {
        let local = self
            .user_sessions
            .try_acquire(user.to_string())
            .ok_or(AuthError::TooManySessions)?;
        let max = self.config.config.limits.max_sessions_per_user;
        let shared = match &self.cluster {
            Some(store) if max > 0 => match store.user_session(user, max).await {
                Ok(Some(lease)) => Some(lease),
                Ok(None) => return Err(AuthError::TooManySessions),
                Err(_) => match store.on_error() {
                    crate::config::StoreErrorMode::Closed => {
                        return Err(AuthError::StoreUnavailable);
                    }
                    _ => None,
                },
            },
            _ => None,
        };
        Ok(crate::limits::SessionSlot::new(local, shared))
    }

    /// Writes the summary of refused logins counted but not recorded since the last call.
    pub async fn record_refusal_summary(&self, interval_secs: u64) {
        if let Some(detail) = self.refusals.take_summary(interval_secs) {
            let ev = AuditEvent::new(AuditAction::Login, Outcome::Denied).detail(detail);
            if let Err(e) = self.audit.record(ev).await {
                tracing::error!(error = %e, "could not record the refused-login summary");
            }
        }
    }

    /// A login to the operator console: the one login path, then the operator role. With
    /// `record` (the console's login form) the outcome is recorded, `login ok` with detail
    /// `console` or `login denied` with `console: not an operator`; HTTP Basic on each console
    /// request records only what every HTTP login records.
    pub async fn console_login(
        &self,
        creds: &Credentials<'_>,
        remote: SocketAddr,
        record: bool,
    ) -> Result<Session, ConsoleRefusal> {
        let session = self
            .login(creds, Protocol::Http, remote, false)
            .await
            .map_err(ConsoleRefusal::Login)?;
        let operator = session.principal.is_operator();
        if record {
            let outcome = if operator {
                Outcome::Ok
            } else {
                Outcome::Denied
            };
            let mut ev = AuditEvent::for_session(&session, AuditAction::Login, outcome);
            ev.detail = Some(
                if operator {
                    "console"
                } else {
                    "console: not an operator"
                }
                .into(),
            );
            let written = self.audit.record(ev).await;
            if operator {
                written.map_err(|e| ConsoleRefusal::Login(LoginError::Audit(e)))?;
            }
        }
        if operator {
            Ok(session)
        } else {
            Err(ConsoleRefusal::NotOperator)
        }
    }

    /// Records the end of a session; it leaves the live sessions' list first.
    pub async fn logout(&self, session: &Session, detail: Option<String>) {
        if let Some(live) = &session.live {
            live.close();
        }
        let mut ev = AuditEvent::for_session(session, AuditAction::Logout, Outcome::Ok);
        let by = session.live.as_ref().and_then(|l| l.ended_by());
        ev.detail = match (detail, by) {
            (Some(d), Some(op)) => Some(format!("{d}; ended by operator {op}")),
            (None, Some(op)) => Some(format!("ended by operator {op}")),
            (d, None) => d,
        };
        if let Err(e) = self.audit.record(ev).await {
            tracing::error!(error = %e, "could not record a logout");
        }
    }
}

/// The record of one refused login: the name tried (capped), why, and any ban it started.
fn refusal_event(
    creds: &Credentials<'_>,
    protocol: Protocol,
    remote: SocketAddr,
    error: AuthError,
    started: &[BanStarted],
) -> AuditEvent {
    let mut ev = AuditEvent::new(AuditAction::Login, Outcome::Denied);
    ev.protocol = Some(protocol);
    ev.session = Some(new_id());
    ev.remote = Some(remote);
    let mut detail = format!("{}: {error}", login_method(creds, None));
    if let Some(tried) = creds.user_tried() {
        let (name, cut) = capped_name(tried);
        if let Some(len) = cut {
            detail.push_str(&format!("; user name truncated from {len} bytes"));
        }
        ev.user = Some(name);
    }
    for b in started {
        match b {
            BanStarted::Address(a, d) => detail.push_str(&format!(
                "; ban started: address {} for {} s",
                addr_label(*a),
                d.as_secs()
            )),
            BanStarted::Account(u, d) => detail.push_str(&format!(
                "; account {u} password logins locked for {} s",
                d.as_secs()
            )),
        }
    }
    ev.detail = Some(detail);
    ev
}

fn login_method(creds: &Credentials<'_>, key_name: Option<&str>) -> String {
    match creds {
        Credentials::Password { .. } => "password".into(),
        Credentials::PublicKey { .. } => "publickey".into(),
        Credentials::ApiKey(_) => match key_name {
            Some(n) => format!("api key {n}"),
            None => "api key".into(),
        },
        Credentials::Jwt(_) => "jwt".into(),
    }
}
