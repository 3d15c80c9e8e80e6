//! The OpenAPI document against the running gateway: schemathesis (from PyPI) generates requests
//! from `/v1/openapi.json` and checks every answer against it (status codes, content types,
//! headers, response schemas, no 5xx, auth really required).

use std::process::Command;
use std::time::Duration;

use crate::harness::{Gateway, peers_dir, root, run_with_timeout, text};

const CONFIG: &str = r#"
[gateway]
state_dir = "{dir}/var"
shutdown_grace_secs = 5

[limits]
# schemathesis sends wrong credentials on purpose; a ban would turn every later answer into 403.
login_failures = { max = 0, window_secs = 300, ban_secs = 900 }

[http]
listen = "127.0.0.1:{http}"

[backends.disk]
kind = "local"
root = "{dir}/data"

[[mounts]]
path = "/"
backend = "disk"

[[users]]
name = "root"
password_hash = "{secret_hash}"
role = "operator"
home = "/root"
permissions = [ { path = "/", allow = ["list", "read", "write", "overwrite", "delete", "mkdir", "rename"] } ]
"#;

#[test]
fn schemathesis_finds_no_contract_violations() {
    let gw = Gateway::start(CONFIG);
    // Something to find: short names are what the generator tries first.
    std::fs::create_dir_all(gw.path("data/root/0/A")).unwrap();
    std::fs::write(gw.path("data/root/0/a.txt"), b"a small file\n").unwrap();
    std::fs::write(gw.path("data/root/A"), b"another\n").unwrap();
    let st = peers_dir().join("venv/bin/st");
    assert!(
        st.exists(),
        "{} missing: run scripts/install-peers.sh",
        st.display()
    );
    let auth = format!("Authorization: Basic {}", base64_of("root:secret"));
    let examples =
        std::env::var("GATEHOUSE_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "100".into());
    let out = run_with_timeout(
        Command::new(st)
            .arg("--config-file")
            .arg(root().join("tests/schemathesis/schemathesis.toml"))
            .args(["run", &gw.url("/v1/openapi.json"), "-H", &auth])
            // Every check is on by default (see the config file for the one exception); one
            // worker, as hypothesis's lambda introspection is not thread-safe on CPython 3.11.
            .args(["--workers", "1", "--max-examples", &examples])
            // A fixed seed, deterministic generation and a count (not a time budget): the same
            // cases every run on any machine, so CI is repeatable and a failure reproduces.
            // Raise GATEHOUSE_SCHEMATHESIS_EXAMPLES to search wider.
            .args(["--seed", "20261123", "--generation-deterministic"])
            .env("SCHEMATHESIS_TELEMETRY", "false"),
        Duration::from_secs(300),
    );
    assert!(
        out.status.success(),
        "schemathesis found violations:\n{}",
        text(&out)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{}",
        report.lines().rev().take(12).collect::<Vec<_>>().join("\n")
    );
    assert!(
        report.contains("passed"),
        "schemathesis ran nothing:\n{report}"
    );
    assert!(
        gw.log().lines().all(|l| !l.contains("panicked")),
        "{}",
        gw.log()
    );
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
