//! The audit index: an SQLite database (WAL mode) beside the hash-chained files, which stay the
//! source of truth. A background task tails the files after every batch the writer reports
//! (never on the writer's path: it reads what is already on disk), inserts the new records in
//! one transaction per batch, and checks the chain as it goes (each record's hash recomputed,
//! each `prev` the hash before it): the console's chain status is that incremental check.
//! A missing, foreign or behind index is rebuilt or caught up from the files; `gatehouse audit
//! reindex` rebuilds it from scratch into a new file and swaps it in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::record::{GENESIS, Record, file_name};
use super::tail::Tail;

/// The index file's name in the state directory.
pub const FILE_NAME: &str = "audit-index.sqlite";
/// Bumped when the schema changes: an index of another version is rebuilt.
const SCHEMA_VERSION: &str = "1";
/// Records per insert transaction.
const BATCH: usize = 10_000;
/// Shortest time between two catch-ups while the log is busy, unless a query waits: every
/// transaction rewrites the secondary indexes' pages, so a catch-up per writer batch (a few
/// records each under load) cost more than the requests that made the records.
const GAP: Duration = Duration::from_millis(100);
/// Gauge: the last seq in the index.
pub const INDEXED_SEQ: &str = "gatehouse_audit_index_seq";

/// Why the index could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// SQLite refused.
    #[error("audit index {path}: {source}")]
    Sql {
        /// The database file.
        path: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// Reading the audit files failed.
    #[error("audit index: reading the audit files: {0}")]
    Io(#[from] std::io::Error),
    /// The index has not caught up with the log in time.
    #[error("audit index is behind the log (at seq {at}, log at {want})")]
    Behind {
        /// Last seq indexed.
        at: u64,
        /// Seq wanted.
        want: u64,
    },
}

/// Where the incremental chain check stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChainStatus {
    /// Last seq whose hash and link were checked.
    pub verified_seq: u64,
    /// Its hash.
    pub verified_hash: String,
    /// The first break found: file, seq and what is wrong.
    pub broken: Option<ChainBreak>,
}

/// A break in the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainBreak {
    /// The audit file.
    pub file: String,
    /// The record.
    pub seq: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// The index's path for a state directory.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> IndexError + '_ {
    move |source| IndexError::Sql {
        path: path.display().to_string(),
        source,
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records(
  seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, node TEXT NOT NULL, protocol TEXT, session TEXT,
  user TEXT, remote TEXT, ip TEXT, action TEXT NOT NULL, path TEXT, to_path TEXT, bytes INTEGER,
  sha256 TEXT, status INTEGER, outcome TEXT NOT NULL, detail TEXT, prev TEXT NOT NULL,
  hash TEXT NOT NULL, file INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS records_user ON records(user);
CREATE INDEX IF NOT EXISTS records_action ON records(action, outcome);
CREATE INDEX IF NOT EXISTS records_outcome ON records(outcome);
CREATE INDEX IF NOT EXISTS records_protocol ON records(protocol);
CREATE INDEX IF NOT EXISTS records_session ON records(session);
CREATE INDEX IF NOT EXISTS records_ip ON records(ip);
CREATE INDEX IF NOT EXISTS records_path ON records(path);
CREATE INDEX IF NOT EXISTS records_ts ON records(ts);
CREATE VIRTUAL TABLE IF NOT EXISTS detail_fts USING fts5(detail, content='', contentless_delete=1);
";

/// Opens (creating if needed) the index for writing.
fn open_rw(path: &Path) -> Result<Connection, IndexError> {
    let e = sql_err(path);
    let conn = Connection::open(path).map_err(&e)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(&e)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(&e)?;
    // The files are the truth: an index that loses its last transactions in a power cut is
    // caught up from them at the next start.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(&e)?;
    // The secondary indexes' pages stay in memory while a batch goes in.
    conn.pragma_update(None, "cache_size", -65536).map_err(&e)?;
    // Statements that keep a statement journal (the `records` insert once did) keep it in
    // memory, not in a temporary file: that was a pwrite per record (perf: 9% of the gateway
    // under small GETs).
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(&e)?;
    conn.execute_batch(SCHEMA).map_err(&e)?;
    let version: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key='schema'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(&e)?;
    match version.as_deref() {
        Some(SCHEMA_VERSION) => {}
        None => {
            conn.execute(
                "INSERT INTO meta(key, value) VALUES('schema', ?1)",
                [SCHEMA_VERSION],
            )
            .map_err(&e)?;
        }
        Some(_) => {
            drop(conn);
            remove_db(path)?;
            return open_rw(path);
        }
    }
    Ok(conn)
}

/// Opens the index read-only (queries; never blocks the writer in WAL mode).
pub fn open_ro(path: &Path) -> Result<Connection, IndexError> {
    let e = sql_err(path);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(&e)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(&e)?;
    Ok(conn)
}

fn remove_db(path: &Path) -> Result<(), IndexError> {
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
        .optional()
}

fn meta_set(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value=?2",
        params![key, value],
    )
    .map(|_| ())
}

/// The client's address without its port (`1.2.3.4:5` -> `1.2.3.4`, `[::1]:5` -> `::1`).
pub fn ip_of(remote: &str) -> &str {
    if let Some(rest) = remote.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match remote.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => ip,
        _ => remote,
    }
}

/// The writing side: catches up from the files and checks the chain.
pub struct Indexer {
    path: PathBuf,
    dir: PathBuf,
    conn: Connection,
    tail: Tail,
    status: ChainStatus,
    #[cfg(unix)]
    inode: u64,
}

#[cfg(unix)]
fn inode_of(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0)
}

impl Indexer {
    /// Opens the index at `path` for the audit files in `dir`, rebuilding it when it does not
    /// continue the files (a log that was replaced, or an index of another log).
    pub fn open(path: &Path, dir: &Path) -> Result<Self, IndexError> {
        let conn = match open_rw(path) {
            Ok(c) => c,
            // Not a database (or a damaged one): it is only an index of the files; start over.
            Err(IndexError::Sql { source, .. }) => {
                tracing::warn!(index = %path.display(), error = %source, "the audit index is unreadable; rebuilding it");
                remove_db(path)?;
                open_rw(path)?
            }
            Err(other) => return Err(other),
        };
        let e = sql_err(path);
        let last: Option<(u64, String, u64)> = conn
            .query_row(
                "SELECT seq, hash, file FROM records ORDER BY seq DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get(1)?,
                        r.get::<_, i64>(2)? as u64,
                    ))
                },
            )
            .optional()
            .map_err(&e)?;
        let status = ChainStatus {
            verified_seq: meta_get(&conn, "verified_seq")
                .map_err(&e)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            verified_hash: meta_get(&conn, "verified_hash")
                .map_err(&e)?
                .unwrap_or_else(|| GENESIS.to_string()),
            broken: meta_get(&conn, "broken")
                .map_err(&e)?
                .and_then(|v| serde_json::from_str::<(String, u64, String)>(&v).ok())
                .map(|(file, seq, reason)| ChainBreak { file, seq, reason }),
        };
        if let Some((seq, hash, file)) = &last
            && !continues(dir, *file, *seq, hash)
        {
            tracing::warn!(
                index = %path.display(),
                "the audit index does not match the audit files; rebuilding it"
            );
            drop(conn);
            remove_db(path)?;
            return Self::open(path, dir);
        }
        let after = last.as_ref().map_or(0, |(s, _, _)| *s);
        Ok(Self {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            conn,
            tail: Tail::all(dir, after),
            status,
            #[cfg(unix)]
            inode: inode_of(path),
        })
    }

    /// The last seq indexed.
    pub fn indexed(&self) -> u64 {
        self.tail.last_seq
    }

    /// Where the chain check stands.
    pub fn status(&self) -> &ChainStatus {
        &self.status
    }

    /// Indexes every complete record now in the files; returns how many.
    pub fn catch_up(&mut self) -> Result<u64, IndexError> {
        #[cfg(unix)]
        if inode_of(&self.path) != self.inode {
            // `audit reindex` swapped a new file in: continue on that one.
            *self = Self::open(&self.path, &self.dir)?;
        }
        let mut total = 0u64;
        loop {
            let batch = self.tail.read(BATCH)?;
            if !batch.records.is_empty() {
                total += batch.records.len() as u64;
                self.insert(&batch.records, &batch.files)?;
            }
            if !batch.more {
                return Ok(total);
            }
        }
    }

    fn insert(&mut self, records: &[Record], files: &[u64]) -> Result<(), IndexError> {
        let e = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        {
            // `OR IGNORE`, not `OR REPLACE`: a record's seq is never indexed twice (the tail
            // starts after the last indexed one), and `REPLACE` made SQLite copy every page the
            // row touched into a statement journal (perf: memmove, 3% of the gateway's CPU
            // under proxied load).
            let mut ins = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO records(seq, ts, node, protocol, session, user, remote,
                     ip, action, path, to_path, bytes, sha256, status, outcome, detail, prev, hash,
                     file) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19)",
                )
                .map_err(&e)?;
            for (r, file) in records.iter().zip(files.iter().copied()) {
                ins.execute(params![
                    r.seq as i64,
                    r.ts,
                    r.node,
                    r.protocol,
                    r.session,
                    r.user,
                    r.remote,
                    r.remote.as_deref().map(ip_of),
                    r.action,
                    r.path,
                    r.to,
                    r.bytes.map(|b| b as i64),
                    r.sha256,
                    r.status,
                    r.outcome,
                    r.detail,
                    r.prev,
                    r.hash.as_deref().unwrap_or(""),
                    file as i64,
                ])
                .map_err(&e)?;
                check_step(&mut self.status, r, file);
            }
            // The batch's details into the full-text index in one statement: FTS5 writes its
            // pending rows out at every statement's savepoint, so a row at a time flushed (and
            // merged) a segment per record (perf: 11% of the gateway under proxied load).
            if let (Some(first), Some(last)) = (records.first(), records.last()) {
                tx.prepare_cached(
                    "INSERT INTO detail_fts(rowid, detail) SELECT seq, detail FROM records
                     WHERE seq >= ?1 AND seq <= ?2 AND detail IS NOT NULL",
                )
                .map_err(&e)?
                .execute(params![first.seq as i64, last.seq as i64])
                .map_err(&e)?;
            }
        }
        meta_set(&tx, "verified_seq", &self.status.verified_seq.to_string()).map_err(&e)?;
        meta_set(&tx, "verified_hash", &self.status.verified_hash).map_err(&e)?;
        if let Some(b) = &self.status.broken {
            let v = serde_json::to_string(&(&b.file, b.seq, &b.reason)).unwrap_or_default();
            meta_set(&tx, "broken", &v).map_err(&e)?;
        }
        tx.commit().map_err(&e)
    }
}

/// One step of the incremental chain check.
fn check_step(s: &mut ChainStatus, r: &Record, file: u64) {
    {
        if s.broken.is_some() {
            return;
        }
        let reason = if r.seq <= s.verified_seq {
            return;
        } else if s.verified_seq != 0 && r.seq != s.verified_seq + 1 {
            Some(format!(
                "records {} to {} are missing",
                s.verified_seq + 1,
                r.seq - 1
            ))
        } else if s.verified_seq != 0 && r.prev != s.verified_hash {
            Some("prev does not match the hash of the record before it".to_string())
        } else if r.hash.as_deref() != Some(r.compute_hash().as_str()) {
            Some("hash does not match the record's content (edited?)".to_string())
        } else {
            None
        };
        match reason {
            Some(reason) => {
                s.broken = Some(ChainBreak {
                    file: file_name(file),
                    seq: r.seq,
                    reason,
                })
            }
            None => {
                s.verified_seq = r.seq;
                s.verified_hash = r.hash.clone().unwrap_or_default();
            }
        }
    }
}

/// Whether record `seq`, indexed from audit file number `file`, is still there with `hash`
/// (the index continues this log). Reads that one file.
fn continues(dir: &Path, file: u64, seq: u64, hash: &str) -> bool {
    super::tail::line_in(&dir.join(file_name(file)), seq)
        .and_then(|l| serde_json::from_slice::<Record>(&l).ok())
        .is_some_and(|r| r.hash.as_deref() == Some(hash))
}

/// Builds a fresh index of `dir` at `path` (into a temporary file, then swapped in, so a running
/// gateway's index keeps answering until the new one is complete). Returns the records indexed.
pub fn rebuild(path: &Path, dir: &Path) -> Result<u64, IndexError> {
    let tmp = PathBuf::from(format!("{}.rebuild", path.display()));
    remove_db(&tmp)?;
    let mut ix = Indexer::open(&tmp, dir)?;
    let n = ix.catch_up()?;
    let e = sql_err(&tmp);
    ix.conn
        .pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .map_err(&e)?;
    drop(ix);
    std::fs::rename(&tmp, path)?;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", tmp.display()));
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(n)
}

/// The running index: the background task's progress, for queries that must see every record
/// written so far.
#[derive(Clone)]
pub struct AuditIndex {
    path: PathBuf,
    indexed: tokio::sync::watch::Receiver<u64>,
    status: Arc<std::sync::Mutex<ChainStatus>>,
    /// A query waits for records not indexed yet: catch up now.
    urgent: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for AuditIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditIndex({})", self.path.display())
    }
}

impl AuditIndex {
    /// Starts indexing the files in `dir` into `path`, woken by `written` (the audit writer's
    /// last seq after each batch). Stops when `stop` is cancelled.
    pub async fn start(
        path: PathBuf,
        dir: PathBuf,
        mut written: tokio::sync::watch::Receiver<u64>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Self, IndexError> {
        let (p, d) = (path.clone(), dir.clone());
        let mut ix = tokio::task::spawn_blocking(move || Indexer::open(&p, &d))
            .await
            .map_err(|e| IndexError::Io(std::io::Error::other(e)))??;
        let (tx, indexed) = tokio::sync::watch::channel(ix.indexed());
        let status = Arc::new(std::sync::Mutex::new(ix.status().clone()));
        let st = status.clone();
        let urgent = Arc::new(tokio::sync::Notify::new());
        let hurry = urgent.clone();
        tokio::spawn(async move {
            loop {
                let started = tokio::time::Instant::now();
                let done = tokio::task::spawn_blocking(move || {
                    let r = ix.catch_up();
                    (ix, r)
                })
                .await;
                let Ok((back, r)) = done else { return };
                ix = back;
                if let Err(e) = r {
                    tracing::error!(error = %e, "audit index could not catch up; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                *st.lock().unwrap_or_else(|p| p.into_inner()) = ix.status().clone();
                metrics::gauge!(INDEXED_SEQ).set(ix.indexed() as f64);
                let _ = tx.send(ix.indexed());
                tokio::select! {
                    r = written.changed() => if r.is_err() { return },
                    _ = stop.cancelled() => return,
                }
                // New records: batch them with those of the next moments, unless asked for.
                tokio::select! {
                    _ = tokio::time::sleep_until(started + GAP) => {}
                    _ = hurry.notified() => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
        Ok(Self {
            path,
            indexed,
            status,
            urgent,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the chain check stands.
    pub fn chain_status(&self) -> ChainStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The last seq indexed.
    pub fn indexed(&self) -> u64 {
        *self.indexed.borrow()
    }

    /// Waits until every record up to `seq` is indexed, at most `within`.
    pub async fn wait_for(&self, seq: u64, within: Duration) -> Result<(), IndexError> {
        let mut rx = self.indexed.clone();
        if *rx.borrow() < seq {
            self.urgent.notify_one();
        }
        let reached = tokio::time::timeout(within, rx.wait_for(|s| *s >= seq)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(IndexError::Behind {
                at: self.indexed(),
                want: seq,
            }),
        }
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
