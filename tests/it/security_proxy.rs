//! The API gateway against a hostile client (issue 10): request paths are normalised before
//! route matching (`/public/../admin` cannot ride a public route), forwarding headers are
//! believed only from `trusted_proxies`, the cache key holds the Host, only WebSocket upgrades
//! are spliced, public routes do not leak the caller's credentials upstream, `users` limits a
//! route, and aggregates have a rate limit and a part-size cap.

use std::process::Command;
use std::time::Duration;

use sha2::Digest;

use crate::harness::{Gateway, run_with_timeout};
use crate::proxy::Upstream;

const KEY: &str = "gh_security-proxy-key-0123456789";

/// Two routes (`/public` open, `/admin` with credentials); `extra` goes into `[http]`,
/// `admin_extra` after the admin route (more keys, or more tables).
fn config(public: &Upstream, admin: &Upstream, extra: &str, admin_extra: &str) -> String {
    let key_hash = hex::encode(sha2::Sha256::digest(KEY.as_bytes()));
    format!(
        r#"
[gateway]
state_dir = "{{dir}}/var"
shutdown_grace_secs = 5

[audit]
fsync = "batch"

[http]
listen = "127.0.0.1:{{http}}"
{extra}

[backends.mem]
kind = "memory"

[[mounts]]
path = "/"
backend = "mem"

[[users]]
name = "acme"
password_hash = "{{secret_hash}}"

[[users]]
name = "bob"
password_hash = "{{secret_hash}}"

[[api_keys]]
name = "acme-app"
user = "acme"
key_hash = "sha256:{key_hash}"

[[routes]]
name = "public"
path_prefix = "/public"
upstreams = ["{pu}"]
strip_prefix = true
auth = ["none"]
cache = {{ ttl_secs = 60 }}

[[routes]]
name = "admin"
path_prefix = "/admin"
upstreams = ["{ad}"]
strip_prefix = true
auth = ["api_key", "basic"]
{admin_extra}
"#,
        pu = public.url(),
        ad = admin.url(),
    )
}

/// curl with extra arguments; returns (status, headers+body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = run_with_timeout(
        Command::new("curl")
            .args(["-s", "-i", "-w", "\n%{http_code}", "--max-time", "20"])
            .args(args),
        Duration::from_secs(30),
    );
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn echo(resp: &str) -> serde_json::Value {
    let body = resp.split("\r\n\r\n").last().unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {resp}"))
}

#[test]
fn dot_segments_cannot_carry_a_request_across_routes() {
    let (pu, ad) = (Upstream::start("public"), Upstream::start("admin"));
    let gw = Gateway::start(&config(&pu, &ad, "", ""));
    // Raw `..`: resolved before matching, so it is the admin route, which wants credentials.
    let (code, resp) = curl(&["--path-as-is", &gw.url("/public/../admin/secrets")]);
    assert_eq!(code, 401, "{resp}");
    // Encoded dot segments and slashes: refused outright.
    for p in [
        "/public/%2e%2e/admin/secrets",
        "/public/.%2E/admin/secrets",
        "/public%2f..%2fadmin/secrets",
        "/public/..%5cadmin",
    ] {
        let (code, resp) = curl(&["--path-as-is", &gw.url(p)]);
        assert_eq!(code, 400, "{p}: {resp}");
    }
    assert_eq!(ad.hits(), 0, "the admin upstream saw a request");
    // What a public upstream receives is normalised too.
    let (code, resp) = curl(&["--path-as-is", &gw.url("/public/a/./b//c/../d")]);
    assert_eq!(code, 200, "{resp}");
    assert_eq!(echo(&resp)["path"], "/a/b/d");
    let rec = gw
        .wait_audit(|r| {
            r["action"] == "proxy"
                && r["outcome"] == "denied"
                && r["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("path refused"))
        })
        .expect("refused paths are audited");
    assert_eq!(rec["status"], 400);
}

#[test]
fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let (pu, ad) = (Upstream::start("public"), Upstream::start("admin"));
    let gw = Gateway::start(&config(
        &pu,
        &ad,
        "trusted_proxies = [\"127.0.0.2/32\"]",
        "",
    ));
    let spoof = [
        "-H",
        "X-Forwarded-For: 203.0.113.9",
        "-H",
        "X-Forwarded-Host: evil.example",
        "-H",
        "X-Forwarded-Proto: https",
        "-H",
        "Forwarded: for=203.0.113.9",
        "-H",
        "X-Real-IP: 203.0.113.9",
    ];
    let mut args = spoof.to_vec();
    let url = gw.url("/public/echo");
    args.extend(["-H", "Host: shop.example", url.as_str()]);
    let (_, resp) = curl(&args);
    let h = &echo(&resp)["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{h}");
    assert_eq!(h["x-forwarded-host"], "shop.example", "{h}");
    assert_eq!(h["x-forwarded-proto"], "http", "{h}");
    assert!(
        h.get("forwarded").is_none() && h.get("x-real-ip").is_none(),
        "{h}"
    );
    // From the trusted proxy the chain is kept and extended, and the audit names the client.
    let mut args = vec!["--interface", "127.0.0.2"];
    args.extend(spoof);
    args.push(url.as_str());
    let (_, resp) = curl(&args);
    let h = &echo(&resp)["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.2", "{h}");
    assert_eq!(h["x-forwarded-host"], "evil.example", "{h}");
    let rec = gw
        .wait_audit(|r| {
            r["action"] == "proxy"
                && r["remote"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("203.0.113.9"))
        })
        .expect("the client behind the trusted proxy is audited");
    assert_eq!(rec["path"], "/public/echo");
}

#[test]
fn the_cache_keeps_hosts_apart() {
    let (pu, ad) = (Upstream::start("public"), Upstream::start("admin"));
    let gw = Gateway::start(&config(&pu, &ad, "", ""));
    let url = gw.url("/public/cache?cc=public,max-age=60");
    let (_, a) = curl(&["-H", "Host: a.example", &url]);
    let (_, b) = curl(&["-H", "Host: b.example", &url]);
    assert_eq!(echo(&a)["headers"]["x-forwarded-host"], "a.example");
    assert_eq!(
        echo(&b)["headers"]["x-forwarded-host"],
        "b.example",
        "served a.example's cached answer to b.example: {b}"
    );
    let (_, again) = curl(&["-H", "Host: a.example", &url]);
    assert!(
        again.to_lowercase().contains("x-cache: hit"),
        "same host hits: {again}"
    );
}

#[test]
fn only_websocket_upgrades_are_spliced_and_public_routes_drop_credentials() {
    let (pu, ad) = (Upstream::start("public"), Upstream::start("admin"));
    let gw = Gateway::start(&config(&pu, &ad, "", ""));
    let (code, resp) = curl(&[
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: h2c",
        "-H",
        &format!("X-Api-Key: {KEY}"),
        "-u",
        "acme:secret",
        &gw.url("/public/echo"),
    ]);
    assert_eq!(code, 200, "{resp}");
    let h = &echo(&resp)["headers"];
    assert!(h.get("upgrade").is_none(), "upgrade forwarded: {h}");
    assert!(
        h.get("authorization").is_none() && h.get("x-api-key").is_none(),
        "the caller's gateway credentials reached a public upstream: {h}"
    );
}

#[test]
fn route_users_and_aggregate_limits_apply() {
    let (pu, ad) = (Upstream::start("public"), Upstream::start("admin"));
    let extra = format!(
        r#"users = ["acme"]

[[aggregates]]
name = "dash"
path = "/dash"
auth = ["basic"]
users = ["acme"]
rate_limit = {{ per_second = 1, burst = 2 }}
max_part_bytes = 1024
parts = [ {{ key = "small", url = "{pu}/json/x" }}, {{ key = "big", url = "{pu}/json/{long}" }} ]
"#,
        pu = pu.url(),
        long = "y".repeat(2000)
    );
    let gw = Gateway::start(&config(&pu, &ad, "", &extra));
    let (code, _) = curl(&["-u", "bob:secret", &gw.url("/admin/x")]);
    assert_eq!(code, 403, "bob is not in the route's users");
    let (code, _) = curl(&["-u", "acme:secret", &gw.url("/admin/x")]);
    assert_eq!(code, 200);
    let (code, resp) = curl(&["-u", "bob:secret", &gw.url("/dash")]);
    assert_eq!(code, 403, "{resp}");
    let (code, resp) = curl(&["-u", "acme:secret", &gw.url("/dash")]);
    assert_eq!(code, 200, "{resp}");
    let v = echo(&resp);
    assert_eq!(v["small"]["part"], "x");
    assert!(
        v["big"].is_null(),
        "a part over max_part_bytes is null: {v}"
    );
    assert!(
        resp.to_lowercase().contains("x-gatehouse-partial: big"),
        "{resp}"
    );
    // The burst of two is spent (one call above, one here); the next waits.
    let (code, _) = curl(&["-u", "acme:secret", &gw.url("/dash")]);
    assert_eq!(code, 200);
    let (code, resp) = curl(&["-u", "acme:secret", &gw.url("/dash")]);
    assert_eq!(code, 429, "{resp}");
    assert!(resp.to_lowercase().contains("retry-after:"), "{resp}");
}
