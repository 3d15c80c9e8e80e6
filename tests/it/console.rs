//! The operator console and the audit index, end to end: a log of 120,000 records written
//! through the library's writer, the gateway indexing it at start, and the console driven in
//! Debian's chromium by playwright-core (tests/browser/console.mjs): log in, filter, page,
//! expand, export, a live SFTP upload in the tail and in live sessions, ending that session,
//! per-user history, chain status, overview; a non-operator refused. Screenshots go to
//! `target/console-screenshots/`. Also an FTP session ended from the console (ftplib sees 421).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gatehouse::audit::{AuditAction, AuditEvent, AuditLog, AuditOptions, Outcome};
use gatehouse::config::FsyncMode;
use gatehouse::identity::Protocol;

use crate::harness::{Gateway, peers_dir, python, root, run_with_timeout, text};
use crate::http_files::curl;

const RECORDS: u64 = 120_000;

/// The console tests' config; `audit_dir` replaces the default `<state>/audit`.
fn config(audit_dir: Option<&Path>) -> String {
    let audit = audit_dir
        .map(|d| format!("[audit]\ndir = \"{}\"\n", d.display()))
        .unwrap_or_default();
    format!(
        r#"
[gateway]
state_dir = "{{dir}}/var"
shutdown_grace_secs = 5

{audit}
[http]
listen = "127.0.0.1:{{http}}"

[sftp]
listen = "127.0.0.1:{{sftp}}"
host_keys = ["{{dir}}/var/host_ed25519"]

[ftp]
listen = "127.0.0.1:{{ftp}}"
passive_ports = [{{pasv_lo}}, {{pasv_hi}}]

[backends.disk]
kind = "local"
root = "{{dir}}/data"

[[mounts]]
path = "/"
backend = "disk"

[[users]]
name = "ops"
password_hash = "{{secret_hash}}"
role = "operator"
permissions = [ {{ path = "/", allow = ["list", "read"] }} ]

[[users]]
name = "alice"
password_hash = "{{secret_hash}}"
home = "/alice"
permissions = [ {{ path = "/", allow = ["list", "read", "write", "overwrite", "delete", "mkdir", "rename"] }} ]
"#
    )
}

/// Writes `RECORDS` varied records; returns how many are uploads by `u3`.
fn generate(dir: &Path) -> u64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (log, _) = AuditLog::open(AuditOptions {
            dir: dir.to_path_buf(),
            fsync: FsyncMode::Batch,
            rotate_bytes: 16 * 1024 * 1024,
            node: "gen".into(),
            reserve_bytes: 1024 * 1024,
        })
        .unwrap();
        let mut u3_uploads = 0;
        for i in 0..RECORDS {
            let (action, outcome) = match i % 10 {
                0..=3 => (AuditAction::Upload, Outcome::Ok),
                4..=6 => (AuditAction::Download, Outcome::Ok),
                7 => (AuditAction::Login, Outcome::Ok),
                8 => (AuditAction::Login, Outcome::Denied),
                _ => (AuditAction::List, Outcome::Ok),
            };
            let user = format!("u{}", (i / 10) % 10);
            if user == "u3" && action == AuditAction::Upload {
                u3_uploads += 1;
            }
            let mut ev =
                AuditEvent::new(action, outcome).path(format!("/partners/{user}/inbox/f{i}.csv"));
            ev.user = Some(user);
            ev.protocol = Some([Protocol::Sftp, Protocol::Ftp, Protocol::Http][(i % 3) as usize]);
            ev.bytes =
                matches!(action, AuditAction::Upload | AuditAction::Download).then_some(1000 + i);
            if outcome == Outcome::Denied {
                ev.detail = Some("wrong password".into());
            }
            log.record_detached(ev);
        }
        log.close().await.unwrap();
        u3_uploads
    })
}

/// The last seq the index holds (`gatehouse_audit_index_seq` in /metrics).
fn indexed(gw: &Gateway) -> u64 {
    let (_, m) = curl(&["-u", "ops:secret", &gw.url("/metrics")]);
    m.lines()
        .find(|l| l.starts_with("gatehouse_audit_index_seq "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn playwright() -> PathBuf {
    let p = peers_dir().join("npm/node_modules/playwright-core");
    assert!(
        p.join("package.json").exists(),
        "{} is missing: run scripts/install-peers.sh",
        p.display()
    );
    p
}

#[test]
fn the_console_in_a_real_browser_on_a_log_of_120k_records() {
    let work = tempfile::tempdir().unwrap();
    let audit = work.path().join("audit");
    let t0 = Instant::now();
    let u3_uploads = generate(&audit);
    eprintln!("wrote {RECORDS} records in {:?}", t0.elapsed());

    let t1 = Instant::now();
    let gw = Gateway::start(&config(Some(&audit)));
    // The gateway indexes the existing log at start (its own `config` record comes after).
    let deadline = Instant::now() + Duration::from_secs(120);
    while indexed(&gw) <= RECORDS {
        assert!(
            Instant::now() < deadline,
            "index did not catch up: {}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("indexed {RECORDS} records at start in {:?}", t1.elapsed());

    let shots = root().join("target/console-screenshots");
    let expect = serde_json::json!({
        "user": "u3", "action": "upload", "count": u3_uploads, "total": RECORDS,
    });
    let hold = serde_json::json!([
        python(),
        root().join("tests/py/hold_session.py"),
        gw.sftp.to_string(),
        "alice",
        "secret",
        "live-upload.bin",
    ]);
    let out = run_with_timeout(
        Command::new("node")
            .arg(root().join("tests/browser/console.mjs"))
            .env("GH_URL", gw.url(""))
            .env("GH_OPERATOR", "ops")
            .env("GH_USER", "alice")
            .env("GH_EXPECT", expect.to_string())
            .env("GH_HOLD", hold.to_string())
            .env("GH_SHOTS", &shots)
            .env("GH_PLAYWRIGHT", playwright()),
        Duration::from_secs(300),
    );
    eprintln!("{}", text(&out));
    assert!(
        out.status.success(),
        "browser test failed:\n{}\n{}",
        text(&out),
        gw.log()
    );
    for name in [
        "audit",
        "audit-filtered",
        "tail",
        "sessions",
        "user",
        "chain",
        "overview",
        "refused",
    ] {
        assert!(
            shots.join(format!("{name}.png")).exists(),
            "screenshot {name}"
        );
    }
    // The CLI reads the same index (and agrees with the console's count).
    let q = run_with_timeout(
        Command::new(crate::harness::bin())
            .args(["audit", "query", "--config"])
            .arg(&gw.config_path)
            .args(["--user", "u3", "--action", "upload", "--json"]),
        Duration::from_secs(60),
    );
    assert!(q.status.success(), "{}", text(&q));
    assert_eq!(
        String::from_utf8_lossy(&q.stdout).lines().count() as u64,
        u3_uploads
    );
}

#[test]
fn an_operator_ends_live_sessions_over_sftp_and_ftp() {
    let work = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(None));
    let script = r#"
import ftplib, sys, time
f = ftplib.FTP(); f.connect("127.0.0.1", int(sys.argv[1])); f.login("alice", "secret")
print("in", flush=True)
for _ in range(300):
    try:
        f.voidcmd("NOOP")
    except ftplib.error_temp as e:
        print("ended", e, flush=True); sys.exit(0)
    except (EOFError, OSError) as e:
        print("closed without a reply", e, flush=True); sys.exit(2)
    time.sleep(0.1)
sys.exit(1)
"#;
    let ftp = Command::new(python())
        .args(["-c", script, &gw.ftp.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sftp = Command::new(python())
        .arg(root().join("tests/py/hold_session.py"))
        .args([&gw.sftp.to_string(), "alice", "secret", "x.bin", "2", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Log in to the console, wait for both sessions, end them.
    let jar = work.path().join("jar");
    let jar_s = jar.display().to_string();
    let (code, _) = curl(&[
        "-c",
        &jar_s,
        "-d",
        "user=ops&password=secret",
        &gw.url("/console/login"),
    ]);
    assert_eq!(code, 303);
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        let (_, page) = curl(&["-b", &jar_s, &gw.url("/console/sessions?fragment=true")]);
        if page.contains(">ftp<") && page.contains(">sftp<") {
            break page;
        }
        assert!(Instant::now() < deadline, "sessions never listed: {page}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let ids: Vec<String> = page
        .split("data-session=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 2, "{page}");
    // Without the CSRF token: refused, nothing ended.
    let (code, _) = curl(&[
        "-b",
        &jar_s,
        "-d",
        "csrf=0",
        &gw.url(&format!("/console/sessions/{}/end", ids[0])),
    ]);
    assert_eq!(code, 403);
    for id in &ids {
        let (code, _) = curl(&[
            "-b",
            &jar_s,
            "-d",
            &format!("csrf={csrf}"),
            &gw.url(&format!("/console/sessions/{id}/end")),
        ]);
        assert_eq!(code, 303);
    }
    let ftp_out = ftp.wait_with_output().unwrap();
    let sftp_out = sftp.wait_with_output().unwrap();
    let ftp_said = String::from_utf8_lossy(&ftp_out.stdout).to_string();
    assert!(ftp_said.contains("ended 421"), "ftplib: {ftp_said}");
    assert!(String::from_utf8_lossy(&sftp_out.stdout).contains("ended"));
    for proto in ["ftp", "sftp"] {
        let rec = gw
            .wait_audit(|r| r["action"] == "logout" && r["protocol"] == proto)
            .unwrap_or_else(|| panic!("no {proto} logout record"));
        assert_eq!(rec["detail"], "ended by operator ops", "{rec}");
    }
    let (_, left) = curl(&["-b", &jar_s, &gw.url("/console/sessions?fragment=true")]);
    assert!(left.contains("No SFTP or FTP session is open"), "{left}");
}

#[test]
fn a_session_that_logs_out_leaves_the_live_list_with_its_logout_record() {
    let work = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(None));
    // Stock clients log in and out: ftplib's QUIT, paramiko's close.
    let script = r#"
import ftplib, sys, paramiko
f = ftplib.FTP(); f.connect("127.0.0.1", int(sys.argv[1])); f.login("alice", "secret")
f.voidcmd("NOOP"); f.quit()
t = paramiko.Transport(("127.0.0.1", int(sys.argv[2])))
t.connect(username="alice", password="secret")
s = paramiko.SFTPClient.from_transport(t); s.listdir("/"); s.close(); t.close()
print("done", flush=True)
"#;
    let out = run_with_timeout(
        Command::new(python()).args(["-c", script, &gw.ftp.to_string(), &gw.sftp.to_string()]),
        Duration::from_secs(60),
    );
    assert!(text(&out).contains("done"), "{}", text(&out));
    let jar = work.path().join("jar");
    let jar_s = jar.display().to_string();
    let (code, _) = curl(&[
        "-c",
        &jar_s,
        "-d",
        "user=ops&password=secret",
        &gw.url("/console/login"),
    ]);
    assert_eq!(code, 303);
    for proto in ["ftp", "sftp"] {
        gw.wait_audit(|r| r["action"] == "logout" && r["protocol"] == proto)
            .unwrap_or_else(|| panic!("no {proto} logout record\n{}", gw.log()));
    }
    // Once its logout is on record, a session is no longer listed (no waiting for the
    // connection to let go of it).
    let (_, left) = curl(&["-b", &jar_s, &gw.url("/console/sessions?fragment=true")]);
    assert!(left.contains("No SFTP or FTP session is open"), "{left}");
}
