//! Upload events delivered to upstream services (`[[events]]`), at least once. The audit log is
//! the outbox: an event exists as soon as the record it is about is written (before the client
//! hears the result), so a crash or `kill -9` loses none. One worker per sink reads the audit
//! files from its saved cursor, posts each matching record as a signed CloudEvent, retries with
//! exponential backoff and jitter until a 2xx or `max_age_secs`, and records every delivery and
//! give-up in the audit log. A slow or dead receiver only delays its own sink: transfers never
//! wait for it. Memory is bounded by a window of events per sink; the backlog stays in the files.

pub mod message;
pub mod state;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{AuditLog, Record};
use crate::pathglob::PathGlob;
use crate::secret::Secret;

pub use crate::audit::tail::Tail;

/// Detail words of a refused login that started a ban or an account lock (written by
/// `core::refusal_event`, matched here for `on = ["ban"]`).
pub const BAN_MARKS: [&str; 2] = ["; ban started: ", " password logins locked for "];

/// What a sink listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A file landed.
    Upload,
    /// A file was read to its end.
    Download,
    /// A file was removed.
    Delete,
    /// A file or directory was moved.
    Rename,
    /// A directory was made.
    Mkdir,
    /// A login was refused.
    LoginDenied,
    /// A refused login started a ban or an account lock.
    Ban,
}

impl Trigger {
    /// Every trigger.
    pub const ALL: [Trigger; 7] = [
        Self::Upload,
        Self::Download,
        Self::Delete,
        Self::Rename,
        Self::Mkdir,
        Self::LoginDenied,
        Self::Ban,
    ];

    /// The config word (and the CloudEvents type's last part).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Download => "download",
            Self::Delete => "delete",
            Self::Rename => "rename",
            Self::Mkdir => "mkdir",
            Self::LoginDenied => "login_denied",
            Self::Ban => "ban",
        }
    }

    /// Parses a config word.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The audit action its records have.
    fn action(self) -> &'static str {
        match self {
            Self::LoginDenied | Self::Ban => "login",
            other => other.as_str(),
        }
    }

    fn matches(self, r: &Record) -> bool {
        match self {
            Self::LoginDenied => r.action == "login" && r.outcome == "denied",
            Self::Ban => {
                r.action == "login"
                    && r.outcome == "denied"
                    && r.detail
                        .as_deref()
                        .is_some_and(|d| BAN_MARKS.iter().any(|m| d.contains(m)))
            }
            other => r.action == other.as_str() && r.outcome == "ok",
        }
    }
}

/// One `[[events]]` receiver.
#[derive(Debug, Clone)]
pub struct Sink {
    /// Name (file names under the state dir, metrics label, audit detail).
    pub name: String,
    /// What it listens for.
    pub on: Vec<Trigger>,
    /// Which paths (absent: all). Records without a path (logins) are not filtered by it.
    pub path: Option<PathGlob>,
    /// Where deliveries are posted.
    pub url: String,
    /// The Standard Webhooks key.
    pub secret: Secret<Vec<u8>>,
    /// Per attempt.
    pub timeout: Duration,
    /// Given up after this long since the record was written.
    pub max_age: Duration,
}

impl Sink {
    /// The trigger a record fires for this sink, if any: the most specific (a ban over a
    /// plain refused login).
    pub fn trigger_for(&self, r: &Record) -> Option<Trigger> {
        if let (Some(glob), Some(path)) = (&self.path, &r.path)
            && r.action != "login"
            && !glob.matches(path)
            && !r.to.as_deref().is_some_and(|to| glob.matches(to))
        {
            return None;
        }
        let mut found = None;
        for t in &self.on {
            if t.matches(r) {
                if *t == Trigger::Ban {
                    return Some(Trigger::Ban);
                }
                found = Some(*t);
            }
        }
        found
    }

    /// The audit actions whose records this sink may want.
    pub fn actions(&self) -> Vec<&'static str> {
        let mut a: Vec<&'static str> = self.on.iter().map(|t| t.action()).collect();
        a.sort_unstable();
        a.dedup();
        a
    }
}

/// One delivery attempt's outcome: the HTTP status, or why there was none.
pub type Delivery = Result<u16, String>;

/// Posts one delivery (the HTTP client lives in `adapters/`).
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// POSTs `body` with `headers` to `url`, within `timeout`.
    async fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Delivery;
}

/// Failure to start event delivery.
#[derive(Debug, thiserror::Error)]
#[error("event delivery: {0}")]
pub struct EventsError(pub String);

/// Where a sink's worker finds everything.
pub(crate) struct Env {
    pub dir: PathBuf,
    pub audit_dir: PathBuf,
    pub audit: AuditLog,
    pub transport: Arc<dyn Transport>,
    pub stop: tokio_util::sync::CancellationToken,
}

/// The running delivery workers.
pub struct Events {
    tasks: tokio_util::task::TaskTracker,
}

impl Events {
    /// Starts one worker per sink, and the task that applies operators' requests. Workers stop
    /// when `stop` is cancelled (saving their progress); [`Events::stopped`] waits for them.
    pub fn start(
        sinks: Vec<Sink>,
        state_dir: &Path,
        audit: AuditLog,
        transport: Arc<dyn Transport>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Self, EventsError> {
        let dir = state::dir(state_dir);
        std::fs::create_dir_all(state::requests_dir(&dir))
            .map_err(|e| EventsError(format!("cannot create {}: {e}", dir.display())))?;
        let env = Arc::new(Env {
            dir,
            audit_dir: audit.dir().to_path_buf(),
            audit,
            transport,
            stop,
        });
        let tasks = tokio_util::task::TaskTracker::new();
        let mut controls = Vec::new();
        // A sink seen for the first time starts at the end of the log: it gets the events
        // from now on, not the log's whole history.
        let now = *env.audit.written().borrow();
        for sink in sinks {
            let saved = state::load_progress(&env.dir, &sink.name).map_err(|e| {
                EventsError(format!(
                    "cannot read the progress of sink {}: {e}",
                    sink.name
                ))
            })?;
            let progress = match saved {
                Some(p) => p,
                None => {
                    let p = state::Progress {
                        cursor: now,
                        done: Default::default(),
                    };
                    state::save_progress(&env.dir, &sink.name, &p).map_err(|e| {
                        EventsError(format!(
                            "cannot save the progress of sink {}: {e}",
                            sink.name
                        ))
                    })?;
                    p
                }
            };
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            controls.push((sink.name.clone(), tx));
            let w = worker::Worker::new(sink, progress, env.clone());
            tasks.spawn(w.run(rx));
        }
        tasks.spawn(worker::requests(env, controls));
        tasks.close();
        Ok(Self { tasks })
    }

    /// Waits until every worker has saved its progress and stopped.
    pub async fn stopped(&self) {
        self.tasks.wait().await;
    }
}

/// Every event the files hold for a sink that is not settled yet (`events list`).
pub fn pending(sink: &Sink, state_dir: &Path, audit_dir: &Path) -> std::io::Result<Vec<Record>> {
    let dir = state::dir(state_dir);
    let Some(progress) = state::load_progress(&dir, &sink.name)? else {
        // Never started: it delivers from its first start on, so nothing waits yet.
        return Ok(Vec::new());
    };
    let mut tail = Tail::new(audit_dir, progress.cursor, &sink.actions());
    let mut out = Vec::new();
    loop {
        let batch = tail.read(4096)?;
        out.extend(
            batch
                .records
                .into_iter()
                .filter(|r| !progress.done.contains(&r.seq) && sink.trigger_for(r).is_some()),
        );
        if !batch.more {
            return Ok(out);
        }
    }
}
