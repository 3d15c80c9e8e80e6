//! The command line: `check` on good and bad configs (key path and line for every error),
//! `demo-config`, `hash-password`, `gen-api-key`, and `serve` in an empty directory.

use std::process::Command;
use std::time::Duration;

use crate::harness::{bin, root, run_stdin, run_with_timeout, text, wait_port};

fn check(path: &std::path::Path) -> std::process::Output {
    run_with_timeout(
        Command::new(bin())
            .args(["check", "--config"])
            .arg(path)
            .current_dir(root())
            .env_remove("GATEHOUSE_TEST_UNSET_VARIABLE"),
        Duration::from_secs(30),
    )
}

#[test]
fn bad_configs_name_key_and_line() {
    let dir = root().join("fixtures/configs/bad");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let rel = path.strip_prefix(root()).unwrap();
        let out = check(rel);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            rel.display(),
            text(&out)
        );
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            expected,
            "{}",
            rel.display()
        );
        for line in expected.lines() {
            assert!(
                line.contains(": line "),
                "every error names its line: {line}"
            );
        }
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} bad configs");
}

#[test]
fn good_configs_pass() {
    for rel in [
        "fixtures/configs/ok/demo.toml",
        "fixtures/configs/ok/minimal.toml",
        "config/demo.toml",
    ] {
        let out = check(std::path::Path::new(rel));
        assert!(out.status.success(), "{rel}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    }
    let out = run_with_timeout(
        Command::new(bin())
            .args(["check", "--config", "config/example.toml"])
            .current_dir(root())
            .env("S3_ACCESS_KEY_ID", "AKIAEXAMPLE")
            .env("S3_SECRET_ACCESS_KEY", "secret")
            .env("JWT_SECRET", "0123456789abcdef0123456789abcdef")
            .env("HOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .env("AZURE_KEY", "a2V5")
            .env("DAV_PW", "secret"),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "example.toml: {}", text(&out));
    assert!(
        out.stderr.is_empty(),
        "the example config draws no warnings: {}",
        text(&out)
    );
    // The production example, with its /etc paths pointed at the test fixtures: every other
    // key as shipped.
    let prod = std::fs::read_to_string(root().join("config/production.toml"))
        .unwrap()
        .replace("/etc/gatehouse/tls/fullchain.pem", "fixtures/tls/cert.pem")
        .replace("/etc/gatehouse/tls/privkey.pem", "fixtures/tls/key.pem");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("production.toml");
    std::fs::write(&path, prod).unwrap();
    let out = run_with_timeout(
        Command::new(bin())
            .args(["check", "--config"])
            .arg(&path)
            .current_dir(root())
            .env("S3_ACCESS_KEY_ID", "AKIAEXAMPLE")
            .env("S3_SECRET_ACCESS_KEY", "secret")
            .env("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "production.toml: {}", text(&out));
    assert!(
        out.stderr.is_empty(),
        "production.toml warns: {}",
        text(&out)
    );
}

#[test]
fn check_warns_about_a_route_open_to_every_user() {
    let out = check(std::path::Path::new("fixtures/configs/ok/open_route.toml"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("warning: fixtures/configs/ok/open_route.toml: line 7: routes[0]: route \"orders\" admits any authenticated user"),
        "{err}"
    );
}

#[test]
fn demo_config_round_trips() {
    let out = run_with_timeout(
        Command::new(bin()).arg("demo-config"),
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    let demo = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        demo,
        std::fs::read_to_string(root().join("config/demo.toml")).unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("demo.toml");
    std::fs::write(&p, demo).unwrap();
    assert!(check(&p).status.success());
}

#[test]
fn hash_password_makes_argon2id_that_verifies() {
    let out = run_stdin(
        Command::new(bin()).arg("hash-password"),
        b"s3cret\n",
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", text(&out));
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(gatehouse::identity::password::verify(&hash, b"s3cret"));
    assert!(!gatehouse::identity::password::verify(&hash, b"s3cret\n"));
    let empty = run_stdin(
        Command::new(bin()).arg("hash-password"),
        b"",
        Duration::from_secs(10),
    );
    assert!(!empty.status.success());
    let err = String::from_utf8_lossy(&empty.stderr);
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");
}

#[test]
fn gen_api_key_prints_key_and_hash() {
    use sha2::Digest;
    let out = run_with_timeout(
        Command::new(bin()).arg("gen-api-key"),
        Duration::from_secs(10),
    );
    let s = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), 2);
    let want = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(lines[0].as_bytes()))
    );
    assert_eq!(lines[1], want);
    assert!(lines[0].len() >= 40);
}

#[test]
fn bad_input_is_a_one_line_error() {
    let out = run_with_timeout(
        Command::new(bin()).args(["audit", "verify", "--dir", "/nonexistent/dir"]),
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out)
    );
    let out = run_with_timeout(
        Command::new(bin()).args(["audit", "query", "--since", "yesterday", "--dir", "."]),
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("RFC 3339"),
        "{}",
        text(&out)
    );
    let help = run_with_timeout(Command::new(bin()).arg("--help"), Duration::from_secs(10));
    let h = String::from_utf8_lossy(&help.stdout);
    for cmd in [
        "serve",
        "check",
        "demo-config",
        "hash-password",
        "gen-api-key",
        "audit",
    ] {
        assert!(h.contains(cmd), "--help lists {cmd}");
    }
}

/// The demo's SFTP and FTP ports, checked once those front doors exist.
const DEMO_FILE_PORTS: &[u16] = &[2222, 2121];

/// `gatehouse serve` in an empty directory runs the demo on its fixed loopback ports.
#[test]
fn serve_in_an_empty_directory_runs_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    for p in [8080u16, 2222, 2121] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", p)).is_ok(),
            "port {p} is taken on this machine; the demo needs it"
        );
    }
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = Command::new(bin())
        .arg("serve")
        .current_dir(dir.path())
        .stderr(log)
        .spawn()
        .unwrap();
    let up = wait_port(8080, Duration::from_secs(30));
    let read_log = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    if !up {
        let _ = child.kill();
        panic!("demo did not start:\n{}", read_log());
    }
    for p in DEMO_FILE_PORTS {
        assert!(
            wait_port(*p, Duration::from_secs(10)),
            "demo listens on {p}:\n{}",
            read_log()
        );
    }
    let out = run_with_timeout(
        Command::new("curl").args([
            "-s",
            "-u",
            "demo:demo",
            "-T",
            "-",
            "http://127.0.0.1:8080/v1/files/hello.txt",
        ]),
        Duration::from_secs(30),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"size\""),
        "{}",
        text(&out)
    );
    assert!(dir.path().join("data/hello.txt").exists());
    if DEMO_FILE_PORTS.contains(&2222) {
        assert!(
            dir.path().join("var/ssh_host_ed25519_key").exists(),
            "host key created under ./var"
        );
    }
    let log_text = read_log();
    assert!(
        log_text.contains("demo"),
        "warns about the demo config:\n{log_text}"
    );
    for p in std::iter::once(&8080).chain(DEMO_FILE_PORTS) {
        let l = format!("127.0.0.1:{p}");
        assert!(log_text.contains(&l), "logs the {l} listener:\n{log_text}");
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "exit 0 on SIGTERM: {status:?}\n{}",
        read_log()
    );
    let verify = run_with_timeout(
        Command::new(bin())
            .args(["audit", "verify", "--dir", "var/audit"])
            .current_dir(dir.path()),
        Duration::from_secs(10),
    );
    assert!(verify.status.success(), "{}", text(&verify));
}
