//! The REST file API over real HTTP with curl and Python: every endpoint and error path, Basic
//! and API-key auth side by side, traversal attempts in every encoding, atomic uploads that leave
//! nothing behind when the client disconnects, and operator-only endpoints.

use std::process::Command;
use std::time::Duration;

use sha2::Digest;

use crate::harness::{Gateway, python, root, run_with_timeout, text, write_random};

pub const API_KEY: &str = "gh_test-key-for-alice-0123456789";

pub fn config() -> String {
    let key_hash = hex::encode(sha2::Sha256::digest(API_KEY.as_bytes()));
    r#"
[gateway]
state_dir = "{dir}/var"
shutdown_grace_secs = 5

[http]
listen = "127.0.0.1:{http}"

[backends.disk]
kind = "local"
root = "{dir}/data"

[[mounts]]
path = "/"
backend = "disk"

[[users]]
name = "alice"
password_hash = "{secret_hash}"
home = "/alice"
permissions = [ { path = "/", allow = ["list", "read", "write", "overwrite", "delete", "mkdir", "rename"] },
                { path = "/readonly", allow = ["list", "read"] } ]

[[users]]
name = "bob"
password_hash = "{secret_hash}"
home = "/bob"
permissions = [ { path = "/", allow = ["list", "read"] }, { path = "/drop", allow = ["write"] } ]

[[users]]
name = "ops"
password_hash = "{secret_hash}"
role = "operator"
permissions = [ { path = "/", allow = ["list", "read"] } ]

[[users]]
name = "sftponly"
password_hash = "{secret_hash}"
protocols = ["sftp"]
permissions = [ { path = "/", allow = ["list", "read"] } ]

[[api_keys]]
name = "alice-app"
user = "alice"
key_hash = "sha256:KEYHASH"
"#
    .replace("KEYHASH", &key_hash)
}

/// curl with a deadline; returns (status code, body).
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = run_with_timeout(
        Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "60"])
            .args(args),
        Duration::from_secs(90),
    );
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn upload_download_list_and_manage_files() {
    let gw = Gateway::start(&config());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.csv");
    std::fs::write(&f, b"id,qty\n1,2\n").unwrap();
    let fp = f.to_str().unwrap();
    let url = |p: &str| gw.url(&format!("/v1/files{p}"));

    // PUT new: 201 with path, size, sha256; replace: 204.
    let (code, body) = curl(&["-u", "alice:secret", "-T", fp, &url("/inbox.csv")]);
    assert_eq!(code, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["path"], "/inbox.csv");
    assert_eq!(v["size"], 11);
    assert_eq!(
        v["sha256"],
        hex::encode(sha2::Sha256::digest(b"id,qty\n1,2\n"))
    );
    assert_eq!(
        std::fs::read(gw.path("data/alice/inbox.csv")).unwrap(),
        b"id,qty\n1,2\n"
    );
    let (code, _) = curl(&["-u", "alice:secret", "-T", fp, &url("/inbox.csv")]);
    assert_eq!(code, 204);

    // GET with the API key both ways; HEAD; Range; ETag/304; Repr-Digest.
    for auth in [
        format!("X-Api-Key: {API_KEY}"),
        format!("Authorization: Bearer {API_KEY}"),
    ] {
        let (code, body) = curl(&["-H", &auth, &url("/inbox.csv")]);
        assert_eq!((code, body.as_str()), (200, "id,qty\n1,2\n"));
    }
    let out = run_with_timeout(
        Command::new("curl").args(["-s", "-I", "-u", "alice:secret", &url("/inbox.csv")]),
        Duration::from_secs(30),
    );
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.contains("content-length: 11"), "{head}");
    assert!(head.contains("accept-ranges: bytes"), "{head}");
    let digest = base64_sha256(b"id,qty\n1,2\n");
    assert!(
        head.contains(&format!("repr-digest: sha-256=:{}:", digest.to_lowercase())),
        "{head}"
    );
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .trim()
        .to_string();
    let (code, body) = curl(&["-u", "alice:secret", "-r", "3-5", &url("/inbox.csv")]);
    assert_eq!((code, body.as_str()), (206, "qty"));
    let (code, _) = curl(&["-u", "alice:secret", "-r", "100-200", &url("/inbox.csv")]);
    assert_eq!(code, 416);
    let (code, _) = curl(&[
        "-u",
        "alice:secret",
        "-H",
        &format!("If-None-Match: {etag}"),
        &url("/inbox.csv"),
    ]);
    assert_eq!(code, 304);
    // If-Match guards a replace.
    let (code, _) = curl(&[
        "-u",
        "alice:secret",
        "-H",
        "If-Match: \"stale\"",
        "-T",
        fp,
        &url("/inbox.csv"),
    ]);
    assert_eq!(code, 412);
    let (code, _) = curl(&[
        "-u",
        "alice:secret",
        "-H",
        "If-None-Match: *",
        "-T",
        fp,
        &url("/inbox.csv"),
    ]);
    assert_eq!(code, 412);

    // mkdir, list, rename, delete, rmdir.
    let (code, _) = curl(&[
        "-u",
        "alice:secret",
        "-X",
        "POST",
        &url("/reports?op=mkdir"),
    ]);
    assert_eq!(code, 201);
    let (code, _) = curl(&[
        "-u",
        "alice:secret",
        "-X",
        "POST",
        &url("/reports?op=mkdir"),
    ]);
    assert_eq!(code, 409);
    let (code, body) = curl(&[
        "-u",
        "alice:secret",
        "-X",
        "POST",
        &url("/inbox.csv?op=rename&to=/reports/q1.csv"),
    ]);
    assert_eq!(code, 200, "{body}");
    let (code, body) = curl(&["-u", "alice:secret", &url("/reports/")]);
    assert_eq!(code, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["name"], "q1.csv");
    assert_eq!(list[0]["type"], "file");
    assert_eq!(list[0]["size"], 11);
    assert!(list[0]["modified"].as_str().unwrap().ends_with('Z'));
    let (code, body) = curl(&["-u", "alice:secret", &url("/")]);
    assert_eq!(code, 200);
    assert!(
        body.contains("\"name\":\"reports\"") && body.contains("\"type\":\"dir\""),
        "{body}"
    );
    let (code, _) = curl(&["-u", "alice:secret", "-X", "DELETE", &url("/reports")]);
    assert_eq!(code, 409, "not empty");
    let (code, _) = curl(&[
        "-u",
        "alice:secret",
        "-X",
        "DELETE",
        &url("/reports/q1.csv"),
    ]);
    assert_eq!(code, 204);
    let (code, _) = curl(&["-u", "alice:secret", "-X", "DELETE", &url("/reports")]);
    assert_eq!(code, 204);
    let (code, body) = curl(&["-u", "alice:secret", &url("/reports/q1.csv")]);
    assert_eq!(code, 404);
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["error"], "not_found");

    // Every operation left an audit record with the full path.
    let (_, metrics) = curl(&["-u", "alice:secret", &gw.url("/metrics")]);
    assert!(
        metrics.contains("forbidden") || metrics.contains("operators only"),
        "alice is no operator"
    );
    let audit = gw.audit();
    let has = |action: &str, path: &str| {
        audit.iter().any(|r| {
            r["action"] == action
                && r["path"] == path
                && r["outcome"] == "ok"
                && r["protocol"] == "http"
        })
    };
    assert!(has("upload", "/alice/inbox.csv"));
    assert!(has("download", "/alice/inbox.csv"));
    assert!(has("mkdir", "/alice/reports"));
    assert!(has("rename", "/alice/inbox.csv"));
    assert!(has("delete", "/alice/reports/q1.csv"));
    assert!(has("rmdir", "/alice/reports"));
    let (_, m) = curl(&["-u", "ops:secret", &gw.url("/metrics")]);
    assert!(
        m.contains(
            "gatehouse_transfers_total{protocol=\"http\",direction=\"upload\",outcome=\"ok\"}"
        ),
        "{m}"
    );
    assert!(
        m.contains("gatehouse_transfer_bytes_total{protocol=\"http\",direction=\"download\"}"),
        "{m}"
    );
    let up = audit.iter().find(|r| r["action"] == "upload").unwrap();
    assert_eq!(up["bytes"], 11);
    assert_eq!(
        up["sha256"],
        hex::encode(sha2::Sha256::digest(b"id,qty\n1,2\n"))
    );
}

fn base64_sha256(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(data))
}

#[test]
fn refusals_have_the_right_codes_and_audit_records() {
    let gw = Gateway::start(&config());
    let url = |p: &str| gw.url(&format!("/v1/files{p}"));
    let (code, body) = curl(&[&url("/")]);
    assert_eq!(code, 401);
    assert!(body.contains("\"error\":\"unauthorized\""));
    let (code, _) = curl(&["-u", "alice:wrong", &url("/")]);
    assert_eq!(code, 401);
    let (code, _) = curl(&["-H", "X-Api-Key: not-a-key", &url("/")]);
    assert_eq!(code, 401);
    let (code, _) = curl(&["-u", "sftponly:secret", &url("/")]);
    assert_eq!(code, 401, "protocol not allowed");
    // bob may list and read, write only into /drop.
    let (code, body) = curl(&[
        "-u",
        "bob:secret",
        "-X",
        "PUT",
        "--data-binary",
        "x",
        &url("/x.txt"),
    ]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("\"error\":\"forbidden\""));
    let (code, _) = curl(&[
        "-u",
        "bob:secret",
        "-X",
        "PUT",
        "--data-binary",
        "x",
        &url("/drop/x.txt"),
    ]);
    assert_eq!(code, 404, "no /drop directory yet");
    // Operators only.
    let (code, _) = curl(&["-u", "alice:secret", &gw.url("/v1/audit")]);
    assert_eq!(code, 403);
    let (code, _) = curl(&["-u", "alice:secret", &gw.url("/metrics")]);
    assert_eq!(code, 403);
    let (code, body) = curl(&["-u", "ops:secret", &gw.url("/metrics")]);
    assert_eq!(code, 200);
    assert!(body.contains("gatehouse_logins_total"), "{body}");
    assert!(
        body.contains("gatehouse_http_request_duration_seconds"),
        "{body}"
    );
    let (code, body) = curl(&[
        "-u",
        "ops:secret",
        &gw.url("/v1/audit?outcome=denied&limit=100"),
    ]);
    assert_eq!(code, 200);
    let denied: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        denied
            .iter()
            .any(|r| r["action"] == "login" && r["user"] == "alice" && r["outcome"] == "denied")
    );
    assert!(
        denied
            .iter()
            .any(|r| r["action"] == "login" && r["user"] == "sftponly")
    );
    assert!(
        denied
            .iter()
            .any(|r| r["action"] == "upload" && r["user"] == "bob" && r["path"] == "/bob/x.txt")
    );
    // Secrets never reach the log.
    let all = std::fs::read_to_string(gw.audit_dir().join("audit-000001.jsonl")).unwrap();
    assert!(!all.contains("wrong") && !all.contains("not-a-key") && !all.contains(API_KEY));
    // Pagination by seq.
    let (_, page1) = curl(&["-u", "ops:secret", &gw.url("/v1/audit?limit=2")]);
    let last: serde_json::Value = serde_json::from_str(page1.lines().last().unwrap()).unwrap();
    let (_, page2) = curl(&[
        "-u",
        "ops:secret",
        &gw.url(&format!("/v1/audit?limit=2&after_seq={}", last["seq"])),
    ]);
    let first2: serde_json::Value = serde_json::from_str(page2.lines().next().unwrap()).unwrap();
    assert_eq!(first2["seq"].as_u64(), last["seq"].as_u64().map(|s| s + 1));
    let (code, _) = curl(&["-u", "ops:secret", &gw.url("/v1/audit?outcome=maybe")]);
    assert_eq!(code, 400);
    let (code, body) = curl(&[&gw.url("/healthz")]);
    assert_eq!(code, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    // The sha256 of the config in effect (what a SIGHUP reload changes).
    let sha = health["config_sha256"].as_str().unwrap();
    assert!(
        sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
        "{body}"
    );
    let (code, _) = curl(&[&gw.url("/readyz")]);
    assert_eq!(code, 200);
}

#[test]
fn traversal_in_every_encoding_stays_home_and_leaks_nothing() {
    let gw = Gateway::start(&config());
    std::fs::write(gw.path("data/bob/private.txt"), b"bob's").unwrap();
    std::fs::write(gw.path("outside.txt"), b"host file").unwrap();
    let attempts = [
        "/v1/files/../bob/private.txt",
        "/v1/files/%2e%2e/bob/private.txt",
        "/v1/files/%2E%2E%2Fbob%2Fprivate.txt",
        "/v1/files/a/..%2f..%2fbob/private.txt",
        "/v1/files/%252e%252e/bob/private.txt",
        "/v1/files/..%5cbob%5cprivate.txt",
        "/v1/files/%2e%2e/%2e%2e/%2e%2e/outside.txt",
        "/v1/files/%00/private.txt",
        "/v1/files/%ff%fe",
        "/v1/files//bob/private.txt",
    ];
    for a in attempts {
        let (code, body) = curl(&["--path-as-is", "-u", "alice:secret", &gw.url(a)]);
        assert!(matches!(code, 400 | 404), "{a}: {code} {body}");
        assert!(
            !body.contains("bob's") && !body.contains("host file"),
            "{a} leaked: {body}"
        );
        assert!(
            !body.contains(gw.dir.path().to_str().unwrap()),
            "{a} leaked a host path: {body}"
        );
    }
    // Writes cannot escape either.
    let (code, _) = curl(&[
        "--path-as-is",
        "-u",
        "alice:secret",
        "-X",
        "PUT",
        "--data-binary",
        "evil",
        &gw.url("/v1/files/%2e%2e/%2e%2e/evil.txt"),
    ]);
    assert_eq!(code, 201, "normalised to /evil.txt inside alice's home");
    assert!(gw.path("data/alice/evil.txt").exists());
    assert!(!gw.path("evil.txt").exists() && !gw.path("data/evil.txt").exists());
}

#[test]
fn a_disconnect_mid_put_leaves_nothing() {
    let gw = Gateway::start(&config());
    let out = run_with_timeout(
        Command::new(python())
            .arg(root().join("tests/py/http_abort.py"))
            .arg(gw.http.to_string())
            .arg("/v1/files/partial.bin")
            .arg("alice:secret"),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out));
    let rec = gw
        .wait_audit(|r| r["action"] == "upload" && r["path"] == "/alice/partial.bin")
        .expect("an upload record");
    assert_eq!(rec["outcome"], "error", "{rec}");
    assert!(rec["bytes"].as_u64().unwrap() > 0, "{rec}");
    assert!(!gw.path("data/alice/partial.bin").exists());
    let staging = crate::harness::staged_files(&gw.path("data"));
    assert!(staging.is_empty(), "staging cleaned: {staging:?}");
}

#[test]
fn a_large_put_and_get_stream_in_constant_memory() {
    let size: u64 = std::env::var("GATEHOUSE_BIG_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024)
        << 20;
    let gw = Gateway::start(&config());
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    write_random(&src, size);
    let want = crate::harness::sha256_file(&src);
    let before = gw.rss_kib();
    let (code, body) = curl(&[
        "-u",
        "alice:secret",
        "-T",
        src.to_str().unwrap(),
        &gw.url("/v1/files/big.bin"),
    ]);
    assert_eq!(code, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["sha256"], want);
    let back = dir.path().join("back.bin");
    let out = run_with_timeout(
        Command::new("curl").args([
            "-sf",
            "-u",
            "alice:secret",
            "-o",
            back.to_str().unwrap(),
            &gw.url("/v1/files/big.bin"),
        ]),
        Duration::from_secs(600),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(crate::harness::sha256_file(&back), want);
    let peak = gw.peak_rss_kib();
    eprintln!(
        "{} MiB PUT+GET: RSS before {before} KiB, peak {peak} KiB",
        size >> 20
    );
    assert!(
        peak < before + 100 * 1024,
        "memory grew with the file: {before} -> {peak} KiB"
    );
}
