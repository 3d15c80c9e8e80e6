//! Contains shared code for the PASV and EPSV commands.

use crate::{
    auth::UserDetail,
    server::{
        ControlChanErrorKind, ControlChanMsg,
        chancomms::{PortAllocationError, SwitchboardMessage, SwitchboardSender},
        controlchan::{Reply, ReplyCode, error::ControlChanError, handler::CommandContext},
        datachan,
        session::SharedSession,
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use std::{fmt::Debug, io, net::SocketAddr, ops::RangeInclusive, time::Duration};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{
    mpsc::Sender,
    oneshot,
};

/// gatehouse patch: ports of the passive range tried per PASV/EPSV (bind and listen).
const PORT_ATTEMPTS: u32 = 64;

#[async_trait]
pub(crate) trait LegacyReplyProducer<Storage, User>: Send + Sync + Debug
where
    Storage: StorageBackend<User> + 'static,
    User: UserDetail + 'static,
{
    async fn build_reply(&self, args: &CommandContext<Storage, User>, port: u16) -> Result<Reply, ControlChanError>;
}

/// gatehouse patch: a passive port that another socket holds is skipped. The port is bound with
/// SO_REUSEADDR, which lets the bind succeed on a port an established connection still uses
/// (another program's outbound connection, say), and then `listen` fails with EADDRINUSE; that
/// error closed the whole control connection. Now bind *and* listen are tried together, on up
/// to 64 ports of the range in turn from a random one, so a range with a free port finds it.
#[tracing_attributes::instrument(skip_all)] // gatehouse patch: skip_all (the session's Debug on every log line)
pub(crate) fn try_port_range(local_addr: SocketAddr, passive_ports: RangeInclusive<u16>) -> io::Result<TcpListener> {
    let ip = local_addr.ip();
    let rng_length = u32::from(passive_ports.end() - passive_ports.start()) + 1;
    let start = {
        let mut data = [0; 4];
        getrandom::fill(&mut data).map_err(|e| io::Error::other(e.to_string()))?;
        u32::from_ne_bytes(data) % rng_length
    };
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no free port in the passive range");
    for i in 0..rng_length.min(PORT_ATTEMPTS) {
        let port = (start + i) % rng_length + u32::from(*passive_ports.start());
        let s = match ip {
            std::net::IpAddr::V4(_) => TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        s.set_reuseaddr(true)?;
        match s.bind(std::net::SocketAddr::new(ip, port as u16)).and_then(|()| s.listen(1024)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}

// modifies the session by adding channels that are used to communicate with the data connection
// processing loop.
// gatehouse patch: delegated mode only: the receivers wait in the session for the switchboard's
// data connection (legacy mode hands them to its listener task, see `handle_legacy_mode`).
#[tracing_attributes::instrument(skip_all)] // gatehouse patch: skip_all (the session's Debug on every log line)
pub(crate) async fn setup_inter_loop_comms<S, U>(session: SharedSession<S, U>, control_loop_tx: Sender<ControlChanMsg>)
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
{
    let mut session = session.lock().await;
    let link = session.new_data_link(control_loop_tx);
    session.data_cmd_rx = Some(link.cmd_rx);
    session.data_abort_rx = Some(link.abort_rx);
}

// For legacy mode we choose a data port here and start listening on it while letting the control
// channel know (via method return) what the address is that the client should connect to.
#[tracing_attributes::instrument(skip_all)] // gatehouse patch: skip_all (the session's Debug on every log line)
pub(crate) async fn handle_legacy_mode<S, U, T>(cmd: &T, args: CommandContext<S, U>) -> Result<Reply, ControlChanError>
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
    T: LegacyReplyProducer<S, U>,
{
    // gatehouse patch: bind and listen are one step (try_port_range), so a port held by another
    // socket is skipped instead of ending the session; a failed listen is a 425 like a failed bind.
    let listener = match args.session.lock().await.binder {
        Some(ref mut binder) => binder
            .bind(args.local_addr.ip(), args.passive_ports.clone())
            .await
            .and_then(|s| s.listen(1024)),
        _ => try_port_range(args.local_addr, args.passive_ports.clone()),
    };
    let listener = match listener {
        Err(_) => return Ok(Reply::new(ReplyCode::CantOpenDataConnection, "No data connection established")),
        Ok(l) => l,
    };

    let port = listener.local_addr()?.port();

    let reply = cmd.build_reply(&args, port).await?;
    if reply.is_positive() {
        // gatehouse patch: the listener task owns this PASV's data channels from here on (they
        // waited in the session for it to take them once connected, and a listener that got
        // the session's lock only after the client's next PASV took that PASV's channels: the
        // next STOR ran on the old, closed connection and the new one was dropped).
        // A new PASV/EPSV also closes this session's previous passive listener, so a client
        // asking again and again cannot hold the whole passive port range.
        let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
        let link = {
            let mut session = args.session.lock().await;
            if let Some(previous) = session.pasv_cancel.replace(cancel_tx) {
                let _ = previous.send(());
            }
            session.new_data_link(args.tx_control_chan.clone())
        };
        let generation = link.generation;
        // Open the data connection in a new task and process it.
        // We cannot await this since we first need to let the client know where to connect :-)
        tokio::spawn(async move {
            // gatehouse patch: the listener also closes when the control connection ends (this
            // task holds the session, so the session, and its logout, waited the full 15 s).
            let control = args.tx_control_chan.clone();
            // Timeout if the client doesn't connect to the socket in a while, to avoid leaving the socket hanging open permanently.
            let r = tokio::select! {
                r = tokio::time::timeout(Duration::from_secs(15), listener.accept()) => r,
                _ = cancel_rx => {
                    slog::debug!(args.logger, "Passive listener superseded by a new PASV/EPSV or the session's end");
                    args.session.lock().await.data_link_done(generation);
                    return;
                }
                _ = control.closed() => {
                    slog::debug!(args.logger, "Passive listener closed with its control connection");
                    return;
                }
            };
            match r {
                Ok(Ok((socket, socket_addr))) => {
                    // gatehouse patch: behind a load balancer the data connection comes from
                    // the balancer; its PROXY header names the client that the IP check compares.
                    let hook = args.session.lock().await.proxy_header.clone();
                    match hook {
                        None => datachan::spawn_processing(args.logger, args.session, socket, None, Some(link)).await,
                        Some(read) => match tokio::time::timeout(Duration::from_secs(10), (read.0)(socket, socket_addr)).await {
                            Ok(Ok((socket, client))) => datachan::spawn_processing(args.logger, args.session, socket, Some(client), Some(link)).await,
                            Ok(Err(why)) => {
                                slog::warn!(args.logger, "Data connection from {} refused: {}", socket_addr, why);
                                args.session.lock().await.data_link_done(generation);
                            }
                            Err(_) => {
                                slog::warn!(args.logger, "Data connection from {} sent no PROXY header in time", socket_addr);
                                args.session.lock().await.data_link_done(generation);
                            }
                        },
                    }
                }
                Ok(Err(e)) => {
                    slog::error!(args.logger, "Error waiting for data connection: {}", e);
                    // gatehouse patch: a command queued for this connection never runs.
                    args.session.lock().await.data_link_done(generation);
                }
                Err(_) => {
                    slog::warn!(args.logger, "Client did not connect to data port in time");
                    args.session.lock().await.data_link_done(generation);
                }
            }
        });
    }

    Ok(reply)
}

// For delegated mode, we prepare the session and let the listener loop know (via channel) that it
// should choose a data port and check for connections on it.
#[tracing_attributes::instrument(skip_all)] // gatehouse patch: skip_all (the session's Debug on every log line)
pub(crate) async fn handle_delegated_mode<S, U>(args: CommandContext<S, U>, tx: SwitchboardSender<S, U>) -> Result<Reply, ControlChanError>
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
{
    setup_inter_loop_comms(args.session.clone(), args.tx_control_chan).await;

    let (oneshot_tx, oneshot_rx) = oneshot::channel::<Result<Reply, PortAllocationError>>();

    tx.send(SwitchboardMessage::AssignDataPortCommand(args.session.clone(), oneshot_tx))
        .await
        .map_err(|_| ControlChanErrorKind::InternalServerError)?;

    match oneshot_rx.await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(_)) => Ok(Reply::new(ReplyCode::CantOpenDataConnection, "Could not allocate passive port")),
        Err(_) => Ok(Reply::new(ReplyCode::CantOpenDataConnection, "Internal error: Channel closed")),
    }
}
