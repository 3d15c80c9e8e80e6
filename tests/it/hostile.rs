//! Hostile input at the front doors (issue 10): an FTP command line without an end, data
//! commands that would move files in clear under `required = true`, and the hostile-input
//! corpus run against all three doors with a well-behaved client served throughout and the
//! gateway's memory bounded.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Gateway, python, root, run_with_timeout, text};
use crate::security::config;

#[test]
fn an_endless_ftp_command_line_is_cut_off() {
    let gw = Gateway::start(&config(""));
    let before = gw.rss_kib();
    let mut s = TcpStream::connect(("127.0.0.1", gw.ftp)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut greeting = [0u8; 256];
    let _ = s.read(&mut greeting).unwrap();
    // 64 MiB of one "line" before login; the gateway must not keep it.
    let block = vec![b'A'; 64 * 1024];
    let mut sent = 0usize;
    for _ in 0..1024 {
        match s.write_all(&block) {
            Ok(()) => sent += block.len(),
            Err(_) => break,
        }
    }
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("500 "),
        "got {reply:?} after {sent} bytes"
    );
    let after = gw.rss_kib();
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    assert!(sent < 64 * 1024 * 1024, "the gateway read all 64 MiB");
}

#[test]
fn ftps_required_covers_every_data_command() {
    let gw = Gateway::start(&config("").replace(
        "passive_host = \"127.0.0.1\"",
        "passive_host = \"127.0.0.1\"\n[ftp.tls]\ncert = \"{fixtures}/tls/cert.pem\"\nkey = \"{fixtures}/tls/key.pem\"\nrequired = true",
    ));
    let out = run_with_timeout(
        Command::new(python())
            .arg(root().join("tests/py/ftps_required.py"))
            .arg(gw.ftp.to_string()),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn the_hostile_corpus_gets_clear_errors_on_every_door_while_others_are_served() {
    let limits =
        "login_failures = { max = 10000, window_secs = 60, ban_secs = 60 }\nlogin_timeout_secs = 4";
    let cfg = config(limits)
        .replace(
            "listen = \"127.0.0.1:{http}\"",
            "listen = \"127.0.0.1:{http}\"\nheader_timeout_secs = 4",
        )
        .replace(
            "[[users]]\nname = \"bob\"",
            "[[users]]\nname = \"good\"\npassword_hash = \"{secret_hash}\"\nhome = \"/good\"\npermissions = [ { path = \"/\", allow = [\"list\", \"read\", \"write\", \"overwrite\"] } ]\n\n[[users]]\nname = \"bob\"",
        );
    let gw = Gateway::start(&cfg);
    // A big directory, and a symlink that points out of the backend root.
    let big = gw.path("data/acme/big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..5000 {
        std::fs::write(big.join(format!("f{i:05}.csv")), b"x").unwrap();
    }
    // A directory outside the backend root, reachable only through the symlink: nothing may
    // read, list, change or add anything in it.
    let outside = gw.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("canary.txt"), "outside the backend root").unwrap();
    std::os::unix::fs::symlink(&outside, gw.path("data/acme/escape")).unwrap();
    std::fs::create_dir_all(gw.path("data/good")).unwrap();
    std::fs::write(gw.path("data/good/ok.txt"), b"fine").unwrap();
    let before = gw.peak_rss_kib();
    let out = run_with_timeout(
        Command::new(python())
            .arg(root().join("tests/py/hostile_corpus.py"))
            .args([
                &gw.http.to_string(),
                &gw.sftp.to_string(),
                &gw.ftp.to_string(),
            ]),
        Duration::from_secs(600),
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    eprintln!("hostile corpus: {summary}");
    assert!(out.status.success(), "{}", text(&out));
    let peak = gw.peak_rss_kib();
    eprintln!("hostile corpus: VmHWM {before} KiB before, {peak} KiB after");
    assert!(
        peak < before + 96 * 1024,
        "memory grew from {before} to {peak} KiB"
    );
    let log = gw.log();
    assert!(!log.contains("panicked"), "the gateway panicked:\n{log}");
    let left: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["canary.txt"], "something changed outside the root");
    assert_eq!(
        std::fs::read_to_string(outside.join("canary.txt")).unwrap(),
        "outside the backend root"
    );
    // Still alive and serving.
    let (code, _) = crate::http_files::curl(&["-u", "good:secret", &gw.url("/v1/files/ok.txt")]);
    assert_eq!(code, 200);
}

/// hyper patch 1 (vendor/README.md): a keep-alive connection waiting for its next request gives
/// its read and header buffers back. 800 idle connections cost about 21 KiB each before (17
/// MiB), about 7.5 KiB after; each must then serve its next request normally.
#[test]
fn idle_keep_alive_connections_hold_little_memory_and_serve_again() {
    const N: u64 = 800;
    let gw = Gateway::start(&config(
        "max_connections = 2000\nmax_connections_per_ip = 2000",
    ));
    let mut child = Command::new(python())
        .arg(root().join("tests/py/hold_http.py"))
        .args([gw.http.to_string(), "100".into(), N.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().and_then(|l| l.ok()).unwrap_or_default();
    assert_eq!(next(), "warm");
    let before = gw.rss_kib();
    stdin.write_all(b"go\n").unwrap();
    assert_eq!(next(), "held");
    let held = gw.rss_kib();
    stdin.write_all(b"go\n").unwrap();
    let served = next();
    let status = child.wait().unwrap();
    let per_conn = held.saturating_sub(before) / N;
    eprintln!("{N} idle keep-alive connections: RSS {before} -> {held} KiB, {per_conn} KiB each");
    assert!(
        status.success() && served == format!("served {}", N + 100),
        "{served}"
    );
    assert!(
        per_conn <= 14,
        "{per_conn} KiB per idle connection (RSS {before} -> {held} KiB)"
    );
}
