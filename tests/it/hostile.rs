//! Hostile input at the front doors (issue 10): an FTP command line without an end, data
//! commands that would move files in clear under `required = true`, and the hostile-input
//! corpus run against all three doors with a well-behaved client served throughout and the
//! gateway's memory bounded.

use std::io::{Read, Write};
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
