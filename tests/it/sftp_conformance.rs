//! SFTP conformance details (issue 11): OpenSSH's status wording, `statvfs@openssh.com` (`df`)
//! and `hardlink@openssh.com` (`ln`) with OpenSSH's own client, read-write opens and random
//! writes on local disk with the audit record's sha256 of the final content, and clear
//! refusals of all of these on S3; names no client could address are not listed.

use std::process::Command;
use std::time::Duration;

use crate::harness::{Gateway, python, root, run_with_timeout, text};
use crate::sftp::{Store, config, inbox, key, seed, sftp_batch};

/// Runs the paramiko conformance script in its local-disk mode (edits in place, random
/// writes) and checks the audit record of its out-of-order file against the final content's
/// sha256, which it returns.
pub fn in_place_edits_recorded(gw: &Gateway) -> String {
    let said = paramiko(gw, Store::Disk);
    assert!(said.contains("ok disk"), "{said}");
    let sha = said
        .lines()
        .find_map(|l| l.strip_prefix("sha256 rand.bin "))
        .unwrap()
        .to_string();
    let rec = gw
        .wait_audit(|r| r["action"] == "upload" && r["path"] == "/partners/acme/inbox/rand.bin")
        .unwrap();
    assert_eq!(
        rec["sha256"], sha,
        "the record hashes the final content: {rec}"
    );
    sha
}

fn paramiko(gw: &Gateway, store: Store) -> String {
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/py/sftp_conformance.py"))
        .arg(gw.sftp.to_string());
    if store == Store::S3 {
        cmd.arg("--s3");
    }
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn openssh_df_ln_and_in_place_edits_on_disk() {
    let gw = Gateway::start(&config(Store::Disk));
    inbox(&gw, Store::Disk);
    seed(&gw, Store::Disk, "readonly/catalog.csv", b"sku\n1\n");
    in_place_edits_recorded(&gw);
    let dir = tempfile::tempdir().unwrap();
    let k = key(dir.path(), "client_ed25519");
    let (ok, out) = sftp_batch(
        &gw,
        &k,
        "df -h\nln inbox/base.bin inbox/linked.bin\nls inbox\n",
        &[],
    );
    assert!(ok, "{out}");
    assert!(out.contains("Size") && out.contains("Avail"), "df: {out}");
    assert!(out.contains("linked.bin"), "ln: {out}");
    assert_eq!(
        std::fs::read(gw.path("data/partners/acme/inbox/linked.bin")).unwrap(),
        std::fs::read(gw.path("data/partners/acme/inbox/base.bin")).unwrap()
    );
    let rec = gw
        .wait_audit(|r| r["action"] == "link" && r["outcome"] == "ok")
        .unwrap();
    assert_eq!(rec["to"], "/partners/acme/inbox/linked.bin");
    // A link into the read-only area is refused (it would create a file there).
    let (ok, out) = sftp_batch(&gw, &k, "ln inbox/base.bin readonly/x.bin\n", &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("Permission denied"), "{out}");
}

#[test]
fn s3_refuses_in_place_edits_df_and_ln_clearly() {
    let gw = Gateway::start(&config(Store::S3));
    inbox(&gw, Store::S3);
    seed(&gw, Store::S3, "readonly/catalog.csv", b"sku\n1\n");
    paramiko(&gw, Store::S3);
    let dir = tempfile::tempdir().unwrap();
    let k = key(dir.path(), "client_ed25519");
    // OpenSSH's `df` asks quietly and prints no reason; the refusal is its exit status.
    let (ok, out) = sftp_batch(&gw, &k, "df\n", &[]);
    assert!(!ok, "{out}");
    let (ok, out) = sftp_batch(&gw, &k, "ln inbox/base.bin inbox/l.bin\n", &[]);
    assert!(!ok && out.contains("Operation unsupported"), "{out}");
}

#[test]
fn names_no_client_can_address_are_not_listed() {
    let gw = Gateway::start(&config(Store::Disk));
    inbox(&gw, Store::Disk);
    let d = gw.path("data/partners/acme/inbox");
    std::fs::write(d.join("ok.csv"), "x").unwrap();
    std::fs::write(d.join("back\\slash.csv"), "x").unwrap();
    std::fs::write(d.join("ctl\u{1}char.csv"), "x").unwrap();
    {
        use std::os::unix::ffi::OsStrExt;
        let bad = std::ffi::OsStr::from_bytes(b"latin1-\xe9.csv");
        std::fs::write(d.join(bad), "x").unwrap();
    }
    let (code, body) = crate::http_files::curl(&["-u", "acme:secret", &gw.url("/v1/files/inbox/")]);
    assert_eq!(code, 200, "{body}");
    let names: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&body)
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["ok.csv"], "only the reachable name is listed");
    let dir = tempfile::tempdir().unwrap();
    let k = key(dir.path(), "client_ed25519");
    let (ok, out) = sftp_batch(&gw, &k, "ls -1 inbox\n", &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("ok.csv") && !out.contains("slash") && !out.contains("latin1"),
        "{out}"
    );
}
