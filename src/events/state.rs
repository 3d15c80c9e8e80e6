//! What event delivery keeps on disk, in `<state_dir>/events/`, beside the audit log that is its
//! outbox: per sink, the cursor (every matching record up to it is settled) with the seqs
//! settled beyond it, and the dead letters (given up, kept for `events retry`); and operators'
//! requests (`events retry|purge`), which the running gateway picks up.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audit::Record;

/// The directory under the state dir.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("events")
}

/// A sink's progress.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Progress {
    /// Every matching record with seq ≤ cursor is settled (delivered or given up).
    pub cursor: u64,
    /// Records after the cursor that are settled too (deliveries run in parallel).
    #[serde(default)]
    pub done: BTreeSet<u64>,
}

/// One given-up event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Event id (`webhook-id`).
    pub id: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure.
    pub last_error: String,
    /// When it was given up (RFC 3339).
    pub gave_up_at: String,
    /// The record the event is about.
    pub record: Record,
}

/// What an operator asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Dead letters back into delivery.
    Retry,
    /// Dead letters dropped.
    PurgeDead,
    /// Undelivered events dropped (the cursor moves to the end of the log).
    PurgePending,
}

/// An operator's request file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// What to do.
    pub op: Op,
    /// One sink, or all.
    pub sink: Option<String>,
    /// Only these event ids (retry), or all.
    #[serde(default)]
    pub ids: Vec<String>,
}

fn progress_path(dir: &Path, sink: &str) -> PathBuf {
    dir.join(format!("{sink}.progress.json"))
}

fn dead_path(dir: &Path, sink: &str) -> PathBuf {
    dir.join(format!("{sink}.dead.jsonl"))
}

/// The requests directory.
pub fn requests_dir(dir: &Path) -> PathBuf {
    dir.join("requests")
}

/// A sink's saved progress (`None`: the sink never ran).
pub fn load_progress(dir: &Path, sink: &str) -> std::io::Result<Option<Progress>> {
    match std::fs::read(progress_path(dir, sink)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a file whole or not at all (temp file, then rename).
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

/// Saves a sink's progress.
pub fn save_progress(dir: &Path, sink: &str, p: &Progress) -> std::io::Result<()> {
    replace(
        &progress_path(dir, sink),
        &serde_json::to_vec(p).map_err(std::io::Error::other)?,
    )
}

/// A sink's dead letters, oldest first.
pub fn load_dead(dir: &Path, sink: &str) -> std::io::Result<Vec<DeadLetter>> {
    let text = match std::fs::read_to_string(dead_path(dir, sink)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Replaces a sink's dead letters.
pub fn save_dead(dir: &Path, sink: &str, dead: &[DeadLetter]) -> std::io::Result<()> {
    let mut out = Vec::new();
    for d in dead {
        serde_json::to_writer(&mut out, d).map_err(std::io::Error::other)?;
        out.push(b'\n');
    }
    replace(&dead_path(dir, sink), &out)
}

/// Files an operator's request; returns its path (removed once the gateway applied it, with
/// the outcome left beside it as `<name>.done`).
pub fn file_request(dir: &Path, req: &Request) -> std::io::Result<PathBuf> {
    let rd = requests_dir(dir);
    std::fs::create_dir_all(&rd)?;
    let name = format!(
        "{}-{}.json",
        time::OffsetDateTime::now_utc().unix_timestamp_nanos(),
        crate::session::new_id()
    );
    let path = rd.join(name);
    replace(
        &path,
        &serde_json::to_vec(req).map_err(std::io::Error::other)?,
    )?;
    Ok(path)
}

/// Requests waiting, oldest first.
pub fn pending_requests(dir: &Path) -> Vec<(PathBuf, Request)> {
    let Ok(rd) = std::fs::read_dir(requests_dir(dir)) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Request)> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let req = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
            Some((p, req))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Marks a request applied: its outcome beside it, then the request removed.
pub fn finish_request(path: &Path, outcome: &str) {
    let done = path.with_extension("done");
    if let Err(e) = std::fs::write(&done, format!("{outcome}\n")) {
        tracing::warn!(error = %e, "cannot write the outcome of an events request");
    }
    let _ = std::fs::remove_file(path);
}
