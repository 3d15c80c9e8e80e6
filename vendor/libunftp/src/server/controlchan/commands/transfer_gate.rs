//! gatehouse patch: the storage back-end is asked whether a transfer may start *before* the `150`
//! (unftp-core's `check_put` / `check_get`), so a refused STOR, APPE, STOU or RETR gets its `550`,
//! `553` or `502` at once instead of a `150` followed by a broken data connection. A refusal also
//! ends the data connection the client prepared (PASV/EPSV), and the REST offset is cleared.

use crate::{
    auth::UserDetail,
    server::{controlchan::Reply, session::Session},
    storage::{Metadata, StorageBackend},
};
use std::path::PathBuf;

/// What the transfer is.
pub(crate) enum Kind {
    Put { append: bool },
    Get,
    /// LIST, NLST of a path: it must exist (and be visible) before the `150`.
    List,
    /// MLSD of a path: it must be a directory (RFC 3659 7.2: `501` for a file).
    ListDir,
}

/// gatehouse patch: the transfer counts as running from its `150`, so a QUIT right behind it
/// waits for its reply (the data task set this only when it picked the command up, and a QUIT
/// in between closed without the `226`). Cleared by the data task, or by the passive listener
/// if the client never connects.
pub(crate) fn started<Storage, User>(session: &mut Session<Storage, User>)
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    session.transferring = true;
}

/// Asks the storage; on refusal, tears down the prepared data connection and returns the reply.
pub(crate) async fn check<Storage, User>(session: &mut Session<Storage, User>, path: PathBuf, kind: Kind) -> Option<Reply>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    let user = session.user.clone();
    let user = (*user).as_ref()?;
    let storage = session.storage.clone();
    let start_pos = session.start_pos;
    let result = match kind {
        Kind::Put { append } => storage.check_put(user, &path, start_pos, append).await,
        Kind::Get => storage.check_get(user, &path, start_pos).await,
        Kind::List => storage.metadata(user, &path).await.map(|_| ()),
        Kind::ListDir => match storage.metadata(user, &path).await {
            Ok(m) if !m.is_dir() => {
                drop_data_connection(session);
                return Some(Reply::new(crate::server::controlchan::ReplyCode::ParameterSyntaxError, "Not a directory"));
            }
            other => other.map(|_| ()),
        },
    };
    let err = result.err()?;
    drop_data_connection(session);
    Some(crate::server::controlchan::control_loop::storage_error_reply(&err))
}

/// No transfer follows: the offset no longer applies, and the data connection goes.
fn drop_data_connection<Storage, User>(session: &mut Session<Storage, User>)
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    session.start_pos = 0;
    session.data_cmd_tx = None;
    if let Some(abort) = session.data_abort_tx.take() {
        let _ = abort.try_send(());
    }
    if let Some(cancel) = session.pasv_cancel.take() {
        let _ = cancel.send(());
    }
}
