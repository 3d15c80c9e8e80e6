//! `gatehouse audit query` and `GET /v1/audit`: filters over the records, streamed file by file,
//! line by line, so a large log never sits in memory.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::record::{self, Record};
use crate::route::path_under;

/// Which records to return. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Exact user.
    pub user: Option<String>,
    /// Exact protocol word.
    pub protocol: Option<String>,
    /// Exact action word.
    pub action: Option<String>,
    /// Exact outcome word.
    pub outcome: Option<String>,
    /// Path equal to or under this (whole segments).
    pub path_prefix: Option<String>,
    /// Records at or after this time (normalised with [`normalise_time`]).
    pub since: Option<String>,
    /// Records before this time (normalised with [`normalise_time`]).
    pub until: Option<String>,
    /// Exact session id.
    pub session: Option<String>,
    /// Client address (IP, without port; a full `ip:port` matches too).
    pub remote: Option<String>,
    /// Words in the detail (whole words; the last may be a prefix).
    pub text: Option<String>,
    /// Records with seq greater than this (pagination).
    pub after_seq: Option<u64>,
    /// Records with seq less than this (pagination, newest first).
    pub before_seq: Option<u64>,
    /// Newest first (index queries only; the file scan is always oldest first).
    pub newest_first: bool,
    /// At most this many records.
    pub limit: Option<usize>,
}

impl Filter {
    /// Whether a record matches.
    pub fn matches(&self, r: &Record) -> bool {
        let eq = |want: &Option<String>, got: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == got)
        };
        eq(&self.user, r.user.as_deref())
            && eq(&self.protocol, r.protocol.as_deref())
            && eq(&self.action, Some(&r.action))
            && eq(&self.outcome, Some(&r.outcome))
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| r.path.as_deref().is_some_and(|x| path_under(x, p)))
            && self.since.as_deref().is_none_or(|s| r.ts.as_str() >= s)
            && self.until.as_deref().is_none_or(|u| r.ts.as_str() < u)
            && self.after_seq.is_none_or(|a| r.seq > a)
            && self.before_seq.is_none_or(|b| r.seq < b)
            && eq(&self.session, r.session.as_deref())
            && self.remote.as_deref().is_none_or(|want| {
                r.remote
                    .as_deref()
                    .is_some_and(|got| got == want || super::index::ip_of(got) == want)
            })
            && self.text.as_deref().is_none_or(|t| {
                r.detail.as_deref().is_some_and(|d| {
                    let d = d.to_lowercase();
                    t.split_whitespace().all(|w| d.contains(&w.to_lowercase()))
                })
            })
    }
}

/// Turns an RFC 3339 time into the record timestamp format, so strings compare as times.
pub fn normalise_time(s: &str) -> Result<String, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("{s:?} is not an RFC 3339 time (e.g. 2026-11-22T10:00:00Z)"))?;
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(fmt)
        .map_err(|e| e.to_string())
}

/// Calls `visit` with each matching record and its stored line, in chain order, until `limit`
/// records were visited or `visit` returns false. Lines that do not parse are skipped
/// (`audit verify` is the tool that reports them).
pub fn query(
    dir: &Path,
    filter: &Filter,
    mut visit: impl FnMut(&Record, &str) -> bool,
) -> std::io::Result<()> {
    let files = record::list_files(dir)?;
    let mut seen = 0usize;
    for (i, (_, path)) in files.iter().enumerate() {
        // Skip whole files that end before the page starts.
        if let (Some(after), Some((_, next))) = (filter.after_seq, files.get(i + 1))
            && first_seq(next).is_some_and(|s| s <= after + 1)
        {
            continue;
        }
        let reader = BufReader::new(File::open(path)?);
        for line in reader.lines() {
            let Ok(line) = line else { break };
            let Ok(rec) = serde_json::from_str::<Record>(&line) else {
                continue;
            };
            if !filter.matches(&rec) {
                continue;
            }
            if filter.limit.is_some_and(|l| seen >= l) || !visit(&rec, &line) {
                return Ok(());
            }
            seen += 1;
        }
    }
    Ok(())
}

fn first_seq(path: &Path) -> Option<u64> {
    let mut line = String::new();
    BufReader::new(File::open(path).ok()?)
        .read_line(&mut line)
        .ok()?;
    serde_json::from_str::<Record>(&line).ok().map(|r| r.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_times() {
        assert_eq!(
            normalise_time("2026-11-22T10:00:00Z").unwrap(),
            "2026-11-22T10:00:00.000000Z"
        );
        assert_eq!(
            normalise_time("2026-11-22T11:00:00+01:00").unwrap(),
            "2026-11-22T10:00:00.000000Z"
        );
        assert!(normalise_time("yesterday").is_err());
    }
}
