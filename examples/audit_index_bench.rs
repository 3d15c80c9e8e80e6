//! The audit index benchmark (bench/audit_index.sh runs it in release mode): writes N records
//! (default 1,000,000) through the real audit writer, builds the index from the files, measures
//! the first page (50 newest) and count for each console filter, and the writer's throughput
//! with the index task tailing the files against without it.
//!
//!   cargo run --release --example audit_index_bench -- [RECORDS] [DIR]

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use gatehouse::audit::index::{AuditIndex, Indexer, open_ro};
use gatehouse::audit::index_query::{count, page};
use gatehouse::audit::query::Filter;
use gatehouse::audit::{AuditAction, AuditEvent, AuditLog, AuditOptions, Outcome};
use gatehouse::config::FsyncMode;
use gatehouse::identity::Protocol;

fn event(i: u64) -> AuditEvent {
    let (action, outcome) = match i % 10 {
        0..=3 => (AuditAction::Upload, Outcome::Ok),
        4..=6 => (AuditAction::Download, Outcome::Ok),
        7 => (AuditAction::Login, Outcome::Ok),
        8 => (AuditAction::Login, Outcome::Denied),
        _ => (AuditAction::Proxy, Outcome::Ok),
    };
    let user = format!("partner{}", (i / 10) % 500);
    let mut ev = AuditEvent::new(action, outcome).path(format!("/partners/{user}/inbox/f{i}.csv"));
    ev.user = Some(user);
    ev.protocol = Some([Protocol::Sftp, Protocol::Ftp, Protocol::Http][(i % 3) as usize]);
    ev.session = Some(format!("{:016x}", i / 20));
    ev.remote = Some(std::net::SocketAddr::from((
        [
            10,
            ((i / 65536) % 256) as u8,
            ((i / 256) % 256) as u8,
            (i % 256) as u8,
        ],
        40000,
    )));
    ev.bytes = Some(1000 + i % 100_000);
    if outcome == Outcome::Denied {
        ev.detail = Some("password: wrong password".into());
    }
    ev
}

fn opts(dir: &Path) -> AuditOptions {
    AuditOptions {
        dir: dir.to_path_buf(),
        fsync: FsyncMode::Batch,
        rotate_bytes: 64 * 1024 * 1024,
        node: "bench".into(),
        reserve_bytes: 8 * 1024 * 1024,
    }
}

/// Writes `n` records starting at `from` (detached: the writer batches them), returns records/s.
async fn write(log: &AuditLog, from: u64, n: u64) -> f64 {
    let t = Instant::now();
    for i in from..from + n {
        log.record_detached(event(i));
        // Keep the writer's queue bounded the way real traffic does (a reply per record).
        if i % 1000 == 999 {
            log.record(event(i)).await.unwrap();
        }
    }
    log.record(event(from + n)).await.unwrap();
    n as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir_in(args.get(2).map_or("/dev/shm", String::as_str)).unwrap();
    let dir = tmp.path().join("audit");
    let db = tmp.path().join("index.sqlite");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // 1. The writer alone.
    let (log, _) = AuditLog::open(opts(&dir)).unwrap();
    let alone = rt.block_on(write(&log, 0, n));
    rt.block_on(log.close()).unwrap();
    println!("write {n} records, no index:        {alone:>10.0} records/s");

    // 2. Index build from the files.
    let t = Instant::now();
    let mut ix = Indexer::open(&db, &dir).unwrap();
    let indexed = ix.catch_up().unwrap();
    let build = t.elapsed();
    drop(ix);
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "index build:                          {:>10.1} s for {indexed} records ({:.0} records/s), {} MiB",
        build.as_secs_f64(),
        indexed as f64 / build.as_secs_f64(),
        size / (1024 * 1024)
    );

    // 3. First pages per filter.
    let conn = open_ro(&db).unwrap();
    let some = |s: &str| Some(s.to_string());
    let ts_of = |seq: u64| -> String {
        conn.query_row("SELECT ts FROM records WHERE seq = ?1", [seq as i64], |r| {
            r.get(0)
        })
        .unwrap()
    };
    let (mid_from, mid_to) = (ts_of(n / 2), ts_of(n / 2 + 5000));
    let filters: Vec<(&str, Filter)> = vec![
        ("none (newest 50)", Filter::default()),
        (
            "user",
            Filter {
                user: some("partner123"),
                ..Default::default()
            },
        ),
        (
            "protocol",
            Filter {
                protocol: some("ftp"),
                ..Default::default()
            },
        ),
        (
            "action + outcome",
            Filter {
                action: some("login"),
                outcome: some("denied"),
                ..Default::default()
            },
        ),
        (
            "path prefix",
            Filter {
                path_prefix: some("/partners/partner77"),
                ..Default::default()
            },
        ),
        (
            "session",
            Filter {
                session: some(&format!("{:016x}", n / 40)),
                ..Default::default()
            },
        ),
        (
            "remote address",
            Filter {
                remote: some("10.3.7.9"),
                ..Default::default()
            },
        ),
        (
            "time range (all)",
            Filter {
                since: some("2000-01-01T00:00:00.000000Z"),
                until: some("2100-01-01T00:00:00.000000Z"),
                ..Default::default()
            },
        ),
        (
            "time range (mid, ~5k)",
            Filter {
                since: Some(mid_from.clone()),
                until: Some(mid_to.clone()),
                ..Default::default()
            },
        ),
        (
            "user + time range",
            Filter {
                user: some("partner250"),
                since: Some(mid_from.clone()),
                ..Default::default()
            },
        ),
        (
            "free text",
            Filter {
                text: some("wrong password"),
                ..Default::default()
            },
        ),
        (
            "user + action + text",
            Filter {
                user: some("partner9"),
                action: some("login"),
                text: some("wrong"),
                ..Default::default()
            },
        ),
    ];
    println!(
        "{:<24} {:>12} {:>12} {:>10}",
        "filter", "page 50 ms", "count ms", "matches"
    );
    for (name, f) in filters {
        let f = Filter {
            newest_first: true,
            limit: Some(50),
            ..f
        };
        let mut pages = Vec::new();
        let mut counts = Vec::new();
        let mut matches = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let p = page(&conn, &f).unwrap();
            pages.push(t.elapsed());
            assert!(p.len() <= 50);
            let t = Instant::now();
            matches = count(&conn, &f).unwrap();
            counts.push(t.elapsed());
        }
        println!(
            "{name:<24} {:>12.1} {:>12.1} {matches:>10}",
            median(pages).as_secs_f64() * 1000.0,
            median(counts).as_secs_f64() * 1000.0
        );
    }
    drop(conn);

    // 4. The writer with the index tailing it.
    let more = n / 5;
    let (log, _) = AuditLog::open(opts(&dir)).unwrap();
    let (with, lag) = rt.block_on(async {
        let stop = tokio_util::sync::CancellationToken::new();
        let index = AuditIndex::start(db.clone(), dir.clone(), log.written(), stop.clone())
            .await
            .unwrap();
        let rate = write(&log, n + 1, more).await;
        let end = *log.written().borrow();
        let t = Instant::now();
        index.wait_for(end, Duration::from_secs(120)).await.unwrap();
        let lag = t.elapsed();
        stop.cancel();
        (rate, lag)
    });
    rt.block_on(log.close()).unwrap();
    println!(
        "write {more} more records, index on:  {with:>10.0} records/s (no index: {alone:.0}); index caught up {:.0} ms after the last write",
        lag.as_secs_f64() * 1000.0
    );
}
