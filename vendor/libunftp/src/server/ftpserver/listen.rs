//! Contains the code that listens to control channel connections in a non-proxy protocol mode.

use super::{ServerError, chosen::OptionsHolder};
use crate::server::failed_logins::FailedLoginsCache;
use crate::server::shutdown;
use crate::{auth::UserDetail, server::controlchan, storage::StorageBackend};
use std::ffi::OsString;
use std::net::SocketAddr;
#[cfg(unix)]
use std::os::fd::AsRawFd;
use std::sync::Arc;
use tokio::net::TcpListener;

// Listener listens for control channel connections on a TCP port and spawns a control channel loop
// in a new task for each incoming connection.
pub struct Listener<Storage, User>
where
    Storage: StorageBackend<User>,
    User: UserDetail,
{
    pub bind_address: SocketAddr,
    pub logger: slog::Logger,
    pub options: OptionsHolder<Storage, User>,
    pub shutdown_topic: Arc<shutdown::Notifier>,
    pub failed_logins: Option<Arc<FailedLoginsCache>>,
    pub connection_helper: Option<OsString>,
    pub connection_helper_args: Vec<OsString>,
}

impl<Storage, User> Listener<Storage, User>
where
    Storage: StorageBackend<User> + 'static,
    User: UserDetail + 'static,
{
    // Starts listening, returning an error if the TCP address could not be bound to.
    pub async fn listen(self) -> std::result::Result<(), ServerError> {
        let Listener {
            logger,
            bind_address,
            options,
            shutdown_topic,
            failed_logins,
            connection_helper,
            connection_helper_args,
        } = self;
        let listener = TcpListener::bind(bind_address).await?;
        loop {
            let shutdown_listener = shutdown_topic.subscribe().await;
            match listener.accept().await {
                Ok((tcp_stream, socket_addr)) => {
                    // gatehouse patch: no Nagle on the control channel. A reply written while an
                    // earlier one is unacknowledged (226 after 150, with the client busy on the
                    // data connection and delaying its ACK) otherwise waits ~40 ms: one stall per
                    // transferred file.
                    let _ = tcp_stream.set_nodelay(true);
                    slog::info!(logger, "Incoming control connection from {:?}", socket_addr);
                    if let Some(helper) = connection_helper.as_ref() {
                        slog::info!(logger, "Spawning connection helper: {:?} {:?}", helper, connection_helper_args);
                        #[cfg(unix)]
                        Self::spawn_helper(&logger, helper, &connection_helper_args, &tcp_stream, socket_addr);
                        #[cfg(not(unix))]
                        unimplemented!()
                    } else {
                        // gatehouse patch: a load balancer's PROXY header (read on the
                        // connection's own task, so a slow one holds up no other), then the
                        // embedder admits (and counts) the connection by the client's address
                        // before the control loop starts (awaited here: it may ask a shared
                        // store); its guard lives as long as the connection.
                        let admission = options.hardening.admission.clone();
                        let proxy = options.hardening.proxy_header.clone();
                        let spawn_it = proxy.is_some() || admission.is_some();
                        let config: controlchan::LoopConfig<Storage, User> = (&options).into();
                        let logger = logger.clone();
                        let failed_logins = failed_logins.clone();
                        let conn = async move {
                            let (tcp_stream, client) = match proxy {
                                None => (tcp_stream, None),
                                Some(read) => match read(tcp_stream, socket_addr).await {
                                    Ok((s, c)) => (s, Some(c)),
                                    Err(why) => {
                                        slog::warn!(logger, "Refused control connection from {:?}: {}", socket_addr, why);
                                        return;
                                    }
                                },
                            };
                            let who = client.unwrap_or(socket_addr);
                            let guard = match admission.as_ref() {
                                None => None,
                                Some(admit) => match admit(who).await {
                                    Some(g) => Some(g),
                                    None => {
                                        slog::warn!(logger, "Refused control connection from {:?} (admission)", who);
                                        let mut s = tcp_stream;
                                        tokio::spawn(async move {
                                            use tokio::io::AsyncWriteExt;
                                            let _ = tokio::time::timeout(
                                                std::time::Duration::from_secs(2),
                                                s.write_all(b"421 Too many connections from your address, try again later\r\n"),
                                            )
                                            .await;
                                        });
                                        return;
                                    }
                                },
                            };
                            let result = controlchan::spawn_loop::<Storage, User>(config, tcp_stream, None, None, shutdown_listener, failed_logins, client).await;
                            match result {
                                Err(err) => {
                                    slog::error!(logger, "Could not spawn control channel loop for connection from {:?}: {:?}", who, err);
                                }
                                Ok(jh) => {
                                    if let Some(g) = guard {
                                        tokio::spawn(async move {
                                            let _ = jh.await;
                                            drop(g);
                                        });
                                    }
                                }
                            }
                        };
                        if spawn_it {
                            tokio::spawn(conn);
                        } else {
                            conn.await;
                        }
                    }
                }
                Err(err) => {
                    slog::error!(logger, "Error accepting incoming control connection {:?}", err);
                }
            }
        }
    }

    #[cfg(unix)]
    fn spawn_helper(
        logger: &slog::Logger,
        helper: &OsString,
        connection_helper_args: &[OsString],
        tcp_stream: &tokio::net::TcpStream,
        socket_addr: SocketAddr,
    ) {
        let fd = tcp_stream.as_raw_fd();
        nix::fcntl::fcntl(tcp_stream, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).unwrap();
        let result = tokio::process::Command::new(helper)
            .args(connection_helper_args.iter())
            .arg(fd.to_string())
            .spawn();
        let logger2 = logger.clone();
        match result {
            Ok(mut child) => {
                tokio::spawn(async move {
                    let child_status = child.wait().await;
                    slog::debug!(logger2, "helper process exited {:?}", child_status);
                });
            }
            Err(err) => {
                slog::error!(logger, "Could not spawn helper process for connection from {:?}: {:?}", socket_addr, err);
            }
        }
    }
}
