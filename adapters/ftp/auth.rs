//! FTP logins through the core: libunftp's `Authenticator` calls the core's one login path (bans,
//! `allowed_ips`, `protocols`, audit); the `UserDetailProvider` hands the resulting session to the
//! connection. The principal libunftp carries between the two is the session id, so concurrent
//! logins of the same user can never swap sessions.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};

use crate::core::{Core, LoginError};
use crate::identity::{self, Protocol};
use crate::secret::Secret;
use crate::session::Session;

/// The authenticator error that the vendored libunftp answers with `421` (try later) instead of
/// `530` (see vendor/README.md).
const TRY_LATER: &str = libunftp::auth::TRY_LATER;

/// Sessions between authentication and the user-detail lookup (milliseconds apart).
const PENDING_TTL: Duration = Duration::from_secs(60);

/// A logged-in FTP user: the core session.
#[derive(Clone)]
pub struct FtpUser {
    pub(super) session: Session,
}

impl fmt::Debug for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FtpUser({})", self.session.principal.name())
    }
}

impl fmt::Display for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.session.principal.name())
    }
}

impl UserDetail for FtpUser {
    /// An operator ending the session (live sessions): libunftp answers `421` and closes.
    fn session_end(
        &self,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>> {
        let token = self.session.live.as_ref()?.end_token();
        Some(Box::pin(async move { token.cancelled().await }))
    }
}

type Pending = Arc<Mutex<HashMap<String, (Session, Instant)>>>;

/// `Authenticator` over the core identity.
pub(super) struct FtpAuth {
    pub core: Arc<Core>,
    pub pending: Pending,
}

// By hand: libunftp logs its builder (and so this) with Debug.
impl fmt::Debug for FtpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FtpAuth")
    }
}

#[async_trait]
impl Authenticator for FtpAuth {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let Some(password) = creds.password.as_deref() else {
            return Err(AuthenticationError::BadPassword);
        };
        let remote = SocketAddr::new(creds.source_ip, creds.source_port);
        let c = identity::Credentials::Password {
            user: username,
            password: Secret::new(password),
        };
        match self.core.login(&c, Protocol::Ftp, remote, true).await {
            Ok(session) => {
                let id = session.id.clone();
                let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                map.retain(|_, (_, at)| at.elapsed() < PENDING_TTL);
                map.insert(id.clone(), (session, Instant::now()));
                Ok(Principal { username: id })
            }
            Err(LoginError::Refused(
                identity::AuthError::Banned | identity::AuthError::IpNotAllowed,
            )) => Err(AuthenticationError::IpDisallowed),
            Err(LoginError::Refused(
                identity::AuthError::Busy
                | identity::AuthError::TooManyAttempts
                | identity::AuthError::StoreUnavailable,
            )) => Err(AuthenticationError::new(TRY_LATER)),
            Err(LoginError::Refused(_)) => Err(AuthenticationError::BadPassword),
            Err(LoginError::Audit(e)) => Err(AuthenticationError::new(format!(
                "audit log unavailable: {e}"
            ))),
        }
    }

    fn name(&self) -> &str {
        "gatehouse"
    }
}

/// Turns the session id libunftp carries back into the session.
pub(super) struct FtpUsers {
    pub pending: Pending,
}

impl fmt::Debug for FtpUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FtpUsers")
    }
}

#[async_trait]
impl UserDetailProvider for FtpUsers {
    type User = FtpUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<FtpUser, UserDetailError> {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match map.remove(&principal.username) {
            Some((session, _)) => Ok(FtpUser { session }),
            None => Err(UserDetailError::Generic("session expired".into())),
        }
    }
}
