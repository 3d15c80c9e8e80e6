//! SIGHUP reloads the config: a new user can log in at once over SFTP and HTTP, a removed one
//! cannot, a session already open (an upload in flight) carries on; an invalid file, or a change
//! that needs a restart, is refused with an audit record and the running config stays. The
//! config's sha256 in `/healthz` follows what is in effect.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::harness::{Gateway, python, root, run_with_timeout};
use crate::http_files::curl;

fn config(users: &[&str], sftp_listen: &str) -> String {
    let mut c = format!(
        r#"
[gateway]
state_dir = "{{dir}}/var"
shutdown_grace_secs = 5

[sftp]
listen = "{sftp_listen}"
host_keys = ["{{dir}}/var/host_ed25519"]

[http]
listen = "127.0.0.1:{{http}}"

[backends.disk]
kind = "local"
root = "{{dir}}/data"

[[mounts]]
path = "/"
backend = "disk"
"#
    );
    for u in users {
        c.push_str(&format!(
            "\n[[users]]\nname = \"{u}\"\npassword_hash = \"{{secret_hash}}\"\nhome = \"/{u}\"\n\
             permissions = [ {{ path = \"/\", allow = [\"list\", \"read\", \"write\", \"overwrite\"] }} ]\n"
        ));
    }
    c
}

/// Writes `template` (rendered like the harness does) over the running gateway's config.
fn rewrite(gw: &Gateway, template: &str) -> String {
    let text = crate::harness::render(template, gw.dir.path(), gw.http, gw.sftp, gw.ftp, gw.pasv);
    std::fs::write(&gw.config_path, &text).unwrap();
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn hup(gw: &Gateway) {
    let st = Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn config_records(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.audit()
        .into_iter()
        .filter(|r| r["action"] == "config")
        .collect()
}

/// Waits (bounded) for the `n`-th config record and returns it.
fn nth_config(gw: &Gateway, n: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let recs = config_records(gw);
        if recs.len() >= n {
            return recs[n - 1].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no config record {n}: {}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn healthz_sha(gw: &Gateway) -> String {
    let (_, body) = curl(&[&gw.url("/healthz")]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["config_sha256"].as_str().unwrap().to_string()
}

fn http_login(gw: &Gateway, user: &str) -> u16 {
    curl(&["-u", &format!("{user}:secret"), &gw.url("/v1/files/")]).0
}

#[test]
fn sighup_applies_identity_changes_and_refuses_what_needs_a_restart() {
    let template = config(&["alice"], "127.0.0.1:{sftp}");
    let gw = Gateway::start(&template);
    let started = nth_config(&gw, 1);
    assert!(started["detail"].as_str().unwrap().starts_with("started"));
    let first_sha = healthz_sha(&gw);
    assert_eq!(first_sha.len(), 64);
    assert_eq!(http_login(&gw, "bob"), 401);

    // alice uploads slowly over SFTP while the config changes under her.
    let mut alice = Command::new(python())
        .arg(root().join("tests/py/hold_session.py"))
        .args([
            &gw.sftp.to_string(),
            "alice",
            "secret",
            "slow.bin",
            "30",
            "0.1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    gw.wait_audit(|r| r["action"] == "login" && r["user"] == "alice" && r["protocol"] == "sftp")
        .expect("alice logged in");

    // 1. bob added, alice kept.
    let sha = rewrite(&gw, &config(&["alice", "bob"], "127.0.0.1:{sftp}"));
    hup(&gw);
    let rec = nth_config(&gw, 2);
    assert_eq!(rec["outcome"], "ok", "{rec}");
    assert!(rec["detail"].as_str().unwrap().contains(&sha), "{rec}");
    assert_eq!(healthz_sha(&gw), sha);
    assert_eq!(http_login(&gw, "bob"), 200);
    let out = run_with_timeout(
        Command::new(python()).args([
            "-c",
            "import paramiko,sys; t=paramiko.Transport(('127.0.0.1',int(sys.argv[1]))); t.connect(username='bob',password='secret'); s=paramiko.SFTPClient.from_transport(t); print(s.listdir('.')); t.close()",
            &gw.sftp.to_string(),
        ]),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "bob over sftp: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 2. An invalid file: refused, audited, the running config (with bob) stays.
    std::fs::write(&gw.config_path, "[gateway\nbroken").unwrap();
    hup(&gw);
    let rec = nth_config(&gw, 3);
    assert_eq!(rec["outcome"], "error", "{rec}");
    assert!(
        rec["detail"].as_str().unwrap().contains("reload refused"),
        "{rec}"
    );
    assert_eq!(healthz_sha(&gw), sha);
    assert_eq!(http_login(&gw, "bob"), 200);

    // 3. A listener change needs a restart: refused, naming the section.
    rewrite(&gw, &config(&["alice"], "127.0.0.1:1"));
    hup(&gw);
    let rec = nth_config(&gw, 4);
    assert_eq!(rec["outcome"], "error", "{rec}");
    assert!(
        rec["detail"]
            .as_str()
            .unwrap()
            .contains("changes to sftp need a restart"),
        "{rec}"
    );
    assert_eq!(http_login(&gw, "bob"), 200);

    // 4. bob removed: his next login is refused; alice's upload in flight finished meanwhile.
    let sha = rewrite(&gw, &config(&["alice"], "127.0.0.1:{sftp}"));
    hup(&gw);
    let rec = nth_config(&gw, 5);
    assert_eq!(rec["outcome"], "ok", "{rec}");
    assert_eq!(healthz_sha(&gw), sha);
    assert_eq!(http_login(&gw, "bob"), 401);
    assert_eq!(http_login(&gw, "alice"), 200);
    let up = gw
        .wait_audit(|r| r["action"] == "upload" && r["path"] == "/alice/slow.bin")
        .expect("alice's upload, in flight across the reloads, completed");
    assert_eq!(up["outcome"], "ok", "{up}");
    assert_eq!(up["bytes"], 30 * 65536);
    let _ = alice.kill();
    let _ = alice.wait();
}

/// `config(["alice"])` with `routes` appended.
fn with_routes(routes: &str) -> String {
    let mut c = config(&["alice"], "127.0.0.1:{sftp}");
    c.push_str(routes);
    c
}

fn route(name: &str, prefix: &str, upstream: &str, extra: &str) -> String {
    format!(
        "\n[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstreams = [\"{upstream}\"]\n\
         strip_prefix = true\nauth = [\"none\"]\n{extra}\n"
    )
}

/// Which upstream answered a proxied GET (status, `server` of the echo).
fn served_by(gw: &Gateway, path: &str) -> (u16, String) {
    let (code, body) = curl(&[&gw.url(path)]);
    let server = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["server"].as_str().map(str::to_string))
        .unwrap_or_default();
    (code, server)
}

#[test]
fn sighup_replaces_the_routes_and_keeps_what_did_not_change() {
    let a = crate::proxy::Upstream::start("a");
    let b = crate::proxy::Upstream::start("b");
    // "kept" allows a burst of 3, then 1/s, and does not change: its bucket survives the
    // reload.
    let kept = route(
        "kept",
        "/kept",
        &a.url(),
        "global_rate_limit = { per_second = 1, burst = 3 }",
    );
    let gw = Gateway::start(&with_routes(&format!(
        "{kept}{}",
        route("moving", "/moving", &a.url(), "")
    )));
    assert_eq!(served_by(&gw, "/moving/x"), (200, "a".into()));
    assert_eq!(served_by(&gw, "/added/x").0, 404);
    // A slow request in flight on the route being replaced.
    let url = gw.url("/moving/slow?ms=1500");
    let slow = std::thread::spawn(move || curl(&[&url]));
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        assert_eq!(served_by(&gw, "/kept/x").0, 200);
    }
    assert_eq!(served_by(&gw, "/kept/x").0, 429);

    // "moving" now goes to b, "added" is new; "kept" is the same.
    let sha = rewrite(
        &gw,
        &with_routes(&format!(
            "{kept}{}{}",
            route("moving", "/moving", &b.url(), ""),
            route("added", "/added", &b.url(), "")
        )),
    );
    hup(&gw);
    let rec = nth_config(&gw, 2);
    assert_eq!(rec["outcome"], "ok", "{rec}");
    let detail = rec["detail"].as_str().unwrap();
    assert!(
        detail.contains(&sha) && detail.contains("routes replaced"),
        "{rec}"
    );
    // A fresh bucket would admit 3 at once; the kept one at most the one token refilled
    // since.
    let admitted = (0..3)
        .filter(|_| served_by(&gw, "/kept/x").0 == 200)
        .count();
    assert!(
        admitted <= 1,
        "the kept route's bucket was reset: {admitted} of 3 admitted"
    );
    assert_eq!(served_by(&gw, "/moving/x"), (200, "b".into()));
    assert_eq!(served_by(&gw, "/added/x"), (200, "b".into()));
    // The request in flight finished on the upstream it was sent to.
    let (code, body) = slow.join().unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"server\": \"a\"") || body.contains("\"server\":\"a\""),
        "{body}"
    );

    // A route pointing at a name no validation accepts: refused, the routes stay.
    rewrite(
        &gw,
        &with_routes(&route("broken", "/moving", "ftp://nowhere", "")),
    );
    hup(&gw);
    let rec = nth_config(&gw, 3);
    assert_eq!(rec["outcome"], "error", "{rec}");
    assert!(rec["detail"].as_str().unwrap().contains("routes"), "{rec}");
    assert_eq!(healthz_sha(&gw), sha);
    assert_eq!(served_by(&gw, "/moving/x"), (200, "b".into()));

    // Routes removed: the path is no longer proxied.
    rewrite(&gw, &with_routes(""));
    hup(&gw);
    assert_eq!(nth_config(&gw, 4)["outcome"], "ok");
    assert_eq!(served_by(&gw, "/moving/x").0, 404);
    assert_eq!(served_by(&gw, "/kept/x").0, 404);
}

/// `openssl ARGS...`, which must succeed.
fn openssl(args: &[&str]) {
    let out = run_with_timeout(Command::new("openssl").args(args), Duration::from_secs(60));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        crate::harness::text(&out)
    );
}

/// A new self-signed certificate for 127.0.0.1 (P-256), written to `cert` and `key` by
/// renaming over them, as certificate renewers do.
fn renew(cert: &std::path::Path, key: &std::path::Path, cn: &str) {
    let (c, k) = (cert.with_extension("new"), key.with_extension("new"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "30",
        "-subj",
        &format!("/CN={cn}"),
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-keyout",
        k.to_str().unwrap(),
        "-out",
        c.to_str().unwrap(),
    ]);
    std::fs::rename(&k, key).unwrap();
    std::fs::rename(&c, cert).unwrap();
}

/// The subject of the certificate the server at `port` presents (`starttls`: `ftp`).
fn served_subject(port: u16, starttls: Option<&str>) -> String {
    let mut cmd = format!("openssl s_client -connect 127.0.0.1:{port} -servername localhost");
    if let Some(p) = starttls {
        cmd.push_str(&format!(" -starttls {p}"));
    }
    cmd.push_str(" </dev/null 2>/dev/null | openssl x509 -noout -subject");
    let out = run_with_timeout(
        Command::new("bash").args(["-c", &cmd]),
        Duration::from_secs(30),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn sighup_serves_certificates_renewed_in_place_and_refuses_a_broken_one() {
    let tls = tempfile::tempdir().unwrap();
    let (cert, key) = (tls.path().join("cert.pem"), tls.path().join("key.pem"));
    std::fs::copy(root().join("fixtures/tls/cert.pem"), &cert).unwrap();
    std::fs::copy(root().join("fixtures/tls/key.pem"), &key).unwrap();
    let mut template = config(&["alice"], "127.0.0.1:{sftp}");
    template.push_str(&format!(
        "\n[http.tls]\ncert = \"{c}\"\nkey = \"{k}\"\n\n[ftp]\nlisten = \"127.0.0.1:{{ftp}}\"\n\
         passive_ports = [{{pasv_lo}}, {{pasv_hi}}]\n\n[ftp.tls]\ncert = \"{c}\"\nkey = \"{k}\"\n",
        c = cert.display(),
        k = key.display()
    ));
    let gw = Gateway::start(&template);
    let https = format!("https://127.0.0.1:{}/healthz", gw.http);
    let before = served_subject(gw.http, None);
    assert!(
        !before.is_empty() && !before.contains("renewed"),
        "{before}"
    );
    assert_eq!(served_subject(gw.ftp, Some("ftp")), before);

    // Renewed in place, same config: after the reload both doors serve the new certificate,
    // and curl trusting only it gets through.
    renew(&cert, &key, "renewed");
    let trusting_new = || curl(&["--cacert", cert.to_str().unwrap(), &https]).0;
    assert_eq!(
        trusting_new(),
        0,
        "the new certificate was served before the reload"
    );
    hup(&gw);
    let rec = nth_config(&gw, 2);
    assert_eq!(rec["outcome"], "ok", "{rec}");
    let detail = rec["detail"].as_str().unwrap();
    assert!(
        detail.contains("new TLS certificate: http.tls") && detail.contains("ftp.tls"),
        "{rec}"
    );
    assert_eq!(trusting_new(), 200);
    assert!(served_subject(gw.http, None).contains("renewed"));
    assert!(served_subject(gw.ftp, Some("ftp")).contains("renewed"));

    // A key that is not the certificate's: refused, and the renewed certificate stays.
    let other = tls.path().join("other.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        other.to_str().unwrap(),
    ]);
    let renewed_key = std::fs::read(&key).unwrap();
    std::fs::copy(&other, &key).unwrap();
    hup(&gw);
    let rec = nth_config(&gw, 3);
    assert_eq!(rec["outcome"], "error", "{rec}");
    assert!(
        rec["detail"].as_str().unwrap().contains("does not belong"),
        "{rec}"
    );
    assert_eq!(trusting_new(), 200);
    assert!(served_subject(gw.ftp, Some("ftp")).contains("renewed"));
    // Fixed: the next reload goes through, nothing changed.
    std::fs::write(&key, renewed_key).unwrap();
    hup(&gw);
    let rec = nth_config(&gw, 4);
    assert_eq!(rec["outcome"], "ok", "{rec}");
    assert!(
        !rec["detail"].as_str().unwrap().contains("new TLS"),
        "{rec}"
    );
}
