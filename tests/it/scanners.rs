//! Third-party scanners against a live gateway (issue 10): ssh-audit finds no "fail" in the
//! default SSH algorithms; sslyze finds no old protocol, weak suite or known vulnerability on
//! HTTPS and explicit FTPS. A legacy `[sftp] kex` list is honoured when an operator asks for it.

use std::process::Command;
use std::time::Duration;

use crate::harness::{Gateway, python, root, run_with_timeout, text};
use crate::security::config;

fn scan(args: &[&str]) -> String {
    let out = run_with_timeout(
        Command::new(python())
            .arg(root().join("tests/py/scanners.py"))
            .args(args),
        Duration::from_secs(400),
    );
    assert!(out.status.success(), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!("{summary}");
    summary
}

fn tls_config(sftp: &str) -> String {
    let tls = "[ftp.tls]\ncert = \"{fixtures}/tls/cert.pem\"\nkey = \"{fixtures}/tls/key.pem\"";
    config("")
        .replace(
            "passive_host = \"127.0.0.1\"",
            &format!("passive_host = \"127.0.0.1\"\n{tls}"),
        )
        .replace(
            "listen = \"127.0.0.1:{http}\"",
            "listen = \"127.0.0.1:{http}\"\n[http.tls]\ncert = \"{fixtures}/tls/cert.pem\"\nkey = \"{fixtures}/tls/key.pem\"",
        )
        .replace("listen = \"127.0.0.1:{sftp}\"", &format!("listen = \"127.0.0.1:{{sftp}}\"\n{sftp}"))
}

#[test]
fn ssh_audit_and_sslyze_find_no_failures() {
    let gw = Gateway::start(&tls_config(""));
    let ssh = scan(&["ssh", &gw.sftp.to_string()]);
    assert!(!ssh.contains("nistp"), "{ssh}");
    scan(&["tls", &gw.http.to_string()]);
    scan(&["tls", &gw.ftp.to_string(), "ftp"]);
}

#[test]
fn legacy_algorithms_are_offered_only_when_configured() {
    let gw = Gateway::start(&tls_config(
        "kex = [\"ecdh-sha2-nistp256\", \"curve25519-sha256\"]\nmacs = [\"hmac-sha2-256\"]",
    ));
    // OpenSSH can still connect with the legacy choices an operator opted into.
    let dir = tempfile::tempdir().unwrap();
    let k = crate::sftp::key(dir.path(), "client_ed25519");
    let (ok, out) = crate::sftp::sftp_batch(
        &gw,
        &k,
        "pwd\n",
        &[
            "-o",
            "KexAlgorithms=ecdh-sha2-nistp256",
            "-o",
            "MACs=hmac-sha2-256",
            "-o",
            "Ciphers=aes128-ctr",
        ],
    );
    assert!(ok, "{out}");
}
