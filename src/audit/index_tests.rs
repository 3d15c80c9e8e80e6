//! Tests of the audit index (index.rs).

use super::*;
use crate::audit::{AuditAction, AuditEvent, AuditLog, AuditOptions, Outcome};
use crate::config::FsyncMode;

async fn write(dir: &Path, n: u64, tag: &str) {
    let (log, _) = AuditLog::open(AuditOptions {
        dir: dir.to_path_buf(),
        fsync: FsyncMode::Batch,
        rotate_bytes: 4096,
        node: "t".into(),
        reserve_bytes: 64 * 1024,
    })
    .unwrap();
    for i in 0..n {
        log.record(AuditEvent::new(AuditAction::Upload, Outcome::Ok).path(format!("/{tag}/{i}")))
            .await
            .unwrap();
    }
    log.close().await.unwrap();
}

fn rows(db: &Path) -> i64 {
    open_ro(db)
        .unwrap()
        .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continues_a_log_rebuilds_for_another_and_finds_an_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, db) = (tmp.path().join("audit"), tmp.path().join("ix.sqlite"));
    write(&dir, 300, "a").await;
    assert_eq!(super::super::tail::last_seq(&dir).unwrap(), 300);
    let mut ix = Indexer::open(&db, &dir).unwrap();
    assert_eq!(ix.catch_up().unwrap(), 300);
    drop(ix);
    // More records: the reopened index continues where it was.
    write(&dir, 10, "b").await;
    let mut ix = Indexer::open(&db, &dir).unwrap();
    assert_eq!(ix.indexed(), 300);
    assert_eq!(ix.catch_up().unwrap(), 10);
    assert_eq!(ix.status().verified_seq, 310);
    drop(ix);
    assert_eq!(rows(&db), 310);
    // Another log in the same place: rebuilt from it.
    std::fs::remove_dir_all(&dir).unwrap();
    write(&dir, 5, "c").await;
    let mut ix = Indexer::open(&db, &dir).unwrap();
    assert_eq!(ix.indexed(), 0);
    assert_eq!(ix.catch_up().unwrap(), 5);
    drop(ix);
    assert_eq!(rows(&db), 5);
    // A file that is not a database is replaced by a rebuilt index.
    std::fs::write(&db, b"not a database at all, just bytes").unwrap();
    let mut ix = Indexer::open(&db, &dir).unwrap();
    assert_eq!(ix.catch_up().unwrap(), 5);
    drop(ix);
    // An edited record is named by the incremental check.
    let (dir2, db2) = (tmp.path().join("audit2"), tmp.path().join("ix2.sqlite"));
    write(&dir2, 50, "d").await;
    let files = crate::audit::record::list_files(&dir2).unwrap();
    let (_, path) = &files[1];
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, text.replacen("/d/", "/D/", 1)).unwrap();
    let mut ix = Indexer::open(&db2, &dir2).unwrap();
    ix.catch_up().unwrap();
    let broken = ix.status().broken.clone().unwrap();
    assert_eq!(broken.file, file_name(files[1].0));
    assert!(broken.reason.contains("edited"), "{broken:?}");
    assert_eq!(ix.status().verified_seq + 1, broken.seq);
}
