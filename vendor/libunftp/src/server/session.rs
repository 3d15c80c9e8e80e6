//! The session module implements per-connection session handling and currently also
//! implements the handling for the *data* channel.

use super::{chancomms::ControlChanMsg, tls::FtpsConfig};
use crate::metrics;
use crate::server::chancomms::DataChanCmd;
use crate::server::failed_logins::FailedLoginsCache;
use crate::server::switchboard::SocketAddrPair;
use crate::server::switchboard::SwitchboardKey;
use std::{
    fmt::{Debug, Formatter},
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
};
use tokio::sync::mpsc::{Receiver, Sender};
use unftp_core::auth::UserDetail;
use unftp_core::storage::{Metadata, StorageBackend};

// TraceId is an identifier used to correlate logs statements together.
#[derive(PartialEq, Eq, Copy, Clone)]
pub struct TraceId(u64);

impl TraceId {
    pub fn new() -> Self {
        let mut id = [0; 8];
        // For now keep it simple. Later we may need something more sophisticated
        getrandom::fill(&mut id).expect("Error generating random TraceId");

        TraceId(u64::from_ne_bytes(id))
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut Formatter) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl std::fmt::Debug for TraceId {
    fn fmt(&self, f: &mut Formatter) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[derive(PartialEq, Eq, Debug, Clone, Copy)]
pub enum SessionState {
    New,
    WaitPass,
    WaitCmd,
}

// The session shared via an asynchronous lock
pub type SharedSession<S, U> = Arc<tokio::sync::Mutex<Session<S, U>>>;

// This is where we keep the state for an ftp session.
#[derive(Debug)]
pub struct Session<Storage, User>
where
    Storage: StorageBackend<User>,
    Storage::Metadata: Metadata,
    User: UserDetail,
{
    // I guess this can be called session_id but for now we only use it to have traceability in our
    // logs. Rename it if you use it for more than than but then also make sure the TraceId
    // implementation makes sense.
    pub trace_id: TraceId,
    // This is extra information about a user like account details.
    pub user: Arc<Option<User>>,
    // The username used to log in. None if not logged in.
    pub username: Option<String>,
    // The storage back-end instance.
    pub storage: Arc<Storage>,
    // The control loop uses this to send commands to the data loop
    pub data_cmd_tx: Option<Sender<DataChanCmd>>,
    // The data loop uses this receive messages from the control loop
    pub data_cmd_rx: Option<Receiver<DataChanCmd>>,
    // The control loop uses this to ask the data loop to exit.
    pub data_abort_tx: Option<Sender<()>>,
    // The data loop listens to this so it can know when to exit.
    pub data_abort_rx: Option<Receiver<()>>,
    // This may not be needed here...
    pub control_msg_tx: Option<Sender<ControlChanMsg>>,
    // The socket address of the client on the control channel
    pub source: SocketAddr,
    // The control connection over the proxy protocol
    pub(crate) control_connection: Option<SocketAddrPair>,
    // Points to the key of the active data connection
    pub(crate) switchboard_active_datachan: Option<SwitchboardKey>,
    // Current working directory
    pub cwd: std::path::PathBuf,
    // After a RNFR command this will hold the source path used by the RNTO command.
    pub rename_from: Option<PathBuf>,
    // This may need some work...
    pub state: SessionState,
    // Tells if FTPS/TLS security is available to the session or not. The variables cmd_tls and
    // data_tls tells if the channels are actually encrypted or not.
    pub ftps_config: FtpsConfig,
    // True if the command channel is in secure mode at the moment. Changed by AUTH and CCC commands.
    pub cmd_tls: bool,
    // True if the data channel is in secure mode at the moment. Changed by the PROT command.
    pub data_tls: bool,
    // True if metrics for prometheus are updated.
    pub collect_metrics: bool,
    // The starting byte for a STOR or RETR command. Set by the _Restart of Interrupted Transfer (REST)_
    // command to support resume functionality.
    pub start_pos: u64,
    // Tells if the data loop is running. The control channel need to know if the data channel is
    // busy so that it doesn't time out while the session is still in progress.
    pub data_busy: bool,
    // The client certificate chain if it was received.
    pub cert_chain: Option<Vec<unftp_core::auth::ClientCert>>,
    // The failed logins cache can monitor successive failed logins and apply a policy to deter brute force attacks.
    pub failed_logins: Option<Arc<FailedLoginsCache>>,
    // An optional functor that can bind a socket
    pub binder: Option<Box<dyn crate::options::Binder>>,
    // gatehouse patch: cancels the passive listener of the previous PASV/EPSV when a new one is
    // asked for, so one session holds at most one passive port.
    pub pasv_cancel: Option<tokio::sync::oneshot::Sender<()>>,
    // gatehouse patch: reads a load balancer's PROXY header on passive data connections too.
    pub proxy_header: Option<crate::options::ProxyHook>,
    // gatehouse patch: QUIT arrived during a transfer; the session ends after its reply.
    pub quit_pending: bool,
    // gatehouse patch: a RETR/STOR/LIST... is running on the data connection (not just a data
    // connection waiting for its command): ABOR aborts it, QUIT waits for its reply.
    pub transferring: bool,
    // gatehouse patch: told once an ABOR has stopped the running transfer.
    pub abort_ack: Option<tokio::sync::oneshot::Sender<()>>,
    // gatehouse patch: after EPSV ALL, PASV and PORT are refused (RFC 2428 section 4).
    pub epsv_all: bool,
    // gatehouse patch: which PASV/EPSV/PORT the current data channels belong to (counts up with
    // each). A data connection of an older one is stale: it gets no command, and neither it nor
    // its listener may change the current transfer's state.
    pub(crate) data_generation: u64,
}

/// gatehouse patch: the receiving ends of one PASV/EPSV/PORT's data channels, owned by the task
/// that serves that data connection from the moment they are made (they used to wait in the
/// session for the data connection's task to pick them up, and a stale task could pick up the
/// next PASV's).
pub(crate) struct DataLink {
    pub cmd_rx: Receiver<DataChanCmd>,
    pub abort_rx: Receiver<()>,
    pub generation: u64,
}

/// gatehouse patch: a working directory as shown to the client: absolute, `.` and `..` resolved
/// lexically, never above `/` (PWD used to show `/../..` after `CDUP` at the root).
pub(crate) fn clean_cwd(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// gatehouse patch: a path in a `257` reply: quoted, embedded quotes doubled (RFC 959 appendix II).
pub(crate) fn quote_path(path: &std::path::Path) -> String {
    format!("\"{}\"", path.to_string_lossy().replace('"', "\"\""))
}

impl<Storage, User> Session<Storage, User>
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    pub(super) fn new(storage: Arc<Storage>, source: SocketAddr) -> Self {
        Session {
            trace_id: TraceId::new(),
            user: Arc::new(None),
            username: None,
            storage,
            data_cmd_tx: None,
            data_cmd_rx: None,
            data_abort_tx: None,
            data_abort_rx: None,
            control_msg_tx: None,
            source,
            control_connection: None,
            switchboard_active_datachan: None,
            cwd: "/".into(),
            rename_from: None,
            state: SessionState::New,
            ftps_config: FtpsConfig::Off,
            cmd_tls: false,
            data_tls: false,
            collect_metrics: false,
            start_pos: 0,
            data_busy: false,
            cert_chain: None,
            failed_logins: None,
            binder: None,
            pasv_cancel: None,
            proxy_header: None,
            quit_pending: false,
            transferring: false,
            abort_ack: None,
            epsv_all: false,
            data_generation: 0,
        }
    }

    /// gatehouse patch: new data channels for a PASV/EPSV/PORT. The session keeps the sending
    /// ends (the previous ones are dropped, which ends a data connection still waiting for its
    /// command); the caller gets the receiving ends.
    pub(crate) fn new_data_link(&mut self, control_msg_tx: Sender<ControlChanMsg>) -> DataLink {
        let (cmd_tx, cmd_rx) = tokio::sync::mpsc::channel(1);
        let (abort_tx, abort_rx) = tokio::sync::mpsc::channel(1);
        self.data_cmd_tx = Some(cmd_tx);
        self.data_abort_tx = Some(abort_tx);
        self.data_cmd_rx = None;
        self.data_abort_rx = None;
        self.control_msg_tx = Some(control_msg_tx);
        self.data_generation += 1;
        DataLink {
            cmd_rx,
            abort_rx,
            generation: self.data_generation,
        }
    }

    /// gatehouse patch: the data connection (or the wait for it) of `generation` is over. Its
    /// flags are cleared only if it is still the current one.
    pub(crate) fn data_link_done(&mut self, generation: u64) {
        if self.data_generation == generation {
            self.data_busy = false;
            self.transferring = false;
        }
    }

    pub fn ftps(mut self, mode: FtpsConfig) -> Self {
        self.ftps_config = mode;
        self
    }

    pub fn metrics(mut self, collect_metrics: bool) -> Self {
        if collect_metrics {
            metrics::inc_session();
        }
        self.collect_metrics = collect_metrics;
        self
    }

    pub fn binder(mut self, binder: Box<dyn crate::options::Binder>) -> Self {
        self.binder = Some(binder);
        self
    }

    pub fn control_msg_tx(mut self, sender: Sender<ControlChanMsg>) -> Self {
        self.control_msg_tx = Some(sender);
        self
    }

    // control_connection provides the switchboard with connection info to allocate a passive port
    pub(crate) fn control_connection(mut self, conn: Option<SocketAddrPair>) -> Self {
        self.control_connection = conn;
        self
    }

    pub fn failed_logins(mut self, failed_logins: Option<Arc<FailedLoginsCache>>) -> Self {
        self.failed_logins = failed_logins;
        self
    }
}

impl<Storage, User> Drop for Session<Storage, User>
where
    Storage: StorageBackend<User>,
    Storage::Metadata: Metadata,
    User: UserDetail,
{
    fn drop(&mut self) {
        if self.collect_metrics {
            // Decrease the sessions metrics gauge when the session goes out of scope.
            metrics::dec_session();
        }
    }
}
