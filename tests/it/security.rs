//! Hostile clients before and after login (issue 10), black-box against the real binary:
//! parallel password guessing gets only the allowance and one ban record; a success clears only
//! its own account; accounts lock across addresses; refused logins cannot flood the audit log;
//! connections per address, sessions per connection and per user are capped on every door;
//! logins must complete in time. Every test here failed on the commit before its fix.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Gateway, python, root, run_with_timeout, text};
use crate::sftp::key;

/// A gateway with all three doors, users `acme` (password "secret" and a key, full rights at
/// home), `bob` and `carol` (password "secret"); `limits` is the body of `[limits]`.
pub fn config(limits: &str) -> String {
    let pubkey = std::fs::read_to_string(root().join("fixtures/ssh/client_ed25519.pub")).unwrap();
    format!(
        r#"
[gateway]
state_dir = "{{dir}}/var"
shutdown_grace_secs = 5

[audit]
fsync = "batch"

[limits]
{limits}

[sftp]
listen = "127.0.0.1:{{sftp}}"

[ftp]
listen = "127.0.0.1:{{ftp}}"
passive_ports = [{{pasv_lo}}, {{pasv_hi}}]
passive_host = "127.0.0.1"

[http]
listen = "127.0.0.1:{{http}}"

[backends.disk]
kind = "local"
root = "{{dir}}/data"

[[mounts]]
path = "/"
backend = "disk"

[[users]]
name = "acme"
password_hash = "{{secret_hash}}"
public_keys = ["{pubkey}"]
home = "/acme"
permissions = [ {{ path = "/", allow = ["list", "read", "write", "overwrite", "delete", "mkdir", "rename"] }} ]

[[users]]
name = "bob"
password_hash = "{{secret_hash}}"
home = "/bob"
permissions = [ {{ path = "/", allow = ["list", "read"] }} ]

[[users]]
name = "carol"
password_hash = "{{secret_hash}}"
home = "/carol"
permissions = [ {{ path = "/", allow = ["list", "read"] }} ]
"#,
        pubkey = pubkey.trim()
    )
}

/// `curl` an HTTP URL with Basic credentials from a given local address; returns the status.
pub fn http_status(gw: &Gateway, from: &str, user: &str, password: &str) -> u16 {
    let out = run_with_timeout(
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "20",
            ])
            .args(["--interface", from, "-u", &format!("{user}:{password}")])
            .arg(gw.url("/v1/files/")),
        Duration::from_secs(30),
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Refused-login records, after the gateway has stopped (so summaries are written).
fn refusals(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.audit()
        .into_iter()
        .filter(|r| r["action"] == "login" && r["outcome"] == "denied")
        .collect()
}

fn detail(r: &serde_json::Value) -> String {
    r["detail"].as_str().unwrap_or("").to_string()
}

/// `n` GETs of `url` at once with Basic `creds`, one connection each (curl's parallel mode):
/// their status codes and curl's output.
fn parallel_gets(url: &str, n: usize, creds: &str, extra: &[&str]) -> (Vec<u16>, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-Z",
        "--parallel-max",
        &n.to_string(),
        "--max-time",
        "30",
    ])
    .args(extra)
    .args(["-u", creds, "-w", "%{http_code}\\n"]);
    for _ in 0..n {
        cmd.args(["-o", "/dev/null", url]);
    }
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    let codes = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    (codes, text(&out))
}

#[test]
fn parallel_wrong_passwords_get_only_the_allowance_and_one_ban_record() {
    let mut gw = Gateway::start(&config(
        "login_failures = { max = 5, window_secs = 300, ban_secs = 900 }",
    ));
    let before = gw.peak_rss_kib();
    // 40 guesses at once from one address (curl's parallel mode, one connection each).
    let (codes, out) = parallel_gets(&gw.url("/v1/files/"), 40, "acme:wrong", &[]);
    assert_eq!(codes.len(), 40, "{out}");
    assert!(
        codes.iter().all(|c| [401, 429, 503].contains(c)),
        "{codes:?}"
    );
    let verified = codes.iter().filter(|c| **c == 401).count();
    assert!(verified <= 5, "{verified} guesses were verified: {codes:?}");
    let peak = gw.peak_rss_kib();
    // The right password from the banned address is refused; another address is served.
    assert_eq!(http_status(&gw, "127.0.0.1", "acme", "secret"), 429);
    assert_eq!(http_status(&gw, "127.0.0.2", "acme", "secret"), 200);
    assert!(gw.stop().success());
    let recs = refusals(&gw);
    let bad: Vec<_> = recs
        .iter()
        .filter(|r| detail(r).contains("bad password"))
        .collect();
    assert!(
        bad.len() <= 5,
        "{} bad-password records: {recs:#?}",
        bad.len()
    );
    let bans = recs
        .iter()
        .filter(|r| detail(r).contains("ban started"))
        .count();
    assert_eq!(bans, 1, "one ban record: {recs:#?}");
    // argon2 costs ~19 MiB per verification: 40 at once would be ~760 MiB.
    eprintln!("VmHWM before {before} KiB, after the storm {peak} KiB");
    assert!(
        peak < before + 120 * 1024,
        "memory grew from {before} to {peak} KiB"
    );
}

#[test]
fn a_connection_pool_opening_at_once_with_the_right_password_is_served() {
    // 48 connections from one address with the same (right) Basic credentials, on a gateway
    // that has verified none yet: an application's pool opening. Each used to reserve its own
    // login attempt and argon2 check, so beyond the 5 attempts allowed in flight some got 503.
    // Identical credentials now wait for the first check and find it cached.
    let gw = Gateway::start(&config(
        "login_failures = { max = 5, window_secs = 300, ban_secs = 900 }",
    ));
    std::fs::create_dir_all(gw.path("data/acme")).unwrap();
    // --parallel-immediate: one connection each at once (curl otherwise waits for the first
    // to see whether it can multiplex the rest).
    let (codes, out) = parallel_gets(
        &gw.url("/v1/files/"),
        48,
        "acme:secret",
        &["--parallel-immediate"],
    );
    assert_eq!(codes, vec![200; 48], "{out}");
    // Nothing was refused, so nothing counts against the address.
    assert_eq!(http_status(&gw, "127.0.0.1", "acme", "secret"), 200);
    assert!(
        gw.audit()
            .iter()
            .all(|r| !(r["action"] == "login" && r["outcome"] == "denied")),
        "a refused login was recorded"
    );
}

#[test]
fn a_success_does_not_clear_the_address_failures() {
    let gw = Gateway::start(&config(
        "login_failures = { max = 3, window_secs = 300, ban_secs = 900 }",
    ));
    assert_eq!(http_status(&gw, "127.0.0.1", "bob", "wrong"), 401);
    assert_eq!(http_status(&gw, "127.0.0.1", "bob", "wrong"), 401);
    // A valid login from the same address...
    assert_eq!(http_status(&gw, "127.0.0.1", "acme", "secret"), 200);
    // ...does not buy more guesses at other accounts: the third failure bans the address.
    assert_eq!(http_status(&gw, "127.0.0.1", "carol", "wrong"), 401);
    assert_eq!(http_status(&gw, "127.0.0.1", "acme", "secret"), 429);
}

#[test]
fn an_account_is_locked_after_failures_from_many_addresses() {
    let gw = Gateway::start(&config(
        "login_failures = { max = 100, window_secs = 300, ban_secs = 900, account_max = 3 }",
    ));
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        assert_eq!(http_status(&gw, from, "acme", "wrong"), 401);
    }
    // The right password, from a fresh address, is refused now (401: a lock reveals nothing).
    assert_eq!(http_status(&gw, "127.0.0.5", "acme", "secret"), 401);
    // Other accounts are unaffected, and acme's key still works (keys cannot be guessed).
    assert_eq!(http_status(&gw, "127.0.0.5", "bob", "secret"), 200);
    let dir = tempfile::tempdir().unwrap();
    let k = key(dir.path(), "client_ed25519");
    let (ok, out) = crate::sftp::sftp_batch(&gw, &k, "pwd\n", &[]);
    assert!(ok, "{out}");
    let rec = gw
        .wait_audit(|r| detail(r).contains("password logins locked"))
        .expect("the lock is recorded");
    assert_eq!(rec["user"], "acme");
}

#[test]
fn refused_login_names_are_capped() {
    let mut gw = Gateway::start(&config(
        "login_failures = { max = 0, window_secs = 300, ban_secs = 900 }",
    ));
    // 40,000 bytes: its Basic header (~53 KB) stays under the 64 KiB request-head limit.
    let long = "x".repeat(40_000);
    assert_eq!(http_status(&gw, "127.0.0.1", &long, "pw"), 401);
    // FTP USER with a 7000-byte name (under the 8 KiB command-line cap).
    let mut s = TcpStream::connect(("127.0.0.1", gw.ftp)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 512];
    let _ = s.read(&mut buf).unwrap();
    write!(s, "USER {}\r\n", "y".repeat(7000)).unwrap();
    let _ = s.read(&mut buf).unwrap();
    s.write_all(b"PASS nope\r\n").unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("530"));
    assert!(gw.stop().success());
    let recs = refusals(&gw);
    for want in [40_000, 7000] {
        let r = recs
            .iter()
            .find(|r| detail(r).contains(&format!("truncated from {want} bytes")))
            .unwrap_or_else(|| panic!("no capped record for {want}: {recs:#?}"));
        assert!(r["user"].as_str().unwrap().len() <= 256);
    }
}

#[test]
fn attempts_from_a_banned_address_are_summarised_not_recorded() {
    let mut gw = Gateway::start(&config(
        "login_failures = { max = 2, window_secs = 300, ban_secs = 900 }",
    ));
    for _ in 0..2 {
        assert_eq!(http_status(&gw, "127.0.0.1", "bob", "wrong"), 401);
    }
    let url = gw.url("/v1/files/");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-Z", "--parallel-max", "10", "--max-time", "30"])
        .args(["-u", "bob:wrong"]);
    for _ in 0..50 {
        cmd.args(["-o", "/dev/null", &url]);
    }
    run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert!(gw.stop().success());
    let recs = refusals(&gw);
    assert!(
        recs.len() <= 3,
        "two failures and one summary, not one record per attempt: {} records",
        recs.len()
    );
    let summary = recs
        .iter()
        .find(|r| detail(r).starts_with("50 refused logins"))
        .unwrap_or_else(|| panic!("no summary: {recs:#?}"));
    assert!(detail(summary).contains("127.0.0.1 x50"), "{summary}");
}

#[test]
fn ordinary_refusals_beyond_the_record_budget_are_counted() {
    let mut gw = Gateway::start(&config(
        "login_failures = { max = 0, window_secs = 300, ban_secs = 900 }\nrefused_login_records_per_sec = 1",
    ));
    let url = gw.url("/v1/files/");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-Z", "--parallel-max", "10", "--max-time", "30"])
        .args(["-u", "nobody:wrong"]);
    for _ in 0..40 {
        cmd.args(["-o", "/dev/null", &url]);
    }
    run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(gw.stop().success());
    let recs = refusals(&gw);
    let single = recs.iter().filter(|r| r["user"] == "nobody").count();
    let summarised: u64 = recs
        .iter()
        .filter(|r| detail(r).contains("over the record budget"))
        .map(|r| {
            detail(r)
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        })
        .sum();
    assert!(single < 40, "every refusal was recorded one by one");
    assert_eq!(single as u64 + summarised, 40, "{recs:#?}");
}

/// A TCP connection to 127.0.0.1:`port` from the local address `from` (127.0.0.x), so a test
/// counts only its own connections (the harness probes from 127.0.0.1).
pub fn connect_from(port: u16, from: &str) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    s.bind(&local.into()).unwrap();
    let remote: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    s.connect(&remote.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// What a server says first to a new connection from `from`.
fn first_words_from(port: u16, from: &str) -> String {
    let mut s = connect_from(port, from);
    let mut b = [0u8; 256];
    let n = s.read(&mut b).unwrap_or(0);
    String::from_utf8_lossy(&b[..n]).into_owned()
}

#[test]
fn connections_per_address_are_capped_on_every_listener() {
    let gw = Gateway::start(&config("max_connections_per_ip = 3"));
    // Each door counted from its own address, so the harness's readiness probes (from
    // 127.0.0.1, released asynchronously) never share the count.
    for (door, port, from) in [
        ("ftp", gw.ftp, "127.0.0.3"),
        ("sftp", gw.sftp, "127.0.0.4"),
        ("http", gw.http, "127.0.0.5"),
    ] {
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut s = connect_from(port, from);
            // HTTP says nothing first: a request proves the connection was accepted.
            if door == "http" {
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
            }
            let mut b = [0u8; 64];
            let n = s.read(&mut b).unwrap_or(0);
            let said = String::from_utf8_lossy(&b[..n]).to_string();
            assert!(
                n > 0 && !said.starts_with("421"),
                "{door}: a held connection was not served: {said:?}"
            );
            held.push(s);
        }
        let mut fourth = connect_from(port, from);
        if door == "http" {
            let _ = fourth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        }
        let mut b = [0u8; 256];
        let n = fourth.read(&mut b).unwrap_or(0);
        let said = String::from_utf8_lossy(&b[..n]).to_string();
        match door {
            "ftp" => assert!(said.starts_with("421"), "ftp said {said:?}"),
            _ => assert_eq!(n, 0, "{door} answered a fourth connection: {said:?}"),
        }
        // Another address is served meanwhile.
        let said = first_words_from(port, "127.0.0.2");
        match door {
            "ftp" => assert!(said.starts_with("220"), "{door}: {said:?}"),
            "sftp" => assert!(said.starts_with("SSH-2.0-"), "{door}: {said:?}"),
            _ => assert_eq!(http_status(&gw, "127.0.0.2", "acme", "secret"), 200),
        }
        drop(held);
    }
}

#[test]
fn sessions_per_connection_and_per_user_are_capped() {
    let gw = Gateway::start(&config("max_sessions_per_user = 2"));
    // One SSH connection asking for 14 SFTP sessions gets 10.
    let out = run_with_timeout(
        Command::new(python())
            .arg(root().join("tests/py/hostile_sftp.py"))
            .args([&gw.sftp.to_string(), "acme", "secret", "channels", "14"]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("opened 10 of 14"), "{said}");
    // Two sessions of acme at once are fine; a third (any door) is refused until one ends.
    let out = run_with_timeout(
        Command::new(python())
            .arg(root().join("tests/py/hostile_sftp.py"))
            .args([&gw.sftp.to_string(), "acme", "secret", "logins", "3"])
            .args(["--ftp", &gw.ftp.to_string()]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("sftp 2 ok, 1 refused"), "{said}");
    assert!(said.contains("ftp refused while 2 open"), "{said}");
    assert!(said.contains("after close: ok"), "{said}");
}

#[test]
fn logins_must_complete_in_time() {
    let gw = Gateway::start(&config("login_timeout_secs = 2").replace(
        "passive_host = \"127.0.0.1\"",
        "passive_host = \"127.0.0.1\"\n[ftp.tls]\ncert = \"{fixtures}/tls/cert.pem\"\nkey = \"{fixtures}/tls/key.pem\"",
    ));
    let started = Instant::now();
    // FTP: a client that connects and says nothing is told 421 and dropped.
    let mut ftp = TcpStream::connect(("127.0.0.1", gw.ftp)).unwrap();
    ftp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    let _ = ftp.read_to_end(&mut all);
    let said = String::from_utf8_lossy(&all);
    assert!(said.contains("\r\n421 "), "{said:?}");
    // SSH: after the banner, silence ends the connection too.
    let mut ssh = TcpStream::connect(("127.0.0.1", gw.sftp)).unwrap();
    ssh.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    ssh.write_all(b"SSH-2.0-idle\r\n").unwrap();
    let mut all = Vec::new();
    let r = ssh.read_to_end(&mut all);
    assert!(r.is_ok(), "the connection was closed, not left open: {r:?}");
    // AUTH TLS, then no handshake: cut off as well.
    let mut tls = TcpStream::connect(("127.0.0.1", gw.ftp)).unwrap();
    tls.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 256];
    let _ = tls.read(&mut b).unwrap();
    tls.write_all(b"AUTH TLS\r\n").unwrap();
    let n = tls.read(&mut b).unwrap();
    assert!(String::from_utf8_lossy(&b[..n]).starts_with("234"));
    let mut rest = Vec::new();
    assert!(
        tls.read_to_end(&mut rest).is_ok(),
        "closed after the deadline"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}
