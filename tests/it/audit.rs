//! The audit chain: written through the library's writer, checked by the library and by
//! `gatehouse audit verify`/`query`. Tampering of every kind is found and located; a torn final
//! line from a crash is reported, repaired at the next start, and the chain continues.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gatehouse::audit::verify::verify;
use gatehouse::audit::{AuditAction, AuditEvent, AuditLog, AuditOptions, Outcome};
use gatehouse::config::FsyncMode;

use crate::harness::{bin, run_with_timeout, text};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn opts(dir: &Path, rotate: u64, fsync: FsyncMode) -> AuditOptions {
    AuditOptions {
        dir: dir.to_path_buf(),
        fsync,
        rotate_bytes: rotate,
        node: "test".into(),
        reserve_bytes: 1024 * 1024,
    }
}

fn event(i: usize) -> AuditEvent {
    let mut ev = AuditEvent::new(AuditAction::Upload, Outcome::Ok).path(format!("/inbox/f{i}.csv"));
    ev.user = Some("acme".into());
    ev.bytes = Some(i as u64);
    ev
}

/// Writes `n` records and closes the log; returns any repair message.
fn write(dir: &Path, n: usize, rotate: u64) -> Option<String> {
    rt().block_on(async {
        let (log, repair) = AuditLog::open(opts(dir, rotate, FsyncMode::Always)).unwrap();
        for i in 0..n {
            log.record(event(i)).await.unwrap();
        }
        log.close().await.unwrap();
        repair
    })
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    v.sort();
    v
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(p: &Path, l: &[String]) {
    std::fs::write(p, l.iter().map(|x| format!("{x}\n")).collect::<String>()).unwrap();
}

#[test]
fn a_clean_chain_verifies() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), 50, 1 << 30);
    let r = verify(d.path()).unwrap();
    assert_eq!(r.records, 50);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
}

#[test]
fn concurrent_writers_get_one_contiguous_chain() {
    let d = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (log, _) = AuditLog::open(opts(d.path(), 1 << 30, FsyncMode::Always)).unwrap();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..200 {
                    seqs.push(log.record(event(t * 1000 + i)).await.unwrap());
                }
                seqs
            }));
        }
        let mut all: Vec<u64> = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        assert_eq!(all, (1..=1600).collect::<Vec<_>>());
        log.close().await.unwrap();
    });
    assert_eq!(verify(d.path()).unwrap().records, 1600);
}

#[test]
fn batch_mode_chains_and_syncs_on_close() {
    let d = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (log, _) = AuditLog::open(opts(d.path(), 1 << 30, FsyncMode::Batch)).unwrap();
        for i in 0..300 {
            log.record(event(i)).await.unwrap();
        }
        log.close().await.unwrap();
        // Closed: later records fail instead of vanishing.
        assert!(log.record(event(0)).await.is_err());
    });
    assert_eq!(verify(d.path()).unwrap().records, 300);
}

#[test]
fn one_changed_byte_is_found_with_file_and_seq() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), 20, 1 << 30);
    let f = &files(d.path())[0];
    let mut l = lines(f);
    l[9] = l[9].replace("f9.csv", "f8.csv");
    write_lines(f, &l);
    let e = verify(d.path()).unwrap_err();
    assert_eq!(e.seq, Some(10), "{e}");
    assert!(e.file.ends_with("audit-000001.jsonl"), "{e}");
    // The CLI says the same and exits 1.
    let out = run_with_timeout(
        Command::new(bin())
            .args(["audit", "verify", "--dir"])
            .arg(d.path()),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("audit-000001.jsonl") && s.contains("seq 10"),
        "{s}"
    );
}

#[test]
fn a_byte_changed_to_an_equivalent_escape_is_still_found() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), 3, 1 << 30);
    let f = &files(d.path())[0];
    let mut l = lines(f);
    // Same JSON value, different bytes: must not pass as untouched.
    l[1] = l[1].replacen("\"acme\"", "\"\\u0061cme\"", 1);
    write_lines(f, &l);
    assert_eq!(verify(d.path()).unwrap_err().seq, Some(2));
}

#[test]
fn a_deleted_line_is_found() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), 20, 1 << 30);
    let f = &files(d.path())[0];
    let mut l = lines(f);
    l.remove(4);
    write_lines(f, &l);
    let e = verify(d.path()).unwrap_err();
    assert_eq!(e.seq, Some(5), "{e}");
    // Deleting the very first line is found too (the first file must start at seq 1).
    let d = tempfile::tempdir().unwrap();
    write(d.path(), 5, 1 << 30);
    let f = &files(d.path())[0];
    let mut l = lines(f);
    l.remove(0);
    write_lines(f, &l);
    assert_eq!(verify(d.path()).unwrap_err().seq, Some(1));
}

#[test]
fn reordered_lines_are_found() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), 20, 1 << 30);
    let f = &files(d.path())[0];
    let mut l = lines(f);
    l.swap(6, 7);
    write_lines(f, &l);
    assert_eq!(verify(d.path()).unwrap_err().seq, Some(7));
}

#[test]
fn truncation_at_a_line_boundary_is_found_by_the_head() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), 20, 1 << 30);
    let f = &files(d.path())[0];
    let mut l = lines(f);
    l.truncate(15);
    write_lines(f, &l);
    let e = verify(d.path()).unwrap_err();
    assert!(e.reason.contains("removed from the end"), "{e}");
    assert_eq!(e.seq, Some(16));
}

#[test]
fn a_torn_tail_is_reported_then_repaired_and_the_chain_continues() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), 10, 1 << 30);
    let f = files(d.path())[0].clone();
    // A crash mid-write: half a record at the end.
    let mut bytes = std::fs::read(&f).unwrap();
    bytes.extend_from_slice(br#"{"seq":11,"ts":"2026-11-22T10:00:00.1"#);
    std::fs::write(&f, &bytes).unwrap();
    let r = verify(d.path()).unwrap();
    assert_eq!(r.records, 10);
    assert!(
        r.notes.iter().any(|n| n.contains("torn final line")),
        "{:?}",
        r.notes
    );
    // The next start cuts it (keeping the bytes aside) and the chain goes on from seq 10.
    let repair = write(d.path(), 5, 1 << 30);
    assert!(repair.is_some_and(|m| m.contains("torn")));
    let r = verify(d.path()).unwrap();
    assert_eq!(r.records, 15);
    assert!(
        r.notes.iter().any(|n| n.contains(".torn-")),
        "{:?}",
        r.notes
    );
}

#[test]
fn rotation_keeps_one_chain_across_files() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), 200, 4096);
    let fs = files(d.path());
    assert!(fs.len() >= 5, "rotated into {} files", fs.len());
    assert_eq!(verify(d.path()).unwrap().records, 200);
    // Restarting continues the chain in the last file.
    write(d.path(), 10, 4096);
    assert_eq!(verify(d.path()).unwrap().records, 210);
    // A missing middle file is found.
    std::fs::remove_file(&fs[2]).unwrap();
    let e = verify(d.path()).unwrap_err();
    assert!(e.reason.contains("missing"), "{e}");
}

#[test]
fn removing_old_files_by_retention_is_a_note_not_a_failure() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), 200, 4096);
    let fs = files(d.path());
    std::fs::remove_file(&fs[0]).unwrap();
    std::fs::remove_file(&fs[1]).unwrap();
    let r = verify(d.path()).unwrap();
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("earlier files were removed")),
        "{:?}",
        r.notes
    );
}

#[test]
fn query_filters_records() {
    let d = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (log, _) = AuditLog::open(opts(d.path(), 1 << 30, FsyncMode::Always)).unwrap();
        for i in 0..10 {
            let mut ev = event(i);
            if i % 2 == 1 {
                ev.user = Some("globex".into());
                ev.outcome = Outcome::Denied;
                ev.path = Some(format!("/outbox/x{i}"));
            }
            log.record(ev).await.unwrap();
        }
        log.close().await.unwrap();
    });
    let q = |args: &[&str]| {
        let out = run_with_timeout(
            Command::new(bin())
                .args(["audit", "query", "--dir"])
                .arg(d.path())
                .args(args),
            Duration::from_secs(10),
        );
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let json = q(&["--user", "globex", "--json"]);
    assert_eq!(json.lines().count(), 5);
    for l in json.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["user"], "globex");
        assert_eq!(v["outcome"], "denied");
    }
    assert_eq!(
        q(&["--outcome", "ok", "--path-prefix", "/inbox", "--json"])
            .lines()
            .count(),
        5
    );
    assert_eq!(
        q(&["--path-prefix", "/inb", "--json"]).lines().count(),
        0,
        "prefix is by whole segments"
    );
    assert_eq!(q(&["--limit", "3", "--json"]).lines().count(), 3);
    assert_eq!(
        q(&[
            "--since",
            "2000-01-01T00:00:00Z",
            "--until",
            "2001-01-01T00:00:00Z",
            "--json"
        ])
        .lines()
        .count(),
        0
    );
    let table = q(&["--user", "acme"]);
    assert!(table.lines().next().unwrap().contains("SEQ"), "{table}");
    assert_eq!(table.lines().count(), 6);
}
