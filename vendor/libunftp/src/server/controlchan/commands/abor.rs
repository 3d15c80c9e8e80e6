//! The RFC 959 Abort (`ABOR`) command
//
// This command tells the server to abort the previous FTP
// service command and any associated transfer of data. The
// abort command may require "special action", as discussed in
// the Section on FTP Commands, to force recognition by the
// server.  No action is to be taken if the previous command
// has been completed (including data transfer).  The control
// connection is not to be closed by the server, but the data
// connection must be closed.

use crate::server::controlchan::{
    Reply, ReplyCode,
    error::ControlChanError,
    handler::{CommandContext, CommandHandler},
};
use crate::server::ControlChanMsg;
use async_trait::async_trait;
use unftp_core::auth::UserDetail;
use unftp_core::storage::{Metadata, StorageBackend};

#[derive(Debug)]
pub struct Abor;

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Abor
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    #[tracing_attributes::instrument(skip_all)] // gatehouse patch: skip_all (the session's Debug on every log line)
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let mut session = args.session.lock().await;
        let logger = args.logger;
        // gatehouse patch: during a transfer, RFC 959's order: the transfer's 426 (sent by the
        // data channel when it has stopped), then 226 for the ABOR itself.
        if session.transferring {
            let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
            session.abort_ack = Some(ack_tx);
            if let Some(tx) = session.data_abort_tx.take() {
                let _ = tx.try_send(());
            }
            let ctl = args.tx_control_chan.clone();
            tokio::spawn(async move {
                // A transfer that finished at the same moment has already sent its 226.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), ack_rx).await;
                let reply = Reply::new(ReplyCode::ClosingDataConnection, "ABOR command successful");
                if let Err(err) = ctl.send(ControlChanMsg::CommandChannelReply(reply)).await {
                    slog::warn!(logger, "ABOR: could not send the reply: {}", err);
                }
            });
            return Ok(Reply::none());
        }
        // No transfer running: close a prepared data connection, if any.
        if let Some(tx) = session.data_abort_tx.take() {
            let _ = tx.try_send(());
        }
        session.data_cmd_tx = None;
        if let Some(cancel) = session.pasv_cancel.take() {
            let _ = cancel.send(());
        }
        Ok(Reply::new(ReplyCode::ClosingDataConnection, "No transfer to abort"))
    }
}
