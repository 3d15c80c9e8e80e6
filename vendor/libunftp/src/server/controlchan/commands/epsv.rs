//! The RFC 2428 Passive (`EPSV`) command
//
// The EPSV command requests that a server listen on a data port and
// wait for a connection. The EPSV command takes an optional argument.
// The response to this command includes only the TCP port number of the
// listening connection.

use crate::{
    auth::UserDetail,
    server::{
        chancomms::SwitchboardSender,
        controlchan::{
            Reply, ReplyCode,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
        },
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;

use super::passive_common::{self, LegacyReplyProducer};

#[derive(Debug)]
pub struct Epsv {
    // gatehouse patch: the argument, if any (RFC 2428 section 3).
    param: Option<String>,
}

impl Epsv {
    #[allow(dead_code)]
    pub fn new() -> Self {
        Epsv { param: None }
    }

    pub fn with_param(param: Option<String>) -> Self {
        Epsv { param }
    }
}

#[async_trait]
impl<Storage, User> LegacyReplyProducer<Storage, User> for Epsv
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
{
    async fn build_reply(&self, _args: &CommandContext<Storage, User>, port: u16) -> Result<Reply, ControlChanError> {
        Ok(make_epsv_reply(port))
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Epsv
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument(skip_all)] // gatehouse patch: skip_all (the session's Debug on every log line)
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        // gatehouse patch: RFC 2428 arguments. "ALL": from now on only EPSV sets up data
        // connections; "1"/"2": the network protocol, which must be the control connection's;
        // anything else is a protocol this server does not speak (522).
        let ours = if args.local_addr.is_ipv4() { "1" } else { "2" };
        match self.param.as_deref() {
            None => {}
            Some("ALL") => {
                args.session.lock().await.epsv_all = true;
                return Ok(Reply::new(ReplyCode::CommandOkay, "EPSV ALL ok: only EPSV from now on"));
            }
            Some(p) if p == ours => {}
            Some(_) => {
                return Ok(Reply::new_with_string(
                    ReplyCode::NetworkProtocolNotSupported,
                    format!("Network protocol not supported, use ({ours})"),
                ));
            }
        }
        let sender: Option<SwitchboardSender<Storage, User>> = args.tx_prebound_loop.clone();
        match sender {
            Some(_) => Ok(Reply::new(ReplyCode::CommandNotImplemented, "EPSV not supported in this mode")),
            None => passive_common::handle_legacy_mode(self, args).await,
        }
    }
}

pub fn make_epsv_reply(port: u16) -> Reply {
    Reply::new_with_string(ReplyCode::EnteringExtendedPassiveMode, format!("Entering Extended Passive Mode (|||{}|)", port))
}
