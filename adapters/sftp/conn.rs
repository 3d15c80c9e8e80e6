//! One SSH connection: authentication through the core's login path (password and public key;
//! `none` and keyboard-interactive refused), session channels, and the `sftp` subsystem. Shell,
//! exec and forwarding requests are refused. On shutdown an idle connection is closed at once; one
//! with files open gets the grace period first.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::server::{
    Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session as SshSession, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::core::{Core, LoginError};
use crate::identity::{Credentials, Protocol};
use crate::secret::Secret;
use crate::session::Session;

/// Most session channels one connection may have open at once, SFTP subsystems included.
const MAX_CHANNELS: usize = 10;

/// Files open on a connection, so shutdown knows whether a transfer is in flight.
#[derive(Debug, Default)]
pub(super) struct Live {
    open: std::sync::atomic::AtomicUsize,
    changed: Notify,
}

impl Live {
    pub fn opened(&self) {
        self.open.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    pub fn closed(&self) {
        self.open.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    fn open(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::Acquire)
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ConnError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
}

type Slot = Arc<Mutex<Option<Session>>>;

fn take(slot: &Slot) -> Option<Session> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

fn get(slot: &Slot) -> Option<Session> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

pub(super) struct SshConn {
    core: Arc<Core>,
    remote: SocketAddr,
    session: Slot,
    /// Channels opened and not yet given to a subsystem.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Every session channel open now (including those serving SFTP).
    open_channels: HashSet<ChannelId>,
    live: Arc<Live>,
}

impl SshConn {
    async fn login(&mut self, creds: Credentials<'_>) -> Result<Auth, ConnError> {
        match self
            .core
            .login(&creds, Protocol::Sftp, self.remote, true)
            .await
        {
            Ok(s) => {
                tracing::info!(remote = %self.remote, user = %s.principal.name(), session = %s.id, "sftp login");
                *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
                Ok(Auth::Accept)
            }
            Err(LoginError::Refused(_)) => Ok(Auth::reject()),
            Err(LoginError::Audit(e)) => {
                tracing::error!(error = %e, "login refused: the audit log cannot record it");
                Ok(Auth::reject())
            }
        }
    }
}

impl russh::server::Handler for SshConn {
    type Error = ConnError;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.login(Credentials::Password {
            user,
            password: Secret::new(password),
        })
        .await
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // A probe, not a login attempt: clients offer every key they hold.
        let ok = offer
            .public_key
            .to_bytes()
            .is_ok_and(|blob| self.core.identity.load().key_acceptable(user, &blob));
        Ok(if ok { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Ok(blob) = key.public_key.to_bytes() else {
            return Ok(Auth::reject());
        };
        self.login(Credentials::PublicKey { user, blob: &blob })
            .await
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if self.open_channels.len() >= MAX_CHANNELS {
            tracing::warn!(remote = %self.remote, "sftp channel refused: {MAX_CHANNELS} sessions already open on this connection");
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        reply.accept().await;
        self.open_channels.insert(channel.id());
        self.channels.insert(channel.id(), channel);
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        name: &str,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let user = get(&self.session);
        match (name, self.channels.remove(&id), user) {
            ("sftp", Some(channel), Some(user)) => {
                session.channel_success(id)?;
                let core = self.core.clone();
                let live = self.live.clone();
                self.core.shutdown.tasks.spawn(super::pump::run(
                    core,
                    user,
                    channel.into_stream(),
                    live,
                ));
            }
            _ => {
                tracing::debug!(remote = %self.remote, subsystem = name, "subsystem refused");
                session.channel_failure(id)?;
            }
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        id: ChannelId,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        session.channel_failure(id)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        id: ChannelId,
        _data: &[u8],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        // Legacy scp (`scp -O`) runs `scp -t` here; only the SFTP subsystem is served.
        session.channel_failure(id)?;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        id: ChannelId,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&id);
        self.open_channels.remove(&id);
        Ok(())
    }
}

/// Runs one connection to its end, then records the logout.
pub(super) async fn serve(
    core: Arc<Core>,
    config: Arc<russh::server::Config>,
    stream: crate::adapters::proxy_protocol::Prefixed<TcpStream>,
    remote: SocketAddr,
) {
    let slot: Slot = Arc::default();
    let live = Arc::new(Live::default());
    let handler = SshConn {
        core: core.clone(),
        remote,
        session: slot.clone(),
        channels: HashMap::new(),
        open_channels: HashSet::new(),
        live: live.clone(),
    };
    // The login must complete in time, the version exchange and key exchange included: a client
    // that connects and stalls (or keeps failing slowly) does not hold a slot for the idle timeout.
    let login_deadline = tokio::time::Instant::now()
        + Duration::from_secs(core.config.config.limits.login_timeout_secs.max(1));
    let cut = tokio_util::sync::CancellationToken::new();
    let stream = super::kill::Killable::new(stream, cut.clone());
    // Whatever ends this function ends the connection, even if russh's task would linger.
    let _cut_on_return = cut.clone().drop_guard();
    let started = tokio::time::timeout_at(
        login_deadline,
        russh::server::run_stream(config, stream, handler),
    )
    .await;
    let running = match started {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "ssh handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "ssh handshake timed out");
            return;
        }
    };
    let handle = running.handle();
    tokio::pin!(running);
    let token = core.shutdown.token.clone();
    let login_slot = slot.clone();
    let login_timed_out = async move {
        tokio::time::sleep_until(login_deadline).await;
        if get(&login_slot).is_none() {
            return;
        }
        std::future::pending::<()>().await;
    };
    // An operator ending the session (live sessions): its entry exists once logged in.
    let end_slot = slot.clone();
    let ended_by_operator = async move {
        let end = loop {
            if let Some(t) = get(&end_slot).and_then(|s| s.live.as_ref().map(|l| l.end_token())) {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        end.cancelled().await;
    };
    let ended = tokio::select! {
        r = &mut running => Some(r),
        _ = token.cancelled() => None,
        _ = ended_by_operator => {
            tracing::info!(%remote, "ssh session ended by an operator");
            let _ = handle
                .disconnect(Disconnect::ByApplication, "session ended by an operator".into(), "en".into())
                .await;
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut running).await;
            if let Some(s) = take(&slot) {
                core.logout(&s, None).await;
            }
            return;
        }
        _ = login_timed_out => {
            tracing::debug!(%remote, "ssh login timed out");
            let _ = handle
                .disconnect(Disconnect::ByApplication, "login timed out".into(), "en".into())
                .await;
            return;
        }
    };
    let ended = match ended {
        Some(r) => Some(r),
        None => {
            // Shutdown: transfers in flight may finish within the grace period.
            let deadline = tokio::time::Instant::now() + core.shutdown.grace;
            let mut ended = None;
            while live.open() > 0 {
                tokio::select! {
                    r = &mut running => { ended = Some(r); break; }
                    _ = live.changed.notified() => {}
                    // A close between the check and the wait would be missed; look again soon.
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            if ended.is_none() {
                let _ = handle
                    .disconnect(
                        Disconnect::ByApplication,
                        "server shutting down".into(),
                        "en".into(),
                    )
                    .await;
                ended = tokio::time::timeout(Duration::from_secs(2), &mut running)
                    .await
                    .ok();
            }
            ended
        }
    };
    if let Some(Err(e)) = ended {
        tracing::debug!(%remote, error = %e, "ssh connection ended with an error");
    }
    if let Some(s) = take(&slot) {
        core.logout(&s, None).await;
    }
}
