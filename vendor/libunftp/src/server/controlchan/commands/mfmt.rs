//! gatehouse patch: MFMT, "modify fact: modification time" (draft-somers-ftp-mfxx), which rclone,
//! FileZilla and WinSCP send after an upload to keep the file's time. `MFMT 20261201101500 path`
//! answers `213 Modify=20261201101500; path`; a malformed time is `501`, storage errors as usual.

use crate::{
    auth::UserDetail,
    server::{
        chancomms::ControlChanMsg,
        controlchan::{
            Reply, ReplyCode,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
        },
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use chrono::NaiveDateTime;
use std::{path::PathBuf, sync::Arc, time::SystemTime};

#[derive(Debug)]
pub struct Mfmt {
    time: String,
    path: PathBuf,
}

impl Mfmt {
    pub fn new(time: String, path: PathBuf) -> Self {
        Mfmt { time, path }
    }
}

/// `YYYYMMDDHHMMSS` with optional `.sss` (dropped: storage keeps seconds), in UTC.
fn parse_time(s: &str) -> Option<SystemTime> {
    let whole = s.split_once('.').map_or(s, |(w, frac)| if frac.bytes().all(|b| b.is_ascii_digit()) { w } else { "" });
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S").ok()?.and_utc();
    Some(SystemTime::from(t))
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Mfmt
where
    User: UserDetail,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: 'static + Metadata,
{
    #[tracing_attributes::instrument(skip_all)]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let Some(when) = parse_time(&self.time) else {
            return Ok(Reply::new(ReplyCode::ParameterSyntaxError, "Time must be YYYYMMDDHHMMSS (UTC)"));
        };
        let session = args.session.lock().await;
        let user = Arc::clone(&session.user);
        if user.is_none() {
            return Ok(Reply::new(ReplyCode::NotLoggedIn, "Please log in"));
        }
        let storage = Arc::clone(&session.storage);
        let path = session.cwd.join(&self.path);
        let shown = self.path.to_string_lossy().to_string();
        let time = self.time.split('.').next().unwrap_or_default().to_string();
        let tx = args.tx_control_chan.clone();
        let logger = args.logger;
        tokio::spawn(async move {
            let Some(user) = (*user).as_ref() else { return };
            let msg = match storage.set_modified(user, &path, when).await {
                Ok(()) => ControlChanMsg::CommandChannelReply(Reply::new_with_string(ReplyCode::FileStatus, format!("Modify={time}; {shown}"))),
                Err(err) => ControlChanMsg::StorageError(err),
            };
            if let Err(err) = tx.send(msg).await {
                slog::warn!(logger, "MFMT: could not send the reply: {}", err);
            }
        });
        Ok(Reply::none())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times() {
        assert_eq!(parse_time("19700101000010"), Some(UNIX_EPOCH + Duration::from_secs(10)));
        assert_eq!(parse_time("19700101000010.123"), Some(UNIX_EPOCH + Duration::from_secs(10)));
        assert_eq!(parse_time("1970010100001"), None);
        assert_eq!(parse_time("19701301000010"), None);
        assert_eq!(parse_time("19700101000010.x"), None);
        assert_eq!(parse_time("+9700101000010"), None);
    }
}
