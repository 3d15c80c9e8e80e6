//! `gatehouse audit verify`: re-computes the chain over every file and says what it found. A
//! changed byte, a removed, added or reordered line, a missing file or a log cut short (against
//! `audit.head`) is a failure naming the file and sequence number; a torn final line left by a
//! crash is reported but is not tampering.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::record::{self, GENESIS, Record};
use super::writer::HEAD_FILE;

/// A chain that checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Records verified.
    pub records: u64,
    /// Files read.
    pub files: usize,
    /// Things an operator should know that are not tampering.
    pub notes: Vec<String>,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// File name.
    pub file: String,
    /// Sequence number concerned, when known.
    pub seq: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(s) => write!(f, "{}: seq {s}: {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

/// Verifies every audit file in `dir`.
pub fn verify(dir: &Path) -> Result<Report, Failure> {
    let fail = |file: &str, seq: Option<u64>, reason: String| Failure {
        file: file.to_string(),
        seq,
        reason,
    };
    let files = record::list_files(dir).map_err(|e| {
        fail(
            &dir.display().to_string(),
            None,
            format!("cannot list: {e}"),
        )
    })?;
    let mut notes = Vec::new();
    let mut expected_seq: Option<u64> = None;
    let mut prev = GENESIS.to_string();
    let mut count = 0u64;
    let mut last_hash_by_seq: Option<(u64, String)> = None;
    let mut head_hash_seen: Option<(u64, String)> = None;
    let head = read_head(dir);
    if let Some((n, _)) = files.first()
        && *n != 1
    {
        notes.push(format!(
            "the chain starts in {} (earlier files were removed, e.g. by retention)",
            record::file_name(*n)
        ));
    }
    for (idx, (n, path)) in files.iter().enumerate() {
        let name = record::file_name(*n);
        if idx > 0 && files[idx - 1].0 + 1 != *n {
            return Err(fail(
                &name,
                expected_seq,
                format!("{} is missing", record::file_name(files[idx - 1].0 + 1)),
            ));
        }
        let is_last = idx + 1 == files.len();
        let f = File::open(path).map_err(|e| fail(&name, None, format!("cannot read: {e}")))?;
        let mut reader = BufReader::new(f);
        let mut line = Vec::new();
        let mut offset = 0u64;
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| fail(&name, None, format!("cannot read: {e}")))?;
            if read == 0 {
                break;
            }
            if line.last() != Some(&b'\n') {
                if is_last {
                    notes.push(format!(
                        "{name}: torn final line ({} bytes at offset {offset}): the writer stopped mid-record (crash); it is cut on the next start",
                        line.len()
                    ));
                    break;
                }
                return Err(fail(
                    &name,
                    expected_seq,
                    "line without a newline in the middle of the chain".into(),
                ));
            }
            offset += read as u64;
            let text = &line[..line.len() - 1];
            let rec: Record = serde_json::from_slice(text).map_err(|e| {
                fail(
                    &name,
                    expected_seq,
                    format!("not a valid audit record ({e})"),
                )
            })?;
            let want_seq = *expected_seq.get_or_insert_with(|| {
                if *n != 1 {
                    // A chain that starts after removed files continues from its own first record.
                    prev = rec.prev.clone();
                    rec.seq
                } else {
                    1
                }
            });
            if rec.seq != want_seq {
                return Err(fail(
                    &name,
                    Some(want_seq),
                    format!(
                        "found seq {} where seq {want_seq} belongs (lines removed, added or reordered)",
                        rec.seq
                    ),
                ));
            }
            if rec.prev != prev {
                return Err(fail(
                    &name,
                    Some(rec.seq),
                    "prev does not match the previous record's hash".into(),
                ));
            }
            if rec.hash.as_deref() != Some(rec.compute_hash().as_str()) {
                return Err(fail(
                    &name,
                    Some(rec.seq),
                    "hash does not match the record's content (modified)".into(),
                ));
            }
            if rec.expected_line().as_bytes() != text {
                return Err(fail(
                    &name,
                    Some(rec.seq),
                    "record is not in canonical form (modified)".into(),
                ));
            }
            prev = rec.hash.clone().unwrap_or_default();
            if let Some((hs, _)) = &head
                && *hs == rec.seq
            {
                head_hash_seen = Some((rec.seq, prev.clone()));
            }
            last_hash_by_seq = Some((rec.seq, prev.clone()));
            expected_seq = Some(want_seq + 1);
            count += 1;
        }
        let torn: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|f| f.starts_with(&format!("{name}.torn-")))
            .collect();
        for t in torn {
            notes.push(format!("{t}: a torn record cut from {name} at a restart after a crash (not part of the chain)"));
        }
    }
    if let Some((hseq, hhash)) = head {
        let last_seq = last_hash_by_seq.as_ref().map_or(0, |(s, _)| *s);
        let last_file = files
            .last()
            .map(|(n, _)| record::file_name(*n))
            .unwrap_or_else(|| "(none)".into());
        if hseq > last_seq {
            return Err(fail(
                &last_file,
                Some(last_seq + 1),
                format!(
                    "the log ends at seq {last_seq} but {HEAD_FILE} shows seq {hseq} was written (records removed from the end)"
                ),
            ));
        }
        if hseq > 0 && head_hash_seen.as_ref().map(|(_, h)| h) != Some(&hhash) {
            return Err(fail(
                &last_file,
                Some(hseq),
                format!("record hash differs from the one in {HEAD_FILE} (rewritten)"),
            ));
        }
    }
    Ok(Report {
        records: count,
        files: files.len(),
        notes,
    })
}

fn read_head(dir: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(dir.join(HEAD_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    Some((
        v.get("seq")?.as_u64()?,
        v.get("hash")?.as_str()?.to_string(),
    ))
}
