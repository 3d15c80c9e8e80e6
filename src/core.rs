//! `Core`: everything a front door needs, built once from the validated config and shared as an
//! `Arc`. Also the one login path, so every protocol audits and counts logins the same way.

use std::net::SocketAddr;

use crate::audit::{AuditAction, AuditEvent, AuditLog, Outcome};
use crate::config::ValidConfig;
use crate::identity::{AuthError, Credentials, Identity, Protocol};
use crate::route::RouteTable;
use crate::session::{Session, new_id};
use crate::shutdown::Shutdown;
use crate::telemetry;
use crate::vfs::Vfs;

/// The shared core.
pub struct Core {
    /// The configuration it was built from.
    pub config: ValidConfig,
    /// Users, keys, bans.
    pub identity: Identity,
    /// The virtual filesystem.
    pub vfs: Vfs,
    /// The audit log.
    pub audit: AuditLog,
    /// Proxy routes.
    pub routes: RouteTable,
    /// Shutdown state.
    pub shutdown: Shutdown,
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

impl Core {
    /// Logs in through the identity store and records the outcome. Successful logins are
    /// recorded when `record_success` (SFTP/FTP sessions); HTTP authenticates every request and
    /// records only refusals, since each operation it then performs is recorded with the user.
    pub async fn login(
        &self,
        creds: &Credentials<'_>,
        protocol: Protocol,
        remote: SocketAddr,
        record_success: bool,
    ) -> Result<Session, LoginError> {
        let result = self.identity.login(creds, protocol, remote.ip()).await;
        let outcome = if result.is_ok() { "ok" } else { "denied" };
        metrics::counter!(telemetry::LOGINS, "protocol" => protocol.as_str(), "outcome" => outcome)
            .increment(1);
        match result {
            Ok((principal, key_name)) => {
                let session = Session::new(protocol, remote, principal);
                if record_success {
                    let mut ev = AuditEvent::for_session(&session, AuditAction::Login, Outcome::Ok);
                    ev.detail = Some(login_method(creds, key_name.as_deref()));
                    self.audit.record(ev).await?;
                }
                Ok(session)
            }
            Err(e) => {
                let mut ev = AuditEvent::new(AuditAction::Login, Outcome::Denied);
                ev.protocol = Some(protocol);
                ev.session = Some(new_id());
                ev.user = creds.user_tried().map(str::to_string);
                ev.remote = Some(remote);
                ev.detail = Some(format!("{}: {e}", login_method(creds, None)));
                self.audit.record(ev).await?;
                tracing::info!(%remote, %protocol, user = ?creds.user_tried(), reason = %e, "login refused");
                Err(LoginError::Refused(e))
            }
        }
    }

    /// Records the end of a session.
    pub async fn logout(&self, session: &Session, detail: Option<String>) {
        let mut ev = AuditEvent::for_session(session, AuditAction::Logout, Outcome::Ok);
        ev.detail = detail;
        if let Err(e) = self.audit.record(ev).await {
            tracing::error!(error = %e, "could not record a logout");
        }
    }
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
