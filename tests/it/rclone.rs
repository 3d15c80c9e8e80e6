//! Stock rclone over its sftp and ftp backends, on local disk and on S3 (issue 11): `rclone sync`
//! up, `rclone check --download` (byte for byte), changes synced again (a file replaced, one
//! deleted, one added, a directory removed), and `rclone sync` back down into an empty
//! directory, compared with the source. No rclone option is changed from its defaults except
//! where to connect.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::{Gateway, make_bucket, moto, run_with_timeout, text, unique, write_random};

/// rclone's obscured form of "secret" (`rclone obscure secret`), computed once.
fn obscured() -> String {
    let out = run_with_timeout(
        Command::new("rclone").args(["obscure", "secret"]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "rclone obscure: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn rclone(args: &[&str]) -> Output {
    run_with_timeout(
        Command::new("rclone")
            .args(args)
            // No user config file; nothing but the connection string configures the remote.
            .args([
                "--config",
                "/dev/null",
                "--low-level-retries",
                "1",
                "--retries",
                "1",
            ]),
        Duration::from_secs(300),
    )
}

fn ok(out: &Output, what: &str) {
    assert!(out.status.success(), "rclone {what} failed:\n{}", text(out));
    // rclone exits 0 after logging some errors (a modification time it could not set): none.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ERROR"),
        "rclone {what} logged errors:\n{stderr}"
    );
}

/// A tree with the shapes partners' folders have: nested directories, an empty file, names with
/// spaces and non-ASCII letters, a file larger than an S3 part (5 MiB).
fn make_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("invoices/2026/11")).unwrap();
    std::fs::create_dir_all(dir.join("old/deep")).unwrap();
    write_random(&dir.join("invoices/2026/11/inv-001.pdf"), 70_000);
    write_random(&dir.join("invoices/2026/11/inv 002 (copy).pdf"), 1);
    std::fs::write(dir.join("invoices/empty.txt"), "").unwrap();
    write_random(&dir.join("Übersicht-größe.csv"), 12_345);
    write_random(&dir.join("big.bin"), 6 << 20);
    write_random(&dir.join("old/deep/gone.txt"), 100);
}

fn diff(a: &Path, b: &Path) {
    let out = run_with_timeout(
        Command::new("diff").arg("-r").arg(a).arg(b),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "trees differ:\n{}", text(&out));
}

/// `keeps_times`: the storage keeps modification times (local disk; object stores keep the
/// upload's time and ignore the client's).
fn round_trip(gw: &Gateway, remote: &str, keeps_times: bool) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let src_s = src.to_str().unwrap();
    ok(&rclone(&["sync", src_s, remote]), "sync up");
    ok(&rclone(&["check", "--download", src_s, remote]), "check");
    // Changes: one file replaced, one deleted, one added, a directory emptied away.
    write_random(&src.join("invoices/2026/11/inv-001.pdf"), 80_000);
    std::fs::remove_file(src.join("invoices/empty.txt")).unwrap();
    write_random(&src.join("invoices/2026/11/inv-003.pdf"), 5_000);
    std::fs::remove_dir_all(src.join("old")).unwrap();
    ok(&rclone(&["sync", src_s, remote]), "sync of changes");
    ok(
        &rclone(&["check", "--download", src_s, remote]),
        "check after changes",
    );
    if keeps_times {
        // Times were kept (SETSTAT, MFMT): a sync with nothing changed uploads nothing.
        let uploads = |gw: &Gateway| {
            gw.audit()
                .iter()
                .filter(|r| r["action"] == "upload")
                .count()
        };
        let before = uploads(gw);
        ok(
            &rclone(&["sync", src_s, remote]),
            "sync with nothing changed",
        );
        assert_eq!(uploads(gw), before, "an unchanged file was uploaded again");
    }
    // And back down, into an empty directory.
    let back = work.path().join("back");
    std::fs::create_dir_all(&back).unwrap();
    ok(
        &rclone(&["sync", remote, back.to_str().unwrap()]),
        "sync down",
    );
    diff(&src, &back);
    // Every upload went through the audit log with its digest.
    let recs = gw.audit();
    let uploads = recs
        .iter()
        .filter(|r| r["action"] == "upload" && r["outcome"] == "ok")
        .count();
    assert!(uploads >= 8, "only {uploads} upload records");
    assert!(
        recs.iter()
            .any(|r| r["action"] == "delete" && r["outcome"] == "ok"),
        "the deletion was not recorded"
    );
}

fn remote(kind: &str, port: u16, dir: &str) -> String {
    format!(
        ":{kind},host=127.0.0.1,port={port},user=acme,pass={}:{dir}",
        obscured()
    )
}

fn gateway(with_s3: bool) -> Gateway {
    let cfg = crate::security::config("");
    let cfg = if with_s3 {
        let bucket = unique("rclone");
        make_bucket(&bucket);
        crate::faults::s3_config(&moto().endpoint, &bucket, "")
    } else {
        cfg
    };
    let gw = Gateway::start(&cfg);
    std::fs::create_dir_all(gw.path("data/acme")).unwrap();
    gw
}

#[test]
fn rclone_sftp_on_disk() {
    let gw = gateway(false);
    round_trip(&gw, &remote("sftp", gw.sftp, "partner/outbox"), true);
}

#[test]
fn rclone_sftp_on_s3() {
    let gw = gateway(true);
    round_trip(&gw, &remote("sftp", gw.sftp, "lake/partner"), false);
}

#[test]
fn rclone_ftp_on_disk() {
    let gw = gateway(false);
    round_trip(&gw, &remote("ftp", gw.ftp, "partner/outbox"), true);
}

#[test]
fn rclone_ftp_on_s3() {
    let gw = gateway(true);
    round_trip(&gw, &remote("ftp", gw.ftp, "lake/partner"), false);
}
