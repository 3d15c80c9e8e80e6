//! Connections to an upstream SFTP server: russh client sessions with the upstream's host key
//! pinned (a mismatch refuses to connect and says which key was offered), keep-alive, and a
//! small pool that reconnects a session the upstream closed.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};
use russh::{Preferred, cipher};
use russh_sftp::client::RawSftpSession;
use tokio::sync::Mutex;

use crate::secret::Secret;
use crate::vfs::backend::{StorageError, StorageErrorKind};

/// Ciphers offered to the upstream, in order of preference.
const UPSTREAM_CIPHERS: &[cipher::Name] = &[
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_128_CTR,
];

/// How to reach and log in to the upstream.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub address: String,
    pub user: String,
    pub private_key: Option<std::path::PathBuf>,
    pub password: Option<Secret<String>>,
    /// The pinned host key, `ssh-ed25519 AAAA...`.
    pub host_key: String,
    pub max_sessions: usize,
}

/// One SSH connection with its SFTP channel.
pub(crate) struct Conn {
    pub sftp: Arc<RawSftpSession>,
    /// `posix-rename@openssh.com`: a rename that replaces atomically.
    pub posix_rename: bool,
    /// `copy-data`: server-side copies (resume keeps the prefix without moving it).
    pub copy_data: bool,
    ssh: russh::client::Handle<Pinned>,
}

impl Conn {
    fn alive(&self) -> bool {
        !self.ssh.is_closed()
    }
}

/// Accepts exactly the pinned host key.
pub(crate) struct Pinned {
    want: PublicKey,
    /// What the server offered, when it was not the pinned key.
    mismatch: Arc<std::sync::Mutex<Option<String>>>,
}

impl russh::client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = offered else {
            *self.mismatch.lock().unwrap_or_else(|p| p.into_inner()) =
                Some("a certificate instead of the pinned key".into());
            return Ok(false);
        };
        // Public keys are public: equality of their encoding is the whole check.
        if key.key_data() == self.want.key_data() {
            return Ok(true);
        }
        *self.mismatch.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
            "{} {}",
            key.algorithm(),
            key.fingerprint(HashAlg::Sha256)
        ));
        Ok(false)
    }
}

fn failed(kind: StorageErrorKind, what: impl std::fmt::Display) -> StorageError {
    StorageError::new(kind, format!("upstream SFTP: {what}"))
}

/// Opens one connection: TCP, SSH with the pinned key, authentication, the sftp subsystem.
async fn connect(up: &Upstream) -> Result<Conn, StorageError> {
    let want = PublicKey::from_openssh(&up.host_key)
        .map_err(|e| failed(StorageErrorKind::Permanent, format!("host_key: {e}")))?;
    let mismatch = Arc::new(std::sync::Mutex::new(None));
    let handler = Pinned {
        want: want.clone(),
        mismatch: mismatch.clone(),
    };
    let config = Arc::new(russh::client::Config {
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        inactivity_timeout: None,
        // Pipelined READ/WRITE requests are small writes: with Nagle on, they wait for the
        // upstream's delayed ACK (seen as a standing Send-Q, and reads at a fifth of direct).
        nodelay: true,
        // Room for the pipelined reads' replies (32 x 32 KiB) without waiting on window adjusts.
        window_size: 8 * 1024 * 1024,
        channel_buffer_size: 1024,
        // AES-GCM first: hardware-accelerated, about half the CPU per byte of russh's default
        // first choice (chacha20-poly1305) on x86_64 with AES-NI; the upstream picks from this
        // list in our order.
        preferred: Preferred {
            cipher: Cow::Borrowed(UPSTREAM_CIPHERS),
            ..Preferred::DEFAULT
        },
        ..Default::default()
    });
    let connecting = russh::client::connect(config, up.address.as_str(), handler);
    let mut ssh = match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Err(_) => {
            return Err(failed(
                StorageErrorKind::Transient,
                format!("{}: connect timed out", up.address),
            ));
        }
        Ok(Err(e)) => {
            let offered = mismatch.lock().unwrap_or_else(|p| p.into_inner()).take();
            return Err(match offered {
                Some(o) => failed(
                    StorageErrorKind::Permanent,
                    format!(
                        "{}: host key mismatch: pinned {} {}, the server offered {o}; refusing to connect",
                        up.address,
                        want.algorithm(),
                        want.fingerprint(HashAlg::Sha256)
                    ),
                ),
                None => failed(StorageErrorKind::Transient, format!("{}: {e}", up.address)),
            });
        }
        Ok(Ok(h)) => h,
    };
    let auth = if let Some(path) = &up.private_key {
        let key = russh::keys::load_secret_key(path, None).map_err(|e| {
            failed(
                StorageErrorKind::Permanent,
                format!("private_key {}: {e}", path.display()),
            )
        })?;
        let hash = ssh
            .best_supported_rsa_hash()
            .await
            .map_err(|e| failed(StorageErrorKind::Transient, e))?
            .flatten();
        ssh.authenticate_publickey(&up.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
    } else {
        let pw = up
            .password
            .as_ref()
            .map(|p| p.expose().clone())
            .unwrap_or_default();
        ssh.authenticate_password(&up.user, pw).await
    };
    match auth {
        Ok(r) if r.success() => {}
        Ok(_) => {
            return Err(failed(
                StorageErrorKind::Permanent,
                format!("{}: authentication as {:?} refused", up.address, up.user),
            ));
        }
        Err(e) => return Err(failed(StorageErrorKind::Transient, e)),
    }
    let channel = ssh
        .channel_open_session()
        .await
        .map_err(|e| failed(StorageErrorKind::Transient, e))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| failed(StorageErrorKind::Transient, e))?;
    let sftp = RawSftpSession::new(channel.into_stream());
    sftp.set_timeout(30);
    let version = sftp
        .init()
        .await
        .map_err(|e| failed(StorageErrorKind::Transient, e))?;
    let posix_rename = version
        .extensions
        .get("posix-rename@openssh.com")
        .is_some_and(|v| v == "1");
    let copy_data = version
        .extensions
        .contains_key(super::sftp_resume::COPY_DATA);
    Ok(Conn {
        sftp: Arc::new(sftp),
        posix_rename,
        copy_data,
        ssh,
    })
}

/// Up to `max_sessions` connections, used in turn; each is opened on first use and again after
/// the upstream closed it.
pub(crate) struct Pool {
    up: Upstream,
    slots: Vec<Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
}

impl Pool {
    pub(crate) fn new(up: Upstream) -> Self {
        let n = up.max_sessions.max(1);
        Self {
            slots: (0..n).map(|_| Mutex::new(None)).collect(),
            up,
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn address(&self) -> &str {
        &self.up.address
    }

    /// A live connection.
    pub(crate) async fn get(&self) -> Result<Arc<Conn>, StorageError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[i].lock().await;
        if let Some(c) = slot.as_ref()
            && c.alive()
        {
            return Ok(c.clone());
        }
        *slot = None;
        let c = Arc::new(connect(&self.up).await?);
        *slot = Some(c.clone());
        Ok(c)
    }
}
