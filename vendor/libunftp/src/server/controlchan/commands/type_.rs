//! The RFC 959 Representation Type (`TYPE`) command
//
// The argument specifies the representation type as described
// in the Section on Data Representation and Storage.  Several
// types take a second parameter.  The first parameter is
// denoted by a single Telnet character, as is the second
// Format parameter for ASCII and EBCDIC; the second parameter
// for local byte is a decimal integer to indicate Bytesize.
// The parameters are separated by a <SP> (Space, ASCII code
// 32).
//
// The following codes are assigned for type:
//
//           \    /
// A - ASCII |    | N - Non-print
//           |-><-| T - Telnet format effectors
// E - EBCDIC|    | C - Carriage Control (ASA)
//           /    \
// I - Image
//
// L <byte size> - Local byte Byte size
//
//
// The default representation type is ASCII Non-print.  If the
// Format parameter is changed, and later just the first
// argument is changed, Format then returns to the Non-print
// default.

use crate::{
    auth::UserDetail,
    server::controlchan::{
        Reply, ReplyCode,
        error::ControlChanError,
        handler::{CommandContext, CommandHandler},
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;

#[derive(Debug)]
pub struct Type {
    param: String,
}

impl Type {
    pub fn new(param: String) -> Self {
        Type { param }
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Type
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    // gatehouse patch: A (non-print) and I, and L 8, are served (all as binary, the gateway
    // never converts line ends); other types and formats are refused with 504 (RFC 959 5.4),
    // a malformed parameter with 501.
    #[tracing_attributes::instrument(skip_all)] // gatehouse patch: skip_all (the session's Debug on every log line)
    async fn handle(&self, _args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let words: Vec<&str> = self.param.split_whitespace().collect();
        Ok(match words.as_slice() {
            ["I"] | ["A"] | ["A", "N"] | ["L", "8"] => Reply::new(ReplyCode::CommandOkay, "Always in binary mode"),
            ["E"] | ["E", "N" | "T" | "C"] | ["A", "T" | "C"] | ["L", _] => {
                Reply::new(ReplyCode::CommandNotImplementedForParameter, "Type not supported; use TYPE I")
            }
            _ => Reply::new(ReplyCode::ParameterSyntaxError, "Unknown type"),
        })
    }
}
