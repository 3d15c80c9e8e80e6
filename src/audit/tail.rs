//! Reading the audit files from a seq onwards, as they grow: the audit log is the events'
//! outbox, so a record that is written is an event that will be delivered, whatever happens to
//! the process after. Only complete lines are read; lines whose action no sink wants are
//! skipped without being parsed.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::audit::Record;
use crate::audit::record::list_files;

/// A position in the audit files.
pub struct Tail {
    dir: PathBuf,
    file_no: Option<u64>,
    offset: u64,
    /// Bytes read past the last complete line.
    partial: Vec<u8>,
    /// Seq of the last line read (matching or not).
    pub last_seq: u64,
    /// `"action":"<word>"` needles: lines without one are not parsed (`None`: every line is).
    needles: Option<Vec<String>>,
    /// The read buffer, kept between reads: zeroing a new 256 KiB one for every read was a
    /// quarter of the instructions of a lightly loaded gateway (callgrind, bench/instructions.py).
    buf: Vec<u8>,
}

/// Bytes asked of the file per read.
const READ_CHUNK: usize = 256 * 1024;

/// What one read found.
#[derive(Default)]
pub struct Batch {
    /// Records whose action is wanted, in order.
    pub records: Vec<Record>,
    /// The audit file number each record was read from (same order as `records`).
    pub files: Vec<u64>,
    /// Records between the start seq and the first file that were no longer there (removed
    /// before their events were delivered): first and last seq missing.
    pub gap: Option<(u64, u64)>,
    /// More lines may be waiting (the read stopped at its limit).
    pub more: bool,
}

fn first_seq(path: &Path) -> Option<u64> {
    let mut buf = [0u8; 64];
    let n = File::open(path).ok()?.read(&mut buf).ok()?;
    seq_of(&buf[..n])
}

/// The seq of the last complete record in the files (0 when there is none), from the end of
/// the newest non-empty file: no scan.
pub fn last_seq(dir: &Path) -> std::io::Result<u64> {
    let files = list_files(dir)?;
    for (_, path) in files.iter().rev() {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        let mut back = 64 * 1024u64;
        loop {
            let start = len.saturating_sub(back);
            f.seek(SeekFrom::Start(start))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            // Complete lines only: up to the last newline.
            let Some(end) = buf.iter().rposition(|&c| c == b'\n') else {
                if start == 0 {
                    break;
                }
                back *= 4;
                continue;
            };
            let body = &buf[..end];
            let line_start = body.iter().rposition(|&c| c == b'\n').map(|p| p + 1);
            match line_start {
                Some(p) => return Ok(seq_of(&body[p..]).unwrap_or(0)),
                None if start == 0 => return Ok(seq_of(body).unwrap_or(0)),
                None => back *= 4,
            }
        }
    }
    Ok(0)
}

/// The stored line of record `seq` in audit file `path`, if it is there.
pub fn line_in(path: &Path, seq: u64) -> Option<Vec<u8>> {
    use std::io::BufRead;
    let mut r = std::io::BufReader::new(File::open(path).ok()?);
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        match seq_of(&line) {
            Some(s) if s == seq => return Some(line),
            Some(s) if s > seq => return None,
            _ => {}
        }
    }
}

/// The seq of a record line without parsing it (`{"seq":N,...`).
fn seq_of(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let end = rest.iter().position(|c| !c.is_ascii_digit())?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

impl Tail {
    /// A reader that yields records after `after_seq` whose action is one of `actions`.
    pub fn new(dir: &Path, after_seq: u64, actions: &[&str]) -> Self {
        Self {
            dir: dir.to_path_buf(),
            file_no: None,
            offset: 0,
            partial: Vec::new(),
            last_seq: after_seq,
            needles: Some(
                actions
                    .iter()
                    .map(|a| format!("\"action\":\"{a}\""))
                    .collect(),
            ),
            buf: Vec::new(),
        }
    }

    /// A reader that yields every record after `after_seq`.
    pub fn all(dir: &Path, after_seq: u64) -> Self {
        let mut t = Self::new(dir, after_seq, &[]);
        t.needles = None;
        t
    }

    /// Reads up to `max` wanted records (and any number of unwanted ones, up to 16 MiB).
    pub fn read(&mut self, max: usize) -> std::io::Result<Batch> {
        let mut batch = Batch::default();
        let files = list_files(&self.dir)?;
        if self.file_no.is_none() {
            // The last file that starts at or before the next seq wanted.
            let want = self.last_seq + 1;
            let mut pick = None;
            for (no, path) in &files {
                match first_seq(path) {
                    Some(first) if first <= want => pick = Some(*no),
                    Some(first) => {
                        if pick.is_none() {
                            pick = Some(*no);
                            if first > want {
                                batch.gap = Some((want, first - 1));
                                self.last_seq = first - 1;
                            }
                        }
                        break;
                    }
                    None => {
                        if pick.is_none() {
                            pick = Some(*no);
                        }
                    }
                }
            }
            match pick {
                Some(no) => self.file_no = Some(no),
                None => return Ok(batch),
            }
        }
        let mut budget: usize = 16 * 1024 * 1024;
        while let Some(no) = self.file_no {
            let Some((_, path)) = files.iter().find(|(n, _)| *n == no) else {
                // Removed under us: carry on with the next one.
                self.file_no = files.iter().map(|(n, _)| *n).find(|n| *n > no);
                self.offset = 0;
                self.partial.clear();
                continue;
            };
            let mut f = File::open(path)?;
            f.seek(SeekFrom::Start(self.offset))?;
            if self.buf.len() < READ_CHUNK {
                self.buf.resize(READ_CHUNK, 0);
            }
            loop {
                let n = f.read(&mut self.buf)?;
                if n == 0 {
                    break;
                }
                self.offset += n as u64;
                budget = budget.saturating_sub(n);
                self.partial.extend_from_slice(&self.buf[..n]);
                self.take_lines(&mut batch);
                if batch.records.len() >= max || budget == 0 {
                    batch.more = true;
                    return Ok(batch);
                }
            }
            // The end of this file: a newer one means this one is complete (a torn line at
            // its end, left by a crash and repaired at the next start, is skipped).
            match files.iter().map(|(n, _)| *n).find(|n| *n > no) {
                Some(next) => {
                    self.partial.clear();
                    self.file_no = Some(next);
                    self.offset = 0;
                }
                None => break,
            }
        }
        Ok(batch)
    }

    fn take_lines(&mut self, batch: &mut Batch) {
        let mut start = 0;
        while let Some(pos) = self.partial[start..].iter().position(|&c| c == b'\n') {
            let line = &self.partial[start..start + pos];
            start += pos + 1;
            let Some(seq) = seq_of(line) else { continue };
            if seq <= self.last_seq {
                continue;
            }
            self.last_seq = seq;
            let wanted = self.needles.as_ref().is_none_or(|ns| {
                ns.iter()
                    .any(|n| line.windows(n.len()).any(|w| w == n.as_bytes()))
            });
            if wanted && let Ok(r) = serde_json::from_slice::<Record>(line) {
                batch.records.push(r);
                batch.files.push(self.file_no.unwrap_or(0));
            }
        }
        self.partial.drain(..start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditAction, AuditEvent, AuditLog, AuditOptions, Outcome};
    use crate::config::FsyncMode;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_across_rotations_in_batches_and_names_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AuditLog::open(AuditOptions {
            dir: dir.path().to_path_buf(),
            fsync: FsyncMode::Batch,
            rotate_bytes: 4096,
            node: "t".into(),
            reserve_bytes: 1024 * 1024,
        })
        .unwrap();
        for i in 0..300u64 {
            let action = if i % 3 == 0 {
                AuditAction::Upload
            } else {
                AuditAction::Proxy
            };
            log.record(AuditEvent::new(action, Outcome::Ok).path(format!("/f/{i}")))
                .await
                .unwrap();
        }
        log.close().await.unwrap();
        assert!(list_files(dir.path()).unwrap().len() > 5, "rotated");

        let mut tail = Tail::new(dir.path(), 100, &["upload"]);
        let mut seqs = Vec::new();
        loop {
            let b = tail.read(7).unwrap();
            assert!(b.gap.is_none());
            seqs.extend(b.records.iter().map(|r| r.seq));
            if !b.more {
                break;
            }
        }
        let want: Vec<u64> = (101..=300).filter(|s| (s - 1) % 3 == 0).collect();
        assert_eq!(seqs, want);
        assert_eq!(tail.last_seq, 300);
        assert!(tail.read(10).unwrap().records.is_empty());

        // The oldest file removed before its events were read: the gap is named.
        let first = list_files(dir.path()).unwrap()[0].1.clone();
        std::fs::remove_file(first).unwrap();
        let mut tail = Tail::new(dir.path(), 0, &["upload"]);
        let b = tail.read(1000).unwrap();
        let (from, to) = b.gap.expect("gap");
        assert_eq!(from, 1);
        let expect = (to + 1..).find(|s| (s - 1) % 3 == 0).unwrap();
        assert_eq!(b.records[0].seq, expect);
    }
}
