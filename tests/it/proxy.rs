//! The API gateway against real upstream processes (tests/py/upstream.py) with curl, Python and
//! wrk: routing and header handling, round robin with health checks and ejection, every auth
//! scheme and its failures, rate limits, the cache, transforms, timeouts, aggregates, WebSocket
//! pass-through, a 1 GiB body in constant memory, audit records and metrics, and a bounded load
//! run with no errors.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use sha2::Digest;

use crate::harness::{
    Gateway, free_port, python, root, run_with_timeout, text, wait_port, write_random,
};
use crate::http_files::curl;

const KEY: &str = "gh_proxy-test-key-0123456789abcdef";
const JWT_SECRET: &str = "0123456789abcdef0123456789abcdef-jwt";

/// A running upstream; stopped on drop.
pub struct Upstream {
    pub port: u16,
    child: Child,
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        let port = free_port();
        let mut child = Command::new(python())
            .arg(root().join("tests/py/upstream.py"))
            .args([&port.to_string(), name])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        assert!(
            wait_port(port, Duration::from_secs(20)),
            "upstream {name} did not start"
        );
        Upstream { port, child }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn hits(&self) -> u64 {
        let (_, body) = curl(&[&format!("{}/hits", self.url())]);
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["hits"]
            .as_u64()
            .unwrap()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(a: &Upstream, b: &Upstream, extra: &str) -> String {
    let key_hash = hex::encode(sha2::Sha256::digest(KEY.as_bytes()));
    format!(
        r#"
[gateway]
state_dir = "{{dir}}/var"
shutdown_grace_secs = 5

[audit]
fsync = "batch"

[limits]
login_failures = {{ max = 100, window_secs = 60, ban_secs = 60 }}

[http]
listen = "127.0.0.1:{{http}}"

[jwt]
algorithms = ["HS256"]
secret = "{JWT_SECRET}"
issuer = "https://id.test"
audience = "gatehouse"

[backends.mem]
kind = "memory"

[[mounts]]
path = "/"
backend = "mem"

[[users]]
name = "acme"
password_hash = "{{secret_hash}}"
permissions = [ {{ path = "/", allow = ["list"] }} ]

[[users]]
name = "ops"
password_hash = "{{secret_hash}}"
role = "operator"

[[api_keys]]
name = "acme-app"
user = "acme"
key_hash = "sha256:{key_hash}"

[[routes]]
name = "orders"
path_prefix = "/api/orders"
methods = ["GET", "POST", "PUT", "HEAD"]
upstreams = ["{a}", "{b}"]
strip_prefix = true
auth = ["api_key", "basic"]
timeout_secs = 2
add_request_headers = {{ "X-Forwarded-Service" = "orders" }}
remove_request_headers = ["Cookie"]
add_response_headers = {{ "X-Served-By" = "gatehouse" }}
remove_response_headers = ["Server"]
health_check = {{ path = "/health", interval_secs = 1 }}
retries = 1

[[routes]]
name = "orders-reports"
path_prefix = "/api/orders/reports"
upstreams = ["{b}/reports-base"]
strip_prefix = true
auth = ["jwt"]

[[routes]]
name = "public"
path_prefix = "/public"
upstreams = ["{a}"]
strip_prefix = true
auth = ["none"]
rate_limit = {{ per_second = 1, burst = 3 }}
cache = {{ ttl_secs = 30 }}

[[routes]]
name = "keep"
path_prefix = "/keep"
upstreams = ["{a}"]
strip_prefix = true
auth = ["api_key", "basic"]
cache = {{ ttl_secs = 30 }}

[[aggregates]]
name = "dash"
path = "/api/dashboard"
auth = ["api_key"]
timeout_secs = 1
parts = [ {{ key = "a", url = "{a}/json/one" }}, {{ key = "b", url = "{b}/json/two" }} ]
{extra}
"#,
        a = a.url(),
        b = b.url()
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn jwt(claims: serde_json::Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn routes_rewrite_headers_and_balance() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&config(&a, &b, ""));
    let auth = format!("X-Api-Key: {KEY}");
    let (code, body) = curl(&[
        "-H",
        &auth,
        "-H",
        "X-Gatehouse-User: mallory",
        "-H",
        "Cookie: session=1",
        "-H",
        "X-Forwarded-For: 10.9.9.9",
        "-H",
        "X-Request-Id: req-123",
        &gw.url("/api/orders/42?x=1"),
    ]);
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["path"], "/42", "strip_prefix");
    assert_eq!(v["query"], "x=1");
    let h = &v["headers"];
    assert_eq!(
        h["x-gatehouse-user"], "acme",
        "set from the principal, client value replaced"
    );
    assert!(
        h.get("x-api-key").is_none() && h.get("authorization").is_none(),
        "credentials not passed on: {h}"
    );
    assert!(h.get("cookie").is_none(), "remove_request_headers");
    assert_eq!(h["x-forwarded-service"], "orders");
    // The client is not a trusted proxy: its X-Forwarded-For is replaced, not extended.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-request-id"], "req-123");
    // Response transforms.
    let out = run_with_timeout(
        Command::new("curl").args(["-s", "-i", "-H", &auth, &gw.url("/api/orders/1")]),
        Duration::from_secs(20),
    );
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        head.contains("x-served-by: gatehouse") && !head.contains("server: upstream-test"),
        "{head}"
    );
    assert!(head.contains("x-request-id: "), "{head}");
    // Round robin over both upstreams.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let (_, body) = curl(&["-u", "acme:secret", &gw.url("/api/orders/rr")]);
        seen.insert(json(&body)["server"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Longest prefix wins; method restrictions; reserved paths stay the gateway's.
    let token = jwt(
        serde_json::json!({"sub": "acme", "exp": now() + 60, "iss": "https://id.test", "aud": "gatehouse"}),
        JWT_SECRET,
    );
    let (code, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        &gw.url("/api/orders/reports/q1"),
    ]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["path"], "/reports-base/q1");
    let (code, _) = curl(&["-X", "DELETE", "-H", &auth, &gw.url("/api/orders/1")]);
    assert_eq!(code, 405);
    let (code, _) = curl(&[&gw.url("/healthz")]);
    assert_eq!(code, 200);
    let (code, body) = curl(&[&gw.url("/nowhere")]);
    assert_eq!(code, 404);
    assert_eq!(json(&body)["error"], "not_found");
    // Audit and metrics.
    let rec = gw
        .wait_audit(|r| {
            r["action"] == "proxy" && r["path"] == "/api/orders/42" && r["outcome"] == "ok"
        })
        .expect("proxy record");
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["user"], "acme");
    assert!(rec["bytes"].as_u64().unwrap() > 0);
    assert!(
        rec["detail"].as_str().unwrap().contains("route=orders"),
        "{rec}"
    );
    let (_, m) = curl(&["-u", "ops:secret", &gw.url("/metrics")]);
    assert!(
        m.contains("gatehouse_proxy_requests_total{route=\"orders\",status=\"200\"}"),
        "{m}"
    );
    assert!(m.contains("gatehouse_proxy_upstream_seconds"), "{m}");
}

#[test]
fn auth_schemes_and_their_failures() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&config(&a, &b, ""));
    let url = gw.url("/api/orders/reports/x");
    let bearer = |t: &str| format!("Authorization: Bearer {t}");
    let good = serde_json::json!({"sub": "acme", "exp": now() + 60, "iss": "https://id.test", "aud": "gatehouse"});
    let (code, _) = curl(&["-H", &bearer(&jwt(good.clone(), JWT_SECRET)), &url]);
    assert_eq!(code, 200);
    let mut expired = good.clone();
    expired["exp"] = (now() - 600).into();
    let mut aud = good.clone();
    aud["aud"] = "someone-else".into();
    let mut unknown = good.clone();
    unknown["sub"] = "nobody".into();
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&good.to_string())
    );
    for (what, token) in [
        ("expired", jwt(expired, JWT_SECRET)),
        ("wrong audience", jwt(aud, JWT_SECRET)),
        (
            "wrong signature",
            jwt(good.clone(), "not-the-secret-not-the-secret-xx"),
        ),
        ("unknown user", jwt(unknown, JWT_SECRET)),
        ("alg none", none),
    ] {
        let (code, body) = curl(&["-H", &bearer(&token), &url]);
        assert_eq!(code, 401, "{what}: {body}");
    }
    // An API key is not a JWT route's credential; no credentials at all is a 401 too.
    let (code, _) = curl(&["-H", &format!("X-Api-Key: {KEY}"), &url]);
    assert_eq!(code, 401);
    let (code, _) = curl(&[&gw.url("/api/orders/1")]);
    assert_eq!(code, 401);
    let (code, _) = curl(&["-u", "acme:wrong", &gw.url("/api/orders/1")]);
    assert_eq!(code, 401);
    let (code, _) = curl(&["-H", &bearer(KEY), &gw.url("/api/orders/1")]);
    assert_eq!(code, 200, "Bearer <api key>");
    let (code, _) = curl(&[&gw.url("/public/anything")]);
    assert_eq!(code, 200, "auth = none");
    assert!(
        gw.wait_audit(|r| r["action"] == "proxy"
            && r["outcome"] == "denied"
            && r["status"] == 401
            && r["path"] == "/api/orders/reports/x")
            .is_some()
    );
    assert!(
        gw.wait_audit(|r| r["action"] == "login"
            && r["outcome"] == "denied"
            && r["detail"].as_str().is_some_and(|d| d.contains("expired")))
            .is_some()
    );
    let all = std::fs::read_to_string(gw.audit_dir().join("audit-000001.jsonl")).unwrap();
    assert!(
        !all.contains(KEY) && !all.contains("eyJ"),
        "no keys or tokens in the audit log"
    );
}

#[test]
fn rate_limits_answer_429_with_retry_after() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&config(&a, &b, ""));
    let mut codes = Vec::new();
    let mut retry_after = None;
    for i in 0..6 {
        let out = run_with_timeout(
            Command::new("curl").args([
                "-s",
                "-i",
                "-H",
                "Cache-Control: no-cache",
                &gw.url(&format!("/public/r{i}")),
            ]),
            Duration::from_secs(20),
        );
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        let code: u16 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
        if code == 429 {
            retry_after = s.lines().find_map(|l| {
                l.to_lowercase()
                    .strip_prefix("retry-after: ")
                    .map(|v| v.trim().to_string())
            });
            assert!(s.contains("\"error\":\"rate_limited\""), "{s}");
        }
        codes.push(code);
    }
    assert_eq!(&codes[..3], &[200, 200, 200], "burst of 3: {codes:?}");
    assert!(codes[3..].contains(&429), "{codes:?}");
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
    assert!(
        gw.wait_audit(|r| r["action"] == "proxy" && r["status"] == 429 && r["outcome"] == "denied")
            .is_some()
    );
}

#[test]
fn the_cache_hits_misses_and_respects_cache_control_and_vary() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&config(&a, &b, ""));
    let get = |path: &str, extra: &[&str]| {
        let out = run_with_timeout(
            Command::new("curl")
                .args(["-s", "-i", "-H", &format!("X-Api-Key: {KEY}")])
                .args(extra)
                .arg(gw.url(path)),
            Duration::from_secs(20),
        );
        String::from_utf8_lossy(&out.stdout).to_lowercase()
    };
    let before = a.hits();
    assert!(get("/keep/cache?v=1", &[]).contains("x-cache: miss"));
    assert!(get("/keep/cache?v=1", &[]).contains("x-cache: hit"));
    assert_eq!(a.hits(), before + 1, "second GET served from the cache");
    // The query is part of the key; no-cache bypasses the lookup.
    assert!(get("/keep/cache?v=2", &[]).contains("x-cache: miss"));
    assert!(get("/keep/cache?v=1", &["-H", "Cache-Control: no-cache"]).contains("x-cache: miss"));
    // Responses marked no-store or private are never stored.
    get("/keep/cache?cc=no-store", &[]);
    assert!(get("/keep/cache?cc=no-store", &[]).contains("x-cache: miss"));
    get("/keep/cache?cc=private", &[]);
    assert!(get("/keep/cache?cc=private", &[]).contains("x-cache: miss"));
    // Vary splits entries by the request header.
    get(
        "/keep/cache?vary=Accept-Language",
        &["-H", "Accept-Language: en"],
    );
    assert!(
        get(
            "/keep/cache?vary=Accept-Language",
            &["-H", "Accept-Language: en"]
        )
        .contains("x-cache: hit")
    );
    assert!(
        get(
            "/keep/cache?vary=Accept-Language",
            &["-H", "Accept-Language: de"]
        )
        .contains("x-cache: miss")
    );
    // Per principal on authenticated routes: Basic as acme shares acme's entries, not others'.
    let out = run_with_timeout(
        Command::new("curl").args(["-s", "-i", "-u", "acme:secret", &gw.url("/keep/cache?v=1")]),
        Duration::from_secs(20),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .to_lowercase()
            .contains("x-cache: hit"),
        "same principal, other credential"
    );
}

#[test]
fn health_checks_ejection_timeouts_and_upstream_failures() {
    let (a, mut b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&config(&a, &b, ""));
    let auth = format!("X-Api-Key: {KEY}");
    // b reports unhealthy: within a check interval all traffic goes to a.
    curl(&["-X", "POST", &format!("{}/__down", b.url())]);
    std::thread::sleep(Duration::from_millis(2500));
    for _ in 0..6 {
        let (code, body) = curl(&["-H", &auth, &gw.url("/api/orders/hc")]);
        assert_eq!(code, 200);
        assert_eq!(json(&body)["server"], "a", "unhealthy b left the rotation");
    }
    curl(&["-X", "POST", &format!("{}/__up", b.url())]);
    std::thread::sleep(Duration::from_millis(2500));
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let (_, body) = curl(&["-H", &auth, &gw.url("/api/orders/hc")]);
        seen.insert(json(&body)["server"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "b is back: {seen:?}");
    // Slow upstream: 504 after the route's 2 s timeout.
    let (code, body) = curl(&["-H", &auth, &gw.url("/api/orders/slow?ms=4000")]);
    assert_eq!(code, 504, "{body}");
    assert_eq!(json(&body)["error"], "gateway_timeout");
    // b dies: GETs are retried on a (connect error), so clients see no failure.
    b.stop();
    for _ in 0..6 {
        let (code, _) = curl(&["-H", &auth, &gw.url("/api/orders/after")]);
        assert_eq!(code, 200);
    }
    // Upstream 503 on an idempotent request is retried elsewhere; a 500 is passed through.
    let (code, _) = curl(&["-H", &auth, &gw.url("/api/orders/status/500")]);
    assert_eq!(code, 500);
    // The public route has a single upstream (a); stop it too: 502.
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    let (code, body) = curl(&[&gw.url("/public/x")]);
    assert_eq!(code, 502, "{body}");
    assert_eq!(json(&body)["error"], "bad_gateway");
    assert!(
        gw.wait_audit(|r| r["action"] == "proxy" && r["status"] == 504 && r["outcome"] == "error")
            .is_some()
    );
}

#[test]
fn aggregates_merge_parts_and_mark_partial_failures() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let extra = format!(
        "[[aggregates]]\nname = \"partial\"\npath = \"/api/partial\"\nauth = [\"api_key\"]\ntimeout_secs = 1\nparts = [ {{ key = \"ok\", url = \"{a}/json/one\" }}, {{ key = \"slow\", url = \"{a}/json/slow\" }}, {{ key = \"bad\", url = \"{b}/json/bad\" }}, {{ key = \"err\", url = \"{b}/status/500\" }} ]",
        a = a.url(),
        b = b.url()
    );
    let gw = Gateway::start(&config(&a, &b, &extra));
    let (code, body) = curl(&[
        "-H",
        &format!("X-Api-Key: {KEY}"),
        &gw.url("/api/dashboard"),
    ]);
    assert_eq!(code, 200);
    let v = json(&body);
    assert_eq!(v["a"]["part"], "one");
    assert_eq!(v["b"]["part"], "two");
    let out = run_with_timeout(
        Command::new("curl").args([
            "-s",
            "-i",
            "-H",
            &format!("X-Api-Key: {KEY}"),
            &gw.url("/api/partial"),
        ]),
        Duration::from_secs(20),
    );
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let partial = s
        .lines()
        .find_map(|l| {
            l.to_lowercase()
                .strip_prefix("x-gatehouse-partial: ")
                .map(str::to_string)
        })
        .expect(&s);
    for k in ["slow", "bad", "err"] {
        assert!(partial.contains(k), "{partial}");
    }
    let body = s.split("\r\n\r\n").nth(1).unwrap();
    let v = json(body);
    assert_eq!(v["ok"]["part"], "one");
    assert!(
        v["slow"].is_null() && v["bad"].is_null() && v["err"].is_null(),
        "{v}"
    );
    let (code, _) = curl(&[&gw.url("/api/dashboard")]);
    assert_eq!(code, 401);
}

#[test]
fn websockets_pass_through() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let extra = format!(
        "[[routes]]\nname = \"ws\"\npath_prefix = \"/ws\"\nupstreams = [\"{}\"]\nauth = [\"api_key\"]",
        a.url()
    );
    let gw = Gateway::start(&config(&a, &b, &extra));
    let out = run_with_timeout(
        Command::new(python())
            .arg(root().join("tests/py/ws_client.py"))
            .args([&format!("ws://127.0.0.1:{}/ws", gw.http), KEY]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("a:hello"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_large_body_streams_through_a_route_in_constant_memory() {
    let mib: u64 = std::env::var("GATEHOUSE_BIG_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&config(&a, &b, ""));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    write_random(&src, mib << 20);
    let before = gw.rss_kib();
    let (code, body) = curl(&[
        "-H",
        &format!("X-Api-Key: {KEY}"),
        "-T",
        src.to_str().unwrap(),
        &gw.url("/api/orders/upload"),
    ]);
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["bytes"], mib << 20);
    assert_eq!(v["sha256"], crate::harness::sha256_file(&src));
    let out = run_with_timeout(
        Command::new("curl").args([
            "-sf",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "-H",
            &format!("X-Api-Key: {KEY}"),
            &gw.url(&format!("/api/orders/big?mib={mib}")),
        ]),
        Duration::from_secs(600),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        (mib << 20).to_string()
    );
    let peak = gw.peak_rss_kib();
    eprintln!("{mib} MiB up and down through a route: RSS before {before} KiB, peak {peak} KiB");
    assert!(
        peak < before + 100 * 1024,
        "memory grew with the body: {before} -> {peak} KiB"
    );
}

#[test]
fn a_bounded_load_run_has_no_errors() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&config(&a, &b, ""));
    let out = run_with_timeout(
        Command::new("wrk").args([
            "-t2",
            "-c16",
            "-d3s",
            "-H",
            &format!("X-Api-Key: {KEY}"),
            &gw.url("/api/orders/load"),
        ]),
        Duration::from_secs(30),
    );
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!s.contains("Non-2xx"), "{s}");
    assert!(!s.contains("Socket errors"), "{s}");
    let requests: u64 = s
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(requests > 100, "{s}");
}
