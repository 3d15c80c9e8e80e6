//! SFTP with real clients against the real binary, on local disk and on S3 (moto): OpenSSH
//! `sftp -b` with a key, curl `sftp://` with a password, paramiko (random access, stat, listdir,
//! rename, errors, chroot escapes), an interrupted upload, wrong key and wrong password, and a
//! large round trip with the gateway's peak memory checked.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{
    Gateway, make_bucket, python, root, run_with_timeout, sha256_file, text, unique, write_random,
};

/// A private key copied with mode 0600 (git does not keep file modes; ssh insists).
pub fn key(dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    std::fs::copy(root().join("fixtures/ssh").join(name), &dst).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).unwrap();
    dst
}

fn pubkey(name: &str) -> String {
    std::fs::read_to_string(root().join("fixtures/ssh").join(format!("{name}.pub")))
        .unwrap()
        .trim()
        .to_string()
}

/// Storage under test: local disk, or a fresh S3 bucket on moto.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Store {
    Disk,
    S3,
}

/// A gateway config with SFTP + FTP + HTTP for user `acme` (home /partners/acme): read-only
/// everywhere, full rights in /inbox. Returns the config and the seeding the test needs.
pub fn config(store: Store) -> String {
    let backend = match store {
        Store::Disk => "kind = \"local\"\nroot = \"{dir}/data\"".to_string(),
        Store::S3 => {
            let bucket = unique("sftp");
            make_bucket(&bucket);
            format!(
                "kind = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{{s3}}\"\nregion = \"us-east-1\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\npart_size_mib = 5"
            )
        }
    };
    format!(
        r#"
[gateway]
state_dir = "{{dir}}/var"
shutdown_grace_secs = 5

[limits]
login_failures = {{ max = 50, window_secs = 60, ban_secs = 60 }}

[sftp]
listen = "127.0.0.1:{{sftp}}"
host_keys = ["{{dir}}/var/ssh_host_ed25519_key"]

[ftp]
listen = "127.0.0.1:{{ftp}}"
passive_ports = [{{pasv_lo}}, {{pasv_hi}}]
passive_host = "127.0.0.1"

[http]
listen = "127.0.0.1:{{http}}"

[backends.store]
{backend}

[[mounts]]
path = "/"
backend = "store"

[[groups]]
name = "partners"
permissions = [ {{ path = "/", allow = ["list", "read"] }},
                {{ path = "/inbox", allow = ["list", "read", "write", "overwrite", "delete", "mkdir", "rename"] }} ]

[[users]]
name = "acme"
password_hash = "{{secret_hash}}"
public_keys = ["{key}"]
home = "/partners/acme"
groups = ["partners"]

[[users]]
name = "httponly"
password_hash = "{{secret_hash}}"
protocols = ["http"]
permissions = [ {{ path = "/", allow = ["list", "read"] }} ]
"#,
        key = pubkey("client_ed25519")
    )
}

/// Puts a file into the gateway's storage for user acme through the HTTP API as an operator
/// would... acme cannot write there, so seed straight into the backend instead.
pub fn seed(gw: &Gateway, store: Store, rel: &str, data: &[u8]) {
    match store {
        Store::Disk => {
            let p = gw.path(&format!("data/partners/acme/{rel}"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        Store::S3 => {
            let cfg = std::fs::read_to_string(&gw.config_path).unwrap();
            let bucket = cfg
                .lines()
                .find_map(|l| l.strip_prefix("bucket = \""))
                .unwrap()
                .trim_end_matches('"');
            seed_key(bucket, &format!("partners/acme/{rel}"), data);
        }
    }
}

/// Puts an object straight into a moto bucket (as its owner would, outside the gateway).
pub fn seed_key(bucket: &str, key: &str, data: &[u8]) {
    let url = format!("{}/{bucket}/{key}", crate::harness::moto().endpoint);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("seed");
    std::fs::write(&f, data).unwrap();
    let out = run_with_timeout(
        Command::new("curl").args(["-sf", "-X", "PUT", "-T", f.to_str().unwrap(), &url]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// Creates acme's /inbox: a directory on disk, a directory marker on S3.
pub fn inbox(gw: &Gateway, store: Store) {
    match store {
        Store::Disk => std::fs::create_dir_all(gw.path("data/partners/acme/inbox")).unwrap(),
        Store::S3 => seed(gw, store, "inbox/.gatehouse-dir", b""),
    }
}

/// Runs an OpenSSH `sftp -b` batch as acme with a key; returns (success, stdout+stderr).
pub fn sftp_batch(gw: &Gateway, key_path: &Path, batch: &str, extra: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("batch");
    std::fs::write(&b, batch).unwrap();
    let out = run_with_timeout(
        Command::new("sftp")
            .args(["-P", &gw.sftp.to_string(), "-i"])
            .arg(key_path)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
            ])
            .args(extra)
            .arg("-b")
            .arg(&b)
            .arg("acme@127.0.0.1"),
        Duration::from_secs(600),
    );
    (out.status.success(), text(&out))
}

fn openssh_round_trip(store: Store) {
    let gw = Gateway::start(&config(store));
    inbox(&gw, store);
    seed(&gw, store, "readonly/catalog.csv", b"sku,price\n1,9.99\n");
    let dir = tempfile::tempdir().unwrap();
    let k = key(dir.path(), "client_ed25519");
    let up = dir.path().join("m.csv");
    write_random(&up, 3 * 1024 * 1024 + 17);
    let down = dir.path().join("back.csv");
    let batch = format!(
        "mkdir inbox/2026\nput {up} inbox/2026/m.csv\nls -l inbox/2026\nrename inbox/2026/m.csv inbox/2026/manifest.csv\nget inbox/2026/manifest.csv {down}\nget readonly/catalog.csv {dir}/catalog.csv\ncd inbox\npwd\nrm 2026/manifest.csv\nrmdir 2026\n",
        up = up.display(),
        down = down.display(),
        dir = dir.path().display()
    );
    let (ok, out) = sftp_batch(&gw, &k, &batch, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("manifest") || out.contains("m.csv"), "{out}");
    assert!(out.contains("/inbox"), "pwd shows the user's view: {out}");
    assert_eq!(sha256_file(&down), sha256_file(&up));
    assert_eq!(
        std::fs::read(dir.path().join("catalog.csv")).unwrap(),
        b"sku,price\n1,9.99\n"
    );
    // Refused: writing outside /inbox.
    let (ok, out) = sftp_batch(
        &gw,
        &k,
        &format!("put {} readonly/x.csv\n", up.display()),
        &[],
    );
    assert!(!ok, "{out}");
    assert!(out.to_lowercase().contains("permission denied"), "{out}");
    // Audit: login by key, upload with size and sha256, the refusal.
    let up_rec = gw
        .wait_audit(|r| r["action"] == "upload" && r["path"] == "/partners/acme/inbox/2026/m.csv")
        .unwrap();
    assert_eq!(up_rec["outcome"], "ok");
    assert_eq!(up_rec["protocol"], "sftp");
    assert_eq!(up_rec["bytes"], 3 * 1024 * 1024 + 17);
    assert_eq!(up_rec["sha256"], sha256_file(&up));
    assert!(
        gw.wait_audit(|r| r["action"] == "login"
            && r["user"] == "acme"
            && r["detail"] == "publickey")
            .is_some()
    );
    assert!(
        gw.wait_audit(|r| r["action"] == "download"
            && r["path"] == "/partners/acme/inbox/2026/manifest.csv"
            && r["sha256"] == sha256_file(&up))
            .is_some()
    );
    assert!(
        gw.wait_audit(|r| r["action"] == "upload"
            && r["outcome"] == "denied"
            && r["path"] == "/partners/acme/readonly/x.csv")
            .is_some()
    );
    assert!(
        gw.wait_audit(|r| r["action"] == "logout" && r["user"] == "acme")
            .is_some()
    );
}

#[test]
fn openssh_sftp_with_a_key_on_disk() {
    openssh_round_trip(Store::Disk);
}

#[test]
fn openssh_sftp_with_a_key_on_s3() {
    openssh_round_trip(Store::S3);
}

#[test]
fn openssh_negotiates_each_offered_cipher() {
    let gw = Gateway::start(&config(Store::Disk));
    let dir = tempfile::tempdir().unwrap();
    let k = key(dir.path(), "client_ed25519");
    for c in [
        "aes128-gcm@openssh.com",
        "chacha20-poly1305@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-ctr",
    ] {
        let (ok, out) = sftp_batch(&gw, &k, "ls\n", &["-c", c]);
        assert!(ok, "{c}: {out}");
    }
    let rsa = key(dir.path(), "client_rsa");
    let (ok, _) = sftp_batch(&gw, &rsa, "ls\n", &[]);
    assert!(!ok, "an RSA key that is not acme's is refused");
}

fn curl_sftp(store: Store) {
    let gw = Gateway::start(&config(store));
    inbox(&gw, store);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("invoice.pdf");
    write_random(&f, 700_000);
    let url = format!("sftp://127.0.0.1:{}/inbox/invoice.pdf", gw.sftp);
    let out = run_with_timeout(
        Command::new("curl").args([
            "-sS",
            "-k",
            "-u",
            "acme:secret",
            "-T",
            f.to_str().unwrap(),
            &url,
        ]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out));
    let back = dir.path().join("back.pdf");
    let out = run_with_timeout(
        Command::new("curl").args([
            "-sS",
            "-k",
            "-u",
            "acme:secret",
            "-o",
            back.to_str().unwrap(),
            &url,
        ]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(sha256_file(&back), sha256_file(&f));
    // Wrong password: refused, and recorded as a denied login with the name tried.
    let out = run_with_timeout(
        Command::new("curl").args([
            "-sS",
            "-k",
            "-u",
            "acme:nope",
            &format!("sftp://127.0.0.1:{}/inbox/", gw.sftp),
        ]),
        Duration::from_secs(60),
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        gw.wait_audit(|r| r["action"] == "login"
            && r["outcome"] == "denied"
            && r["user"] == "acme"
            && r["protocol"] == "sftp")
            .is_some()
    );
    // A user limited to HTTP cannot use SFTP even with the right password.
    let out = run_with_timeout(
        Command::new("curl").args([
            "-sS",
            "-k",
            "-u",
            "httponly:secret",
            &format!("sftp://127.0.0.1:{}/", gw.sftp),
        ]),
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let all = std::fs::read_to_string(gw.audit_dir().join("audit-000001.jsonl")).unwrap();
    assert!(
        !all.contains("nope") && !all.contains("\"secret\""),
        "no password in the audit log"
    );
}

#[test]
fn curl_sftp_with_a_password_on_disk() {
    curl_sftp(Store::Disk);
}

#[test]
fn curl_sftp_with_a_password_on_s3() {
    curl_sftp(Store::S3);
}

fn paramiko(store: Store) {
    let gw = Gateway::start(&config(store));
    seed(&gw, store, "readonly/seed.txt", b"seed");
    if store == Store::Disk {
        std::fs::create_dir_all(gw.path("data/partners/acme/inbox")).unwrap();
    }
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/py/sftp_paramiko.py")).args([
        &gw.sftp.to_string(),
        "acme",
        "secret",
    ]);
    if store == Store::S3 {
        cmd.arg("--s3");
    }
    let out = run_with_timeout(&mut cmd, Duration::from_secs(180));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        gw.wait_audit(|r| r["action"] == "rename" && r["to"] == "/partners/acme/inbox/other.bin")
            .is_some()
    );
}

#[test]
fn paramiko_random_access_errors_and_chroot_on_disk() {
    paramiko(Store::Disk);
}

#[test]
fn paramiko_random_access_errors_and_chroot_on_s3() {
    paramiko(Store::S3);
}

fn interrupted(store: Store) {
    let gw = Gateway::start(&config(store));
    if store == Store::Disk {
        std::fs::create_dir_all(gw.path("data/partners/acme/inbox")).unwrap();
    }
    let out = run_with_timeout(
        Command::new(python())
            .arg(root().join("tests/py/sftp_paramiko.py"))
            .args([
                &gw.sftp.to_string(),
                "acme",
                "secret",
                "--interrupt",
                "inbox/cut.bin",
            ]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out));
    let rec = gw
        .wait_audit(|r| r["action"] == "upload" && r["path"] == "/partners/acme/inbox/cut.bin")
        .expect("an upload record for the interrupted file");
    assert_eq!(rec["outcome"], "error", "{rec}");
    assert!(
        rec["detail"].as_str().unwrap().contains("interrupted"),
        "{rec}"
    );
    // Nothing at the final path, over any protocol.
    let (code, _) =
        crate::http_files::curl(&["-u", "acme:secret", &gw.url("/v1/files/inbox/cut.bin")]);
    assert_eq!(code, 404);
    if store == Store::Disk {
        assert!(!gw.path("data/partners/acme/inbox/cut.bin").exists());
        let staging = crate::harness::staged_files(&gw.path("data"));
        assert!(staging.is_empty(), "{staging:?}");
    }
}

#[test]
fn an_interrupted_upload_leaves_nothing_on_disk() {
    interrupted(Store::Disk);
}

#[test]
fn an_interrupted_upload_leaves_nothing_on_s3() {
    interrupted(Store::S3);
}

#[test]
fn wrong_keys_and_unknown_users_are_refused() {
    let gw = Gateway::start(&config(Store::Disk));
    let dir = tempfile::tempdir().unwrap();
    let other = key(dir.path(), "other_ed25519");
    let (ok, out) = sftp_batch(&gw, &other, "ls\n", &[]);
    assert!(!ok, "{out}");
    let out = run_with_timeout(
        Command::new("sftp")
            .args(["-P", &gw.sftp.to_string(), "-i"])
            .arg(key(dir.path(), "client_ed25519"))
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-b",
                "/dev/null",
                "nobody@127.0.0.1",
            ]),
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    // Keyboard-interactive and none are not offered.
    let out = run_with_timeout(
        Command::new("ssh").args([
            "-p",
            &gw.sftp.to_string(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "PreferredAuthentications=keyboard-interactive",
            "acme@127.0.0.1",
            "true",
        ]),
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("publickey") && err.contains("password"),
        "methods offered: {err}"
    );
    // A shell is refused even for a logged-in user.
    let out = run_with_timeout(
        Command::new("ssh")
            .args(["-p", &gw.sftp.to_string(), "-i"])
            .arg(key(dir.path(), "client_ed25519"))
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "acme@127.0.0.1",
                "cat /etc/passwd",
            ]),
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("root:"));
}

#[test]
fn a_large_round_trip_keeps_memory_flat() {
    let mib: u64 = std::env::var("GATEHOUSE_BIG_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let gw = Gateway::start(&config(Store::Disk));
    std::fs::create_dir_all(gw.path("data/partners/acme/inbox")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let k = key(dir.path(), "client_ed25519");
    let src = dir.path().join("big.bin");
    write_random(&src, mib << 20);
    let back = dir.path().join("back.bin");
    let before = gw.rss_kib();
    let (ok, out) = sftp_batch(
        &gw,
        &k,
        &format!(
            "put {} inbox/big.bin\nget inbox/big.bin {}\n",
            src.display(),
            back.display()
        ),
        &["-c", "aes128-gcm@openssh.com"],
    );
    assert!(ok, "{out}");
    assert_eq!(sha256_file(&back), sha256_file(&src));
    let peak = gw.peak_rss_kib();
    eprintln!("{mib} MiB SFTP put+get: RSS before {before} KiB, peak {peak} KiB");
    assert!(
        peak < before + 150 * 1024,
        "memory grew with the file: {before} -> {peak} KiB"
    );
}

#[test]
fn shutdown_lets_a_transfer_finish_then_exits_cleanly() {
    let mut gw = Gateway::start(&config(Store::Disk));
    std::fs::create_dir_all(gw.path("data/partners/acme/inbox")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let k = key(dir.path(), "client_ed25519");
    let src = dir.path().join("f.bin");
    write_random(&src, 64 << 20);
    // A slow upload (bandwidth-limited) in flight when SIGTERM arrives.
    let batch = dir.path().join("batch");
    std::fs::write(&batch, format!("put {} inbox/f.bin\n", src.display())).unwrap();
    let mut client = Command::new("sftp")
        .args(["-P", &gw.sftp.to_string(), "-l", "200000", "-i"])
        .arg(&k)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-b",
        ])
        .arg(&batch)
        .arg("acme@127.0.0.1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let status = gw.stop();
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
    let _ = client.wait();
    // Within the 5 s grace a 64 MiB upload at ~25 MiB/s completes; either way nothing partial.
    let final_path = gw.path("data/partners/acme/inbox/f.bin");
    if final_path.exists() {
        assert_eq!(sha256_file(&final_path), sha256_file(&src));
    }
    let verify = run_with_timeout(
        Command::new(crate::harness::bin())
            .args(["audit", "verify", "--dir"])
            .arg(gw.audit_dir()),
        Duration::from_secs(10),
    );
    assert!(verify.status.success(), "{}", text(&verify));
    let records = gw.audit();
    let last = records.last().unwrap();
    assert_eq!(last["action"], "config");
    assert!(
        last["detail"].as_str().unwrap().starts_with("stopped"),
        "{last}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "upload" && r["path"] == "/partners/acme/inbox/f.bin"),
        "the upload was recorded one way or the other"
    );
}
