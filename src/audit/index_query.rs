//! Queries over the audit index: the same [`Filter`] as the file scan, answered from SQLite
//! with keyset pagination by seq (each filter has an index whose implicit second column is the
//! seq, so a first page reads about a page of rows), counts, and the console's aggregates.

use rusqlite::types::Value;
use rusqlite::{Connection, Row};

use super::index::IndexError;
use super::query::Filter;
use super::record::Record;

fn sql_err(source: rusqlite::Error) -> IndexError {
    IndexError::Sql {
        path: "query".into(),
        source,
    }
}

/// An FTS5 query for free text: each word quoted (so operators in it are just text), the last
/// one a prefix.
fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\""))
        .collect();
    if words.is_empty() {
        return None;
    }
    Some(format!("{}*", words.join(" ")))
}

/// How far back the writer's clock may step without a time filter missing records (seconds;
/// NTP slews by milliseconds, and a larger step back is logged by any sane host).
const CLOCK_MARGIN: i64 = 10;

/// A record timestamp moved by `secs` (unchanged if it does not parse).
fn shift(ts: &str, secs: i64) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::PrimitiveDateTime::parse(ts, fmt)
        .ok()
        .and_then(|t| t.checked_add(time::Duration::seconds(secs)))
        .and_then(|t| t.format(fmt).ok())
        .unwrap_or_else(|| ts.to_string())
}

/// The WHERE clause of a filter and its parameters.
fn where_clause(f: &Filter) -> (String, Vec<Value>) {
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    let mut eq = |col: &str, v: &Option<String>, conds: &mut Vec<String>| {
        if let Some(v) = v {
            args.push(Value::Text(v.clone()));
            conds.push(format!("{col} = ?{}", args.len()));
        }
    };
    eq("user", &f.user, &mut conds);
    eq("protocol", &f.protocol, &mut conds);
    eq("action", &f.action, &mut conds);
    eq("outcome", &f.outcome, &mut conds);
    eq("session", &f.session, &mut conds);
    if let Some(r) = &f.remote {
        let ip = super::index::ip_of(r).to_string();
        args.push(Value::Text(ip));
        conds.push(format!("ip = ?{}", args.len()));
    }
    if let Some(p) = &f.path_prefix {
        let p = p.trim_end_matches('/');
        if p.is_empty() {
            conds.push("path IS NOT NULL".into());
        } else {
            // Whole segments: the path itself, or anything under `p/` ('0' sorts right after '/').
            args.push(Value::Text(p.to_string()));
            let n = args.len();
            conds.push(format!(
                "(path = ?{n} OR (path >= ?{n} || '/' AND path < ?{n} || '0'))"
            ));
        }
    }
    // Times become a seq range (records are written in time order, so ts rises with seq), found
    // with one lookup in the ts index each, widened by CLOCK_MARGIN for a clock stepped back;
    // the exact times then filter the rows of that range (`+ts`: not through the ts index, which
    // would make SQLite sort every row in the range to page by seq).
    if let Some(s) = &f.since {
        args.push(Value::Text(shift(s, -CLOCK_MARGIN)));
        args.push(Value::Text(s.clone()));
        let n = args.len();
        conds.push(format!(
            "seq >= (SELECT seq FROM records WHERE ts >= ?{} ORDER BY ts, seq LIMIT 1) AND +ts >= ?{n}",
            n - 1
        ));
    }
    if let Some(u) = &f.until {
        args.push(Value::Text(shift(u, CLOCK_MARGIN)));
        args.push(Value::Text(u.clone()));
        let n = args.len();
        conds.push(format!(
            "seq <= (SELECT seq FROM records WHERE ts < ?{} ORDER BY ts DESC, seq DESC LIMIT 1) AND +ts < ?{n}",
            n - 1
        ));
    }
    if let Some(a) = f.after_seq {
        args.push(Value::Integer(a.min(i64::MAX as u64) as i64));
        conds.push(format!("seq > ?{}", args.len()));
    }
    if let Some(b) = f.before_seq {
        args.push(Value::Integer(b.min(i64::MAX as u64) as i64));
        conds.push(format!("seq < ?{}", args.len()));
    }
    if let Some(t) = f.text.as_deref() {
        match fts_query(t) {
            Some(q) => {
                args.push(Value::Text(q));
                conds.push(format!(
                    "seq IN (SELECT rowid FROM detail_fts WHERE detail_fts MATCH ?{})",
                    args.len()
                ));
            }
            None => conds.push("0".into()),
        }
    }
    if conds.is_empty() {
        (String::new(), args)
    } else {
        (format!("WHERE {}", conds.join(" AND ")), args)
    }
}

const COLUMNS: &str = "seq, ts, node, protocol, session, user, remote, action, path, to_path, \
     bytes, sha256, status, outcome, detail, prev, hash";

fn record_of(r: &Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        seq: r.get::<_, i64>(0)? as u64,
        ts: r.get(1)?,
        node: r.get(2)?,
        protocol: r.get(3)?,
        session: r.get(4)?,
        user: r.get(5)?,
        remote: r.get(6)?,
        action: r.get(7)?,
        path: r.get(8)?,
        to: r.get(9)?,
        bytes: r.get::<_, Option<i64>>(10)?.map(|b| b as u64),
        sha256: r.get(11)?,
        status: r.get(12)?,
        outcome: r.get(13)?,
        detail: r.get(14)?,
        prev: r.get(15)?,
        hash: r.get(16)?,
    })
}

/// Calls `visit` with each matching record, in seq order (newest first when the filter says
/// so), until `limit` records or `visit` returns false.
pub fn for_each(
    conn: &Connection,
    f: &Filter,
    mut visit: impl FnMut(Record) -> bool,
) -> Result<(), IndexError> {
    let (w, args) = where_clause(f);
    let order = if f.newest_first { "DESC" } else { "ASC" };
    let limit = f.limit.map_or(-1, |l| l.min(i64::MAX as usize) as i64);
    let sql = format!("SELECT {COLUMNS} FROM records {w} ORDER BY seq {order} LIMIT {limit}");
    let mut stmt = conn.prepare(&sql).map_err(sql_err)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(args))
        .map_err(sql_err)?;
    while let Some(row) = rows.next().map_err(sql_err)? {
        if !visit(record_of(row).map_err(sql_err)?) {
            break;
        }
    }
    Ok(())
}

/// The matching records, as one page.
pub fn page(conn: &Connection, f: &Filter) -> Result<Vec<Record>, IndexError> {
    let mut out = Vec::new();
    for_each(conn, f, |r| {
        out.push(r);
        true
    })?;
    Ok(out)
}

/// How many records match (pagination bounds ignored).
pub fn count(conn: &Connection, f: &Filter) -> Result<u64, IndexError> {
    let f = Filter {
        after_seq: None,
        before_seq: None,
        limit: None,
        ..f.clone()
    };
    let (w, args) = where_clause(&f);
    let n: i64 = conn
        .query_row(
            &format!("SELECT count(*) FROM records {w}"),
            rusqlite::params_from_iter(args),
            |r| r.get(0),
        )
        .map_err(sql_err)?;
    Ok(n as u64)
}

/// One bucket of the overview: a door (or user) and an hour, with counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Door, user or hour label.
    pub key: String,
    /// `YYYY-MM-DDTHH` (empty for per-user rows).
    pub hour: String,
    /// Records.
    pub count: u64,
    /// Bytes moved.
    pub bytes: u64,
}

fn buckets(conn: &Connection, sql: &str, since: &str) -> Result<Vec<Bucket>, IndexError> {
    let mut stmt = conn.prepare(sql).map_err(sql_err)?;
    let rows = stmt
        .query_map([since], |r| {
            Ok(Bucket {
                key: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                hour: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                count: r.get::<_, i64>(2)? as u64,
                bytes: r.get::<_, Option<i64>>(3)?.unwrap_or(0) as u64,
            })
        })
        .map_err(sql_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql_err)
}

/// Transfers (uploads and downloads that completed) per door per hour since `since`.
pub fn transfers_per_hour(conn: &Connection, since: &str) -> Result<Vec<Bucket>, IndexError> {
    buckets(
        conn,
        "SELECT protocol, substr(ts, 1, 13), count(*), sum(bytes) FROM records
         WHERE ts >= ?1 AND action IN ('upload', 'download') AND outcome = 'ok'
         GROUP BY 1, 2 ORDER BY 2, 1",
        since,
    )
}

/// The users who moved the most since `since`.
pub fn top_users(conn: &Connection, since: &str) -> Result<Vec<Bucket>, IndexError> {
    buckets(
        conn,
        "SELECT user, '', count(*), sum(bytes) FROM records
         WHERE ts >= ?1 AND action IN ('upload', 'download') AND outcome = 'ok' AND user IS NOT NULL
         GROUP BY 1 ORDER BY 4 DESC, 3 DESC LIMIT 10",
        since,
    )
}

/// Refused logins per hour since `since`; `bytes` holds how many of them started a ban.
pub fn refused_logins_per_hour(conn: &Connection, since: &str) -> Result<Vec<Bucket>, IndexError> {
    buckets(
        conn,
        "SELECT 'refused', substr(ts, 1, 13), count(*),
                sum(CASE WHEN detail LIKE '%ban started%' THEN 1 ELSE 0 END) FROM records
         WHERE ts >= ?1 AND action = 'login' AND outcome = 'denied'
         GROUP BY 2 ORDER BY 2",
        since,
    )
}

/// Where a search was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The index (it had every record in the files).
    Index,
    /// A scan of the files (no index, or one behind them).
    Files,
}

/// Whether the index at `db` holds every record now in `dir`.
pub fn index_is_current(db: &std::path::Path, dir: &std::path::Path) -> bool {
    let Ok(conn) = super::index::open_ro(db) else {
        return false;
    };
    let last: rusqlite::Result<Option<i64>> =
        conn.query_row("SELECT max(seq) FROM records", [], |r| r.get(0));
    let Ok(last) = last else { return false };
    let last = last.unwrap_or(0) as u64;
    super::tail::last_seq(dir).is_ok_and(|in_files| in_files == last)
}

/// Calls `visit` with each matching record and its stored line: from the index at `db` when it
/// is current, else by scanning the files (oldest first there, whatever the filter says).
pub fn search(
    db: Option<&std::path::Path>,
    dir: &std::path::Path,
    f: &Filter,
    mut visit: impl FnMut(&Record, &str) -> bool,
) -> Result<Source, IndexError> {
    if let Some(db) = db.filter(|db| index_is_current(db, dir)) {
        let conn = super::index::open_ro(db)?;
        for_each(&conn, f, |r| visit(&r, &r.expected_line()))?;
        return Ok(Source::Index);
    }
    super::query::query(dir, f, visit)?;
    Ok(Source::Files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::index::Indexer;
    use crate::audit::{AuditAction, AuditEvent, AuditLog, AuditOptions, Outcome};
    use crate::config::FsyncMode;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_filters_pages_counts_and_text_like_the_file_scan() {
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit");
        let (log, _) = AuditLog::open(AuditOptions {
            dir: audit.clone(),
            fsync: FsyncMode::Batch,
            rotate_bytes: 64 * 1024,
            node: "t".into(),
            reserve_bytes: 1024 * 1024,
        })
        .unwrap();
        for i in 0..2000u64 {
            let (action, outcome) = match i % 4 {
                0 => (AuditAction::Upload, Outcome::Ok),
                1 => (AuditAction::Download, Outcome::Ok),
                2 => (AuditAction::Login, Outcome::Denied),
                _ => (AuditAction::Proxy, Outcome::Ok),
            };
            let mut ev = AuditEvent::new(action, outcome)
                .path(format!("/partners/u{}/inbox/f{i}.csv", i % 7))
                .detail(format!("note number {i} validation failed"));
            ev.user = Some(format!("u{}", i % 7));
            log.record(ev).await.unwrap();
        }
        log.close().await.unwrap();
        let db = dir.path().join("ix.sqlite");
        let mut ix = Indexer::open(&db, &audit).unwrap();
        assert_eq!(ix.catch_up().unwrap(), 2000);
        assert_eq!(ix.status().verified_seq, 2000);
        assert!(ix.status().broken.is_none());
        let conn = crate::audit::index::open_ro(&db).unwrap();

        let filters = [
            Filter {
                user: Some("u3".into()),
                ..Default::default()
            },
            Filter {
                action: Some("login".into()),
                outcome: Some("denied".into()),
                ..Default::default()
            },
            Filter {
                path_prefix: Some("/partners/u2".into()),
                after_seq: Some(100),
                ..Default::default()
            },
            Filter {
                text: Some("number 17".into()),
                ..Default::default()
            },
        ];
        for f in filters {
            let mut scan = Vec::new();
            crate::audit::query::query(&audit, &f, |r, _| {
                scan.push(r.clone());
                true
            })
            .unwrap();
            // Text: the index matches words (a prefix for the last), the scan substrings.
            if f.text.is_some() {
                scan.retain(|r| {
                    r.detail
                        .as_deref()
                        .is_some_and(|d| d.split(' ').nth(2).is_some_and(|n| n.starts_with("17")))
                });
            }
            let got = page(&conn, &f).unwrap();
            assert_eq!(got, scan, "{f:?}");
            if f.after_seq.is_none() {
                assert_eq!(count(&conn, &f).unwrap(), scan.len() as u64);
            }
        }
        // A time range: the same records as the scan's.
        let mut all = Vec::new();
        crate::audit::query::query(&audit, &Filter::default(), |r, _| {
            all.push(r.clone());
            true
        })
        .unwrap();
        let f = Filter {
            since: Some(all[499].ts.clone()),
            until: Some(all[1499].ts.clone()),
            user: Some("u2".into()),
            ..Default::default()
        };
        let mut scan = Vec::new();
        crate::audit::query::query(&audit, &f, |r, _| {
            scan.push(r.clone());
            true
        })
        .unwrap();
        assert!(!scan.is_empty());
        assert_eq!(page(&conn, &f).unwrap(), scan);
        assert_eq!(count(&conn, &f).unwrap(), scan.len() as u64);
        // Newest first, keyset by seq.
        let f = Filter {
            user: Some("u1".into()),
            newest_first: true,
            limit: Some(5),
            ..Default::default()
        };
        let p1 = page(&conn, &f).unwrap();
        let p2 = page(
            &conn,
            &Filter {
                before_seq: Some(p1[4].seq),
                ..f.clone()
            },
        )
        .unwrap();
        assert!(p1.windows(2).all(|w| w[0].seq > w[1].seq));
        assert!(p2[0].seq < p1[4].seq);
        assert_eq!(
            transfers_per_hour(&conn, "2000")
                .unwrap()
                .iter()
                .map(|b| b.count)
                .sum::<u64>(),
            1000
        );
    }

    #[test]
    fn times_shift_for_the_clock_margin() {
        assert_eq!(
            shift("2026-12-01T00:02:00.000001Z", -300),
            "2026-11-30T23:57:00.000001Z"
        );
        assert_eq!(shift("garbage", 5), "garbage");
    }

    #[test]
    fn free_text_is_quoted_word_by_word() {
        assert_eq!(
            fts_query("a\"b OR c").as_deref(),
            Some("\"ab\" \"OR\" \"c\"*")
        );
        assert_eq!(fts_query("  \"\" "), None);
    }
}
