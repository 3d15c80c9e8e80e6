//! The SFTP front door on russh: host keys, the SSH algorithms OpenSSH clients negotiate, the
//! accept loop (connection cap, bans before any crypto, graceful shutdown). Authentication is
//! `conn.rs`, the SFTP protocol `session.rs`, error mapping `status.rs`.

mod attrs;
mod conn;
mod extended;
mod kill;
mod pump;
mod session;
mod status;

use std::borrow::Cow;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey};
use russh::{MethodKind, MethodSet, Preferred, cipher, kex, mac};
use tokio::net::TcpListener;

use crate::adapters::proxy_protocol;
use crate::core::Core;
use crate::limits::{Admission, Admitted};
use crate::telemetry;

/// Why the SFTP listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    /// Binding failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// A host key could not be read or created.
    #[error("host key {path}: {msg}")]
    HostKey {
        /// File.
        path: String,
        /// What went wrong.
        msg: String,
    },
}

/// Names from the config (validated by `check` against the lists in `config`) as russh's
/// algorithm names; the strict-kex and ext-info markers are always added to key exchanges.
fn algorithms(
    cfg: Option<&crate::config::SftpConfig>,
) -> (Vec<kex::Name>, Vec<cipher::Name>, Vec<mac::Name>) {
    use crate::config::{SSH_DEFAULT_CIPHERS, SSH_DEFAULT_KEX, SSH_DEFAULT_MACS};
    let pick = |list: Option<&Vec<String>>, default: &[&str]| -> Vec<String> {
        list.cloned()
            .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
    };
    let mut kexes: Vec<kex::Name> = pick(cfg.and_then(|c| c.kex.as_ref()), SSH_DEFAULT_KEX)
        .iter()
        .filter_map(|n| kex::Name::try_from(n.as_str()).ok())
        .collect();
    kexes.push(kex::EXTENSION_SUPPORT_AS_SERVER);
    kexes.push(kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER);
    let ciphers = pick(cfg.and_then(|c| c.ciphers.as_ref()), SSH_DEFAULT_CIPHERS)
        .iter()
        .filter_map(|n| cipher::Name::try_from(n.as_str()).ok())
        .collect();
    let macs = pick(cfg.and_then(|c| c.macs.as_ref()), SSH_DEFAULT_MACS)
        .iter()
        .filter_map(|n| mac::Name::try_from(n.as_str()).ok())
        .collect();
    (kexes, ciphers, macs)
}

/// No compression: zlib before authentication widens the unauthenticated attack surface
/// (ssh-audit warns), and file transfers rarely gain from it.
const COMPRESSION: &[russh::compression::Name] = &[russh::compression::NONE];

const HOST_KEY_ALGS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// Loads an OpenSSH private key, or creates an ed25519 key (mode 0600) where none exists.
fn host_key(path: &Path) -> Result<PrivateKey, SftpError> {
    let err = |msg: String| SftpError::HostKey {
        path: path.display().to_string(),
        msg,
    };
    if path.exists() {
        return russh::keys::load_secret_key(path, None).map_err(|e| err(e.to_string()));
    }
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let key = PrivateKey::new(
        KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed)),
        "gatehouse host key",
    )
    .map_err(|e| err(e.to_string()))?;
    let pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(e.to_string()))?
    };
    f.write_all(pem.as_bytes())
        .map_err(|e| err(e.to_string()))?;
    tracing::info!(path = %path.display(), "created an ed25519 SSH host key");
    Ok(key)
}

/// A bound SFTP listener.
pub struct SftpListener {
    core: Arc<Core>,
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    admission: Admission,
}

/// Loads host keys and binds.
pub async fn bind(core: Arc<Core>, addr: SocketAddr) -> Result<SftpListener, SftpError> {
    let sftp = core.config.config.sftp.clone();
    let mut paths = sftp
        .as_ref()
        .map(|s| s.host_keys.clone())
        .unwrap_or_default();
    if paths.is_empty() {
        paths.push(
            core.config
                .config
                .gateway
                .state_dir
                .join("ssh_host_ed25519_key"),
        );
    }
    let keys = paths
        .iter()
        .map(|p| host_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let limits = &core.config.config.limits;
    let (kexes, ciphers, macs) = algorithms(sftp.as_ref());
    let config = russh::server::Config {
        server_id: russh::SshId::Standard(Cow::Borrowed(concat!(
            "SSH-2.0-gatehouse_",
            env!("CARGO_PKG_VERSION")
        ))),
        methods: MethodSet::from(&[MethodKind::Password, MethodKind::PublicKey][..]),
        // Refusals take a constant second, except the "none" probe every client starts with.
        auth_rejection_time: Duration::from_secs(1),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys,
        max_auth_attempts: sftp.as_ref().map_or(6, |s| s.max_auth_attempts),
        inactivity_timeout: Some(Duration::from_secs(limits.idle_timeout_secs.max(1))),
        keepalive_interval: None,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 32 * 1024,
        nodelay: true,
        // Headroom for pipelined requests; the session's reader task drains it continuously.
        channel_buffer_size: 1024,
        preferred: Preferred {
            kex: Cow::Owned(kexes),
            key: Cow::Borrowed(HOST_KEY_ALGS),
            cipher: Cow::Owned(ciphers),
            mac: Cow::Owned(macs),
            compression: Cow::Borrowed(COMPRESSION),
            ..Preferred::DEFAULT
        },
        ..Default::default()
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| SftpError::Bind { addr, source })?;
    Ok(SftpListener {
        admission: core.admission("sftp"),
        core,
        listener,
        config: Arc::new(config),
    })
}

impl SftpListener {
    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts until shutdown; each connection runs as a tracked task.
    pub async fn run(self) {
        let shutdown = self.core.shutdown.clone();
        while let Some((stream, peer)) = shutdown.accept(&self.listener, "sftp").await {
            let _ = stream.set_nodelay(true);
            let (core, config) = (self.core.clone(), self.config.clone());
            if crate::forwarded::is_trusted(peer.ip(), &core.config.sftp_proxy_protocol) {
                // A load balancer: its PROXY header names the client, whose address the bans,
                // limits and audit then use. Read on the connection's own task.
                let admission = self.admission.clone();
                shutdown.tasks.spawn(async move {
                    let read =
                        proxy_protocol::read_header(stream, true, proxy_protocol::HEADER_TIMEOUT)
                            .await;
                    let (client, stream) = match read {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "sftp connection refused");
                            return;
                        }
                    };
                    let remote = client.unwrap_or(peer);
                    if let Some(guard) = admit(&admission, remote) {
                        run_conn(core, config, stream, remote, guard, admission).await;
                    }
                });
                continue;
            }
            let Some(guard) = admit(&self.admission, peer) else {
                continue;
            };
            let stream = proxy_protocol::Prefixed::plain(stream);
            let admission = self.admission.clone();
            shutdown
                .tasks
                .spawn(run_conn(core, config, stream, peer, guard, admission));
        }
    }
}

/// Whether a connection from `remote` may go on: under this node's caps (the cluster's count
/// and bans are checked on the connection's own task, since the shared store may be asked).
fn admit(admission: &Admission, remote: SocketAddr) -> Option<Admitted> {
    match admission.admit(remote.ip()) {
        Ok(g) => Some(g),
        Err(why) => {
            tracing::warn!(%remote, "sftp connection refused: {}", why.as_str());
            None
        }
    }
}

async fn run_conn(
    core: Arc<Core>,
    config: Arc<russh::server::Config>,
    stream: proxy_protocol::Prefixed<tokio::net::TcpStream>,
    remote: SocketAddr,
    mut guard: Admitted,
    admission: Admission,
) {
    if let Err(why) = admission.share(&mut guard, remote.ip()).await {
        tracing::warn!(%remote, "sftp connection refused: {} (cluster)", why.as_str());
        return;
    }
    let _guard = guard;
    // Banned addresses are dropped before any key exchange work.
    if core.identity.load_full().banned(remote.ip()).await {
        tracing::debug!(%remote, "sftp connection from a banned address dropped");
        return;
    }
    metrics::gauge!(telemetry::CONNECTIONS, "protocol" => "sftp").increment(1.0);
    conn::serve(core, config, stream, remote).await;
    metrics::gauge!(telemetry::CONNECTIONS, "protocol" => "sftp").decrement(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name `check` accepts is one russh implements (or `serve` would silently drop it).
    #[test]
    fn every_supported_name_is_a_russh_algorithm() {
        use crate::config::{SSH_SUPPORTED_CIPHERS, SSH_SUPPORTED_KEX, SSH_SUPPORTED_MACS};
        for n in SSH_SUPPORTED_KEX {
            assert!(kex::Name::try_from(*n).is_ok(), "{n}");
        }
        for n in SSH_SUPPORTED_CIPHERS {
            assert!(cipher::Name::try_from(*n).is_ok(), "{n}");
        }
        for n in SSH_SUPPORTED_MACS {
            assert!(mac::Name::try_from(*n).is_ok(), "{n}");
        }
        let (k, c, m) = algorithms(None);
        assert_eq!(k.len(), crate::config::SSH_DEFAULT_KEX.len() + 2);
        assert!(!c.is_empty() && !m.is_empty());
    }
}
