//! After a file lands: `[[validate]]` checks before commit through every door (OpenSSH sftp,
//! paramiko, ftplib, curl over FTP and HTTP), and `[[events]]` webhooks delivered at least once
//! to a real receiver that verifies each signature with the Standard Webhooks reference
//! verifier (tests/py/webhook_receiver.py): healthy, failing with 500, down, and across a
//! `kill -9` of the gateway with 100 events queued.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Gateway, bin, free_port, python, root, run_with_timeout, text, wait_port};
use crate::http_files::curl;
use crate::sftp::{Store, config as base_config, inbox, key, sftp_batch};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["order_id", "lines"],
  "properties": {
    "order_id": {"type": "string"},
    "lines": {"type": "array", "items": {"type": "object", "required": ["sku", "qty"],
              "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}}}
  }
}
"#;

const GOOD_JSON: &str = r#"{"order_id": "A-1", "lines": [{"sku": "X", "qty": 2}]}"#;
const BAD_JSON: &str = r#"{"order_id": "A-2", "lines": [{"sku": "X", "qty": "two"}]}"#;
const GOOD_CSV: &str = "order_id,sku,qty\n1,X,2\n2,Y,3\n";
const BAD_CSV: &str = "order_id,sku,qty\n1,X,2\n2,Y\n";

/// The SFTP/FTP/HTTP config of the sftp tests, with validation rules and (optionally) a sink.
fn config(schema: &Path, sink: Option<(u16, u64)>) -> String {
    let mut c = base_config(Store::Disk);
    c.push_str(&format!(
        r#"
[[validate]]
path = "/partners/*/inbox/*.json"
json_schema = "{schema}"

[[validate]]
path = "/partners/*/inbox/*.csv"
csv = {{ header = ["order_id", "sku", "qty"], delimiter = ",", columns = "exact" }}

[[validate]]
path = "/partners/*/inbox/*.bin"
max_size_mib = 1
"#,
        schema = schema.display()
    ));
    if let Some((port, max_age)) = sink {
        c.push_str(&format!(
            r#"
[[events]]
name = "orders-intake"
on = ["upload"]
path = "/partners/*/inbox/**"
url = "http://127.0.0.1:{port}/hooks/gatehouse"
secret = "{SECRET}"
timeout_secs = 5
max_age_secs = {max_age}
"#
        ));
    }
    c
}

fn schema_file(dir: &Path) -> PathBuf {
    let p = dir.join("order.schema.json");
    std::fs::write(&p, SCHEMA).unwrap();
    p
}

fn py(args: &[&str]) -> serde_json::Value {
    let out = run_with_timeout(
        Command::new(python())
            .arg(root().join("tests/py/validate_upload.py"))
            .args(args),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("{}", text(&out)))
}

/// ftplib (through validate_upload.py) as acme.
fn ftp_put(gw: &Gateway, local: &Path, remote: &str) -> serde_json::Value {
    let port = gw.ftp.to_string();
    py(&[
        "ftp",
        &port,
        "acme",
        "secret",
        local.to_str().unwrap(),
        remote,
    ])
}

fn denied_upload(gw: &Gateway, path: &str) -> Option<serde_json::Value> {
    gw.wait_audit(|r| r["action"] == "upload" && r["outcome"] == "denied" && r["path"] == path)
}

fn landed(gw: &Gateway, rel: &str) -> bool {
    gw.path(&format!("data/partners/acme/inbox/{rel}")).exists()
}

#[test]
fn every_door_refuses_an_invalid_file_in_its_own_words_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(&schema_file(dir.path()), None));
    inbox(&gw, Store::Disk);
    let f = |name: &str, body: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let good_json = f("good.json", GOOD_JSON.as_bytes());
    let bad_json = f("bad.json", BAD_JSON.as_bytes());
    let good_csv = f("good.csv", GOOD_CSV.as_bytes());
    let bad_csv = f("bad.csv", BAD_CSV.as_bytes());
    let big = f("big.bin", &vec![7u8; 1024 * 1024 + 1]);
    let (port, ftp) = (gw.sftp.to_string(), gw.ftp.to_string());

    // OpenSSH sftp: the good files land, the bad ones fail the put and never appear.
    let k = key(dir.path(), "client_ed25519");
    let (ok, out) = sftp_batch(
        &gw,
        &k,
        &format!(
            "put {} inbox/o1.json\nput {} inbox/o1.csv\n",
            good_json.display(),
            good_csv.display()
        ),
        &[],
    );
    assert!(ok, "{out}");
    assert!(landed(&gw, "o1.json") && landed(&gw, "o1.csv"));
    let (ok, out) = sftp_batch(
        &gw,
        &k,
        &format!("put {} inbox/o2.json\n", bad_json.display()),
        &[],
    );
    assert!(!ok, "OpenSSH must report the refused upload: {out}");
    assert!(!landed(&gw, "o2.json"));
    let rec = denied_upload(&gw, "/partners/acme/inbox/o2.json").expect("audited");
    let detail = rec["detail"].as_str().unwrap();
    assert!(
        detail.contains("validation failed") && detail.contains("/lines/0/qty"),
        "{detail}"
    );
    assert!(
        !detail.contains("two"),
        "values of the file stay out of the audit log: {detail}"
    );

    // paramiko: `put` fails (its confirming stat finds nothing); the CLOSE status carries the
    // detail with the line.
    let r = py(&[
        "sftp",
        &port,
        "acme",
        "secret",
        bad_csv.to_str().unwrap(),
        "inbox/o3.csv",
    ]);
    assert_eq!(r["ok"], false, "{r}");
    let status = r["status"].as_str().unwrap_or("");
    assert!(status.contains("line 3: expected 3 fields, found 2"), "{r}");
    assert!(!landed(&gw, "o3.csv"));

    // ftplib: 553 with the detail for content, 552 for size.
    let r = ftp_put(&gw, &bad_json, "inbox/o4.json");
    let e = r["error"].as_str().unwrap_or("");
    assert!(e.starts_with("553 ") && e.contains("/lines/0/qty"), "{r}");
    let r = ftp_put(&gw, &big, "inbox/o5.bin");
    let e = r["error"].as_str().unwrap_or("");
    assert!(e.starts_with("552 ") && e.contains("1 MiB"), "{r}");
    let r = ftp_put(&gw, &good_json, "inbox/o6.json");
    assert_eq!(r["ok"], true, "{r}");
    assert!(!landed(&gw, "o4.json") && !landed(&gw, "o5.bin") && landed(&gw, "o6.json"));
    let rec = denied_upload(&gw, "/partners/acme/inbox/o5.bin").expect("audited");
    assert!(
        rec["detail"].as_str().unwrap().contains("larger than"),
        "{rec}"
    );

    // curl over FTP: the upload fails with the server's 553.
    let out = run_with_timeout(
        Command::new("curl")
            .args(["-sS", "-v", "--max-time", "30", "-T"])
            .arg(&bad_csv)
            .arg(format!("ftp://acme:secret@127.0.0.1:{ftp}/inbox/o7.csv")),
        Duration::from_secs(60),
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("< 553 "), "{}", text(&out));
    assert!(!landed(&gw, "o7.csv"));

    // HTTP: 422 validation_failed with the details; the good one is created.
    let url = |p: &str| gw.url(&format!("/v1/files/inbox/{p}"));
    let (code, body) = curl(&[
        "-u",
        "acme:secret",
        "-T",
        bad_json.to_str().unwrap(),
        &url("o8.json"),
    ]);
    assert_eq!(code, 422, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "validation_failed", "{body}");
    assert!(
        v["details"][0]
            .as_str()
            .unwrap()
            .starts_with("/lines/0/qty: "),
        "{body}"
    );
    let (code, body) = curl(&[
        "-u",
        "acme:secret",
        "-T",
        good_csv.to_str().unwrap(),
        &url("o9.csv"),
    ]);
    assert_eq!(code, 201, "{body}");
    assert!(!landed(&gw, "o8.json") && landed(&gw, "o9.csv"));

    // WinSCP's way: upload under a temporary name, then rename into place. The rename is
    // checked like an upload: refused for the bad file, which stays under its temporary name.
    let (ok, out) = sftp_batch(
        &gw,
        &k,
        &format!(
            "put {} inbox/o10.json.filepart\nrename inbox/o10.json.filepart inbox/o10.json\n",
            bad_json.display()
        ),
        &[],
    );
    assert!(!ok, "{out}");
    assert!(landed(&gw, "o10.json.filepart") && !landed(&gw, "o10.json"));
    let (ok, out) = sftp_batch(
        &gw,
        &k,
        &format!(
            "put {} inbox/o11.json.filepart\nrename inbox/o11.json.filepart inbox/o11.json\n",
            good_json.display()
        ),
        &[],
    );
    assert!(ok, "{out}");
    assert!(landed(&gw, "o11.json"));
    assert!(
        gw.audit().iter().any(|r| r["action"] == "rename"
            && r["outcome"] == "denied"
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("validation failed"))),
        "the refused rename is audited"
    );
    // Nothing refused is left staged.
    assert!(crate::harness::staged_files(&gw.path("data")).is_empty());
}

#[test]
fn check_names_a_broken_schema_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("order.schema.json");
    std::fs::write(&schema, "{\n  \"type\": \"object\",\n  \"properties\": {\n    \"qty\": {\"type\": \"integr\"}\n  }\n}\n").unwrap();
    let cfg = dir.path().join("g.toml");
    std::fs::write(
        &cfg,
        format!(
            "[backends.d]\nkind = \"memory\"\n\n[[mounts]]\npath = \"/\"\nbackend = \"d\"\n\n[[validate]]\npath = \"/in/*.json\"\njson_schema = \"{}\"\n\n[[validate]]\npath = \"in/*.csv\"\ncsv = {{ header = [\"a\"], delimiter = \";;\" }}\n",
            schema.display()
        ),
    )
    .unwrap();
    let out = run_with_timeout(
        Command::new(bin()).arg("check").arg("--config").arg(&cfg),
        Duration::from_secs(30),
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("line 10: validate[0].json_schema:") && t.contains("order.schema.json line 4"),
        "{t}"
    );
    assert!(t.contains("line 13: validate[1].path:"), "{t}");
    assert!(t.contains("validate[1].csv.delimiter"), "{t}");
}

/// A running receiver; killed on drop.
struct Receiver {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    mode: PathBuf,
}

impl Receiver {
    fn start(dir: &Path, port: u16) -> Receiver {
        let log = dir.join("deliveries.jsonl");
        let mode = dir.join("mode");
        let mut r = Receiver {
            child: None,
            port,
            log,
            mode,
        };
        r.restart();
        r
    }

    fn restart(&mut self) {
        let child = Command::new(python())
            .arg(root().join("tests/py/webhook_receiver.py"))
            .args([&self.port.to_string(), SECRET])
            .arg(&self.log)
            .arg(&self.mode)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        assert!(
            wait_port(self.port, Duration::from_secs(20)),
            "receiver did not start"
        );
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn answer(&self, status: u16) {
        std::fs::write(&self.mode, status.to_string()).unwrap();
    }

    fn rows(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Accepted (2xx) deliveries by event id.
    fn delivered(&self) -> BTreeMap<String, serde_json::Value> {
        self.rows()
            .into_iter()
            .filter(|r| {
                r["status"]
                    .as_u64()
                    .is_some_and(|s| (200..300).contains(&s))
            })
            .map(|r| (r["id"].as_str().unwrap_or("").to_string(), r))
            .collect()
    }

    /// Waits (bounded) until every id in `ids` was accepted.
    fn wait_for(
        &self,
        ids: &HashSet<String>,
        within: Duration,
    ) -> BTreeMap<String, serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.delivered();
            if ids.iter().all(|i| got.contains_key(i)) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The event id of an audit record, as the gateway builds it.
fn event_id(r: &serde_json::Value) -> String {
    let hash = r["hash"].as_str().unwrap();
    format!(
        "{}-{}-{}",
        r["node"].as_str().unwrap(),
        r["seq"],
        &hash[..16]
    )
}

fn uploads(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.audit()
        .into_iter()
        .filter(|r| r["action"] == "upload" && r["outcome"] == "ok")
        .collect()
}

fn http_put(gw: &Gateway, file: &Path, name: &str) {
    let (code, body) = curl(&[
        "-u",
        "acme:secret",
        "-T",
        file.to_str().unwrap(),
        &gw.url(&format!("/v1/files/inbox/{name}")),
    ]);
    assert_eq!(code, 201, "{body}");
}

#[test]
fn uploads_are_delivered_signed_at_least_once_through_outages_and_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut rx = Receiver::start(dir.path(), port);
    let mut gw = Gateway::start(&config(&schema_file(dir.path()), Some((port, 3600))));
    inbox(&gw, Store::Disk);
    let file = dir.path().join("o.csv");
    std::fs::write(&file, GOOD_CSV).unwrap();

    // Healthy: one upload per door, each delivered once, verified, with the record's facts.
    let k = key(dir.path(), "client_ed25519");
    let (ok, out) = sftp_batch(
        &gw,
        &k,
        &format!("put {} inbox/s.csv\n", file.display()),
        &[],
    );
    assert!(ok, "{out}");
    let r = ftp_put(&gw, &file, "inbox/f.csv");
    assert_eq!(r["ok"], true, "{r}");
    http_put(&gw, &file, "h.csv");
    let recs = uploads(&gw);
    assert_eq!(recs.len(), 3);
    let ids: HashSet<String> = recs.iter().map(event_id).collect();
    let got = rx.wait_for(&ids, Duration::from_secs(20));
    let mut latencies = Vec::new();
    for rec in &recs {
        let d = &got[&event_id(rec)];
        assert_eq!(d["verified"], true, "{d}");
        assert_eq!(d["type"], "dev.gatehouse.upload");
        assert_eq!(d["specversion"], "1.0");
        assert_eq!(d["content_type"], "application/cloudevents+json");
        assert_eq!(d["subject"], rec["path"]);
        assert_eq!(d["data"]["sha256"], rec["sha256"]);
        assert_eq!(d["data"]["size"], rec["bytes"]);
        assert_eq!(d["data"]["protocol"], rec["protocol"]);
        assert_eq!(d["data"]["audit_seq"], rec["seq"]);
        let t = time_of(rec["ts"].as_str().unwrap());
        latencies.push(d["received"].as_f64().unwrap() - t);
    }
    assert_eq!(
        rx.rows().len(),
        3,
        "each delivered exactly once while the receiver is healthy"
    );
    eprintln!("delivery latency after the audit record (s): {latencies:?}");
    let rec = gw
        .wait_audit(|r| r["action"] == "event" && r["outcome"] == "ok")
        .expect("deliveries are audited");
    assert!(
        rec["detail"].as_str().unwrap().contains("delivered"),
        "{rec}"
    );

    // The receiver answers 500 for a while: deliveries come after it recovers, none lost.
    rx.answer(500);
    for i in 0..5 {
        http_put(&gw, &file, &format!("e{i}.csv"));
    }
    let failing = Instant::now() + Duration::from_secs(20);
    while rx.rows().iter().filter(|r| r["status"] == 500).count() < 5 && Instant::now() < failing {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(rx.rows().iter().filter(|r| r["status"] == 500).count() >= 5);
    let recovered = Instant::now();
    rx.answer(204);
    let ids: HashSet<String> = uploads(&gw).iter().map(event_id).collect();
    let got = rx.wait_for(&ids, Duration::from_secs(30));
    assert!(
        ids.iter().all(|i| got.contains_key(i)),
        "every event arrives after recovery"
    );
    eprintln!(
        "500 outage: all delivered {:.1} s after the receiver recovered",
        recovered.elapsed().as_secs_f64()
    );

    // Down, then 100 uploads, then kill -9 of the gateway: none lost.
    rx.stop();
    for i in 0..100 {
        http_put(&gw, &file, &format!("k{i}.csv"));
    }
    gw.kill9();
    rx.restart();
    let restart = Instant::now();
    gw.restart();
    let ids: HashSet<String> = uploads(&gw).iter().map(event_id).collect();
    assert_eq!(ids.len(), 108);
    let got = rx.wait_for(&ids, Duration::from_secs(60));
    let missing: Vec<_> = ids.iter().filter(|i| !got.contains_key(*i)).collect();
    assert!(missing.is_empty(), "lost across kill -9: {missing:?}");
    eprintln!(
        "kill -9 with 100 queued: all delivered {:.1} s after the restart",
        restart.elapsed().as_secs_f64()
    );
    // Duplicates only ever repeat an id: every delivery is of a known event.
    assert!(
        rx.rows()
            .iter()
            .all(|r| r["verified"] == true && ids.contains(r["id"].as_str().unwrap()))
    );

    // Nothing left to deliver (the last deliveries' progress is saved within 200 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut listed = events_cli(&gw, &["list", "--json"]);
    while !listed.trim().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        listed = events_cli(&gw, &["list", "--json"]);
    }
    assert!(listed.trim().is_empty(), "{listed}");
}

fn time_of(ts: &str) -> f64 {
    let t =
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).unwrap();
    t.unix_timestamp_nanos() as f64 / 1e9
}

fn events_cli(gw: &Gateway, args: &[&str]) -> String {
    let out = run_with_timeout(
        Command::new(bin())
            .arg("events")
            .args(args)
            .arg("--config")
            .arg(&gw.config_path)
            .current_dir(gw.dir.path()),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn given_up_events_are_dead_letters_until_an_operator_retries_them() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rx = Receiver::start(dir.path(), port);
    rx.answer(500);
    let gw = Gateway::start(&config(&schema_file(dir.path()), Some((port, 2))));
    inbox(&gw, Store::Disk);
    let file = dir.path().join("o.csv");
    std::fs::write(&file, GOOD_CSV).unwrap();
    http_put(&gw, &file, "late.csv");
    let id = event_id(&uploads(&gw)[0]);
    let rec = gw
        .wait_audit(|r| r["action"] == "event" && r["outcome"] == "error")
        .expect("the give-up is audited");
    assert!(
        rec["detail"].as_str().unwrap().contains("given up after"),
        "{rec}"
    );
    let listed = events_cli(&gw, &["list"]);
    assert!(
        listed.contains("dead") && listed.contains(&id) && listed.contains("HTTP 500"),
        "{listed}"
    );

    rx.answer(204);
    let out = events_cli(&gw, &["retry"]);
    assert!(
        out.contains("orders-intake: 1 dead letters queued for delivery"),
        "{out}"
    );
    let got = rx.wait_for(&HashSet::from([id.clone()]), Duration::from_secs(20));
    assert!(got.contains_key(&id), "retried delivery arrives");
    let rec = gw
        .wait_audit(|r| {
            r["action"] == "event"
                && r["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("retried by an operator"))
        })
        .expect("the retried delivery is audited");
    assert_eq!(rec["outcome"], "ok");
    let deadline = Instant::now() + Duration::from_secs(10);
    while events_cli(&gw, &["list"]).contains("dead") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!events_cli(&gw, &["list"]).contains("dead"));
    let out = events_cli(&gw, &["purge"]);
    assert!(
        out.contains("orders-intake: 0 dead letters purged"),
        "{out}"
    );
}

#[test]
fn a_sink_added_later_gets_the_events_from_then_on_not_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let schema = schema_file(dir.path());
    let port = free_port();
    let rx = Receiver::start(dir.path(), port);
    let mut gw = Gateway::start(&config(&schema, None));
    inbox(&gw, Store::Disk);
    let file = dir.path().join("o.csv");
    std::fs::write(&file, GOOD_CSV).unwrap();
    http_put(&gw, &file, "before.csv");
    assert!(gw.stop().success());
    std::fs::write(
        &gw.config_path,
        crate::harness::render(
            &config(&schema, Some((port, 3600))),
            gw.dir.path(),
            gw.http,
            gw.sftp,
            gw.ftp,
            gw.pasv,
        ),
    )
    .unwrap();
    gw.restart();
    http_put(&gw, &file, "after.csv");
    let after = uploads(&gw)
        .into_iter()
        .find(|r| r["path"] == "/partners/acme/inbox/after.csv")
        .unwrap();
    let got = rx.wait_for(&HashSet::from([event_id(&after)]), Duration::from_secs(20));
    assert!(got.contains_key(&event_id(&after)));
    assert_eq!(
        rx.rows().len(),
        1,
        "the upload from before the sink existed is not sent"
    );
}
