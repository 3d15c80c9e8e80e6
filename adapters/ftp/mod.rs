//! The FTP/FTPS front door on libunftp: passive mode on `passive_ports` announcing
//! `passive_host`, explicit FTPS (AUTH TLS, TLS 1.2 and 1.3) with `required` refusing plaintext
//! logins and data, optional PROXY protocol, idle timeout, connection cap, graceful shutdown.
//! Logins are `auth.rs`, files `storage.rs`, error replies `reply.rs`.

mod auth;
mod reply;
mod storage;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use libunftp::ServerBuilder;
use libunftp::options::{FtpsRequired, Hardening, PassiveHost, Shutdown};

use crate::core::Core;
use auth::{FtpAuth, FtpUser, FtpUsers};
use storage::{FtpStorage, Sha256Site};

/// Why the FTP listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum FtpError {
    /// The address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// libunftp refused the configuration.
    #[error("ftp server setup: {0}")]
    Setup(String),
}

/// A configured FTP server, ready to run.
pub struct FtpListener {
    server: libunftp::Server<FtpStorage, FtpUser>,
    addr: SocketAddr,
}

/// Builds the server and checks that its address can be bound.
pub async fn bind(core: Arc<Core>, addr: SocketAddr) -> Result<FtpListener, FtpError> {
    let Some(cfg) = core.config.config.ftp.clone() else {
        return Err(FtpError::Setup("no [ftp] section".into()));
    };
    // libunftp binds by itself inside `listen`; bind once here so a taken port fails start-up
    // with a clear error instead of a listener that dies later.
    drop(
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| FtpError::Bind { addr, source })?,
    );
    let limits = &core.config.config.limits;
    // Every connection is admitted (listener cap, per-address cap) when it is accepted, before
    // any command is read, so pre-login connections count too.
    let admission = core.admission("ftp");
    let hardening = Hardening {
        login_timeout: std::time::Duration::from_secs(limits.login_timeout_secs.max(1)),
        admission: Some(Arc::new(move |remote: SocketAddr| {
            // This node's caps at once; the cluster's count (in the multi-node mode) next.
            let local = admission.admit(remote.ip());
            let admission = admission.clone();
            Box::pin(async move {
                let counted = match local {
                    Ok(mut slot) => admission.share(&mut slot, remote.ip()).await.map(|()| slot),
                    Err(why) => Err(why),
                };
                match counted {
                    Ok(slot) => Some(Box::new(slot) as Box<dyn std::any::Any + Send + Sync>),
                    Err(why) => {
                        tracing::warn!(%remote, "ftp connection refused: {}", why.as_str());
                        None
                    }
                }
            })
        })),
        proxy_header: proxy_header_reader(core.config.ftp_proxy_protocol.clone()),
        ..Hardening::default()
    };
    let pending = Arc::default();
    let gen_core = core.clone();
    let generator = Box::new(move || FtpStorage::new(gen_core.clone()));
    let users = Arc::new(FtpUsers {
        pending: Arc::clone(&pending),
    });
    let [lo, hi] = cfg.passive_ports;
    let passive_host = match cfg.passive_host.as_deref() {
        None => PassiveHost::FromConnection,
        Some(h) => match h.parse::<Ipv4Addr>() {
            Ok(ip) => PassiveHost::Ip(ip),
            Err(_) => PassiveHost::Dns(h.to_string()),
        },
    };
    let token = core.shutdown.token.clone();
    let grace = core.shutdown.grace;
    let mut b = ServerBuilder::<FtpStorage, FtpUser>::with_user_detail_provider(generator, users)
        .authenticator(Arc::new(FtpAuth {
            core: core.clone(),
            pending,
        }))
        .greeting("gatehouse FTP ready")
        .passive_ports(lo..=hi)
        .passive_host(passive_host)
        .idle_session_timeout(core.config.config.limits.idle_timeout_secs)
        .shutdown_indicator(async move {
            token.cancelled().await;
            Shutdown::new().grace_period(grace)
        })
        .site_command("SHA256", Sha256Site)
        .site_command("HASH", Sha256Site)
        .hardening(hardening);
    if let Some(tls) = &cfg.tls {
        let required = if tls.required {
            FtpsRequired::All
        } else {
            FtpsRequired::None
        };
        let mut tls_cfg = super::tls::server_config(&core, "ftp.tls", &tls.cert, &tls.key)
            .map_err(FtpError::Setup)?;
        // No TLS 1.3 session tickets: an uploading client never reads them, and closing a data
        // connection with unread bytes makes the kernel send a reset that can race the file's
        // last bytes (seen with curl). TLS 1.2 session-ID resumption still works.
        tls_cfg.send_tls13_tickets = 0;
        tls_cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(1024);
        b = b
            .ftps_manual::<std::path::PathBuf>(Arc::new(tls_cfg))
            .ftps_required(required, required);
    }
    if matches!(
        cfg.proxy_protocol,
        crate::config::FtpProxyProtocol::Switch(true)
    ) {
        b = b.proxy_protocol_mode(addr.port());
    }
    let server = b.build().map_err(|e| FtpError::Setup(e.to_string()))?;
    Ok(FtpListener { server, addr })
}

/// The PROXY header rule of `[ftp] proxy_protocol = [peers]`, for control and passive data
/// connections alike: the listed peers must send one (it names the client that logins, bans,
/// the data connection check and audit use); others send none and stand for themselves.
fn proxy_header_reader(trusted: Vec<ipnet::IpNet>) -> Option<libunftp::options::ProxyHeaderReader> {
    if trusted.is_empty() {
        return None;
    }
    let trusted = Arc::new(trusted);
    Some(Arc::new(
        move |mut stream: tokio::net::TcpStream, peer: SocketAddr| {
            let trusted = trusted.clone();
            Box::pin(async move {
                if !crate::forwarded::is_trusted(peer.ip(), &trusted) {
                    return Ok((stream, peer));
                }
                match super::proxy_protocol::read_header_exact(
                    &mut stream,
                    super::proxy_protocol::HEADER_TIMEOUT,
                )
                .await
                {
                    Ok(client) => Ok((stream, client.unwrap_or(peer))),
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "ftp connection refused");
                        Err(e.to_string())
                    }
                }
            })
        },
    ))
}

impl FtpListener {
    /// The configured address (libunftp binds it when `run` starts).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until shutdown; in-flight transfers get the grace period.
    pub async fn run(self) {
        if let Err(e) = self.server.listen(self.addr.to_string()).await {
            tracing::error!(error = %e, "ftp listener stopped");
        }
    }
}
