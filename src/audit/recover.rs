//! Where the chain stands when the writer starts: the end of the last file, with a torn final
//! line (a crash mid-write) cut off and kept beside it, so the chain continues after a crash.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;

use super::AuditError;
use super::record::{self, GENESIS, Record};

fn io(e: std::io::Error) -> AuditError {
    AuditError::Io(e.to_string())
}

/// Where the chain stands at the end of the existing files.
pub(super) struct Tail {
    pub(super) file_no: u64,
    pub(super) size: u64,
    pub(super) seq: u64,
    pub(super) prev: String,
}

/// Finds the end of the chain; cuts a torn final line (a crash mid-write) out of the last file,
/// keeping its bytes beside it in `<file>.torn-<offset>`.
pub(super) fn recover(dir: &Path) -> Result<(Tail, Option<String>), AuditError> {
    let files = record::list_files(dir).map_err(io)?;
    let Some((last_no, last_path)) = files.last().cloned() else {
        return Ok((
            Tail {
                file_no: 1,
                size: 0,
                seq: 0,
                prev: GENESIS.into(),
            },
            None,
        ));
    };
    let mut bytes = Vec::new();
    File::open(&last_path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io)?;
    let mut repair = None;
    let (good_len, last) = last_good_line(&bytes);
    if good_len < bytes.len() {
        let torn = &bytes[good_len..];
        let keep =
            last_path.with_file_name(format!("{}.torn-{good_len}", record::file_name(last_no)));
        std::fs::write(&keep, torn).map_err(io)?;
        let f = OpenOptions::new()
            .write(true)
            .open(&last_path)
            .map_err(io)?;
        f.set_len(good_len as u64).map_err(io)?;
        f.sync_all().map_err(io)?;
        repair = Some(format!(
            "recovered after an unclean stop: a torn final record ({} bytes) was cut from {} and kept in {}",
            torn.len(),
            record::file_name(last_no),
            keep.file_name().and_then(|n| n.to_str()).unwrap_or("?")
        ));
    }
    let last = match last {
        Some(r) => Some(r),
        // The last file holds no record yet: the chain ends in the file before it.
        None => match files.iter().rev().nth(1) {
            Some((_, p)) => {
                let mut b = Vec::new();
                File::open(p)
                    .and_then(|mut f| f.read_to_end(&mut b))
                    .map_err(io)?;
                last_good_line(&b).1
            }
            None => None,
        },
    };
    let (seq, prev) = match last {
        Some(r) => (r.seq, r.hash.unwrap_or_default()),
        None => (0, GENESIS.to_string()),
    };
    Ok((
        Tail {
            file_no: last_no,
            size: good_len as u64,
            seq,
            prev,
        },
        repair,
    ))
}

/// Length of the file up to and including the last line that parses as a record, and that record.
/// Only the final line may be cut: anything worse is left for `audit verify` to report.
fn last_good_line(bytes: &[u8]) -> (usize, Option<Record>) {
    let parse = |line: &[u8]| -> Option<Record> {
        let r: Record = serde_json::from_slice(line).ok()?;
        (r.hash.as_deref() == Some(r.compute_hash().as_str())).then_some(r)
    };
    let complete = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    let body = &bytes[..complete];
    // The last complete line.
    let start = body[..body.len().saturating_sub(1)]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    if complete == 0 {
        return (0, None);
    }
    match parse(&body[start..complete - 1]) {
        Some(r) => (complete, Some(r)),
        // A garbage final line (e.g. zeros after a crash) counts as torn too.
        None => {
            let prev_end = start;
            let prev_start = body[..prev_end.saturating_sub(1)]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            if prev_end == 0 {
                return (0, None);
            }
            (prev_end, parse(&body[prev_start..prev_end - 1]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, prev: &str) -> (String, String) {
        let mut r = Record {
            seq,
            ts: "t".into(),
            node: "n".into(),
            protocol: None,
            session: None,
            user: None,
            remote: None,
            action: "config".into(),
            path: None,
            to: None,
            bytes: None,
            sha256: None,
            status: None,
            outcome: "ok".into(),
            detail: None,
            prev: prev.into(),
            hash: None,
        };
        let l = r.seal();
        (l, r.hash.unwrap_or_default())
    }

    #[test]
    fn finds_the_last_good_line() {
        let (l1, h1) = line(1, GENESIS);
        let (l2, _) = line(2, &h1);
        let good = format!("{l1}\n{l2}\n");
        assert_eq!(last_good_line(good.as_bytes()).0, good.len());
        let torn = format!("{good}{{\"seq\":3,");
        let (len, rec) = last_good_line(torn.as_bytes());
        assert_eq!(len, good.len());
        assert_eq!(rec.map(|r| r.seq), Some(2));
        let zeros = format!("{l1}\n\0\0\0\n");
        let (len, rec) = last_good_line(zeros.as_bytes());
        assert_eq!(len, l1.len() + 1);
        assert_eq!(rec.map(|r| r.seq), Some(1));
        assert_eq!(last_good_line(b"").0, 0);
        assert_eq!(last_good_line(b"{\"se").0, 0);
    }
}
