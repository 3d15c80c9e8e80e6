//! Audit shipping across nodes: three gateway nodes ship their rotated audit files with signed
//! checkpoints to an S3 bucket (moto), every second; `gatehouse audit verify --remote` passes
//! for all three, then names each tampering done on the bucket with boto3: an edited shipped
//! file, a deleted one, a forged checkpoint, and a cut tail (the last checkpoint removed, seen
//! against the node's own state).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Gateway, bin, make_bucket, moto, python, run_with_timeout, text, unique};
use crate::http_files::curl;

const NODE: &str = r#"
[gateway]
state_dir = "{dir}/var"
shutdown_grace_secs = 5

[cluster]
node = "{node}"

[audit]
fsync = "batch"
ship = { backend = "lake", prefix = "audit/", interval_secs = 1, signing_key = "{key}" }

[http]
listen = "127.0.0.1:{http}"

[backends.disk]
kind = "local"
root = "{dir}/data"

[backends.lake]
kind = "s3"
bucket = "{bucket}"
endpoint = "{s3}"
region = "us-east-1"
access_key_id = "test"
secret_access_key = "test"

[[mounts]]
path = "/"
backend = "disk"

[[users]]
name = "acme"
password_hash = "{secret_hash}"
home = "/acme"
permissions = [ { path = "/", allow = ["list", "read", "write", "overwrite"] } ]

[[users]]
name = "ops"
password_hash = "{secret_hash}"
role = "operator"
"#;

/// A cookie jar file for curl in `dir`.
fn work_jar(dir: &tempfile::TempDir) -> String {
    dir.path().join("cookies").display().to_string()
}

fn ship_state(gw: &Gateway) -> serde_json::Value {
    std::fs::read(gw.dir.path().join("var/audit-ship.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn verify(config: &Path, extra: &[&str]) -> (bool, String) {
    let out = run_with_timeout(
        Command::new(bin())
            .args(["audit", "verify", "--remote", "lake", "--config"])
            .arg(config)
            .args(extra),
        Duration::from_secs(120),
    );
    (out.status.success(), text(&out))
}

/// boto3 against moto: `op` is `get KEY`, `put KEY FILE`, `delete KEY` or `list PREFIX`.
fn s3(bucket: &str, op: &[&str]) -> String {
    let script = r#"
import sys, boto3
endpoint, bucket, op = sys.argv[1], sys.argv[2], sys.argv[3]
c = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test")
if op == "get":
    sys.stdout.buffer.write(c.get_object(Bucket=bucket, Key=sys.argv[4])["Body"].read())
elif op == "put":
    c.put_object(Bucket=bucket, Key=sys.argv[4], Body=open(sys.argv[5], "rb").read())
elif op == "delete":
    c.delete_object(Bucket=bucket, Key=sys.argv[4])
elif op == "list":
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=sys.argv[4]):
        for o in page.get("Contents", []):
            print(o["Key"])
"#;
    let mut args = vec!["-c", script, &moto().endpoint, bucket];
    args.extend_from_slice(op);
    let out = run_with_timeout(Command::new(python()).args(&args), Duration::from_secs(60));
    assert!(out.status.success(), "s3 {op:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn three_nodes_ship_signed_chains_and_verify_remote_names_every_tampering() {
    let bucket = unique("ship");
    make_bucket(&bucket);
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("audit_signing_ed25519");
    let mut nodes: Vec<Gateway> = (1..=3)
        .map(|i| {
            Gateway::start(
                &NODE
                    .replace("{node}", &format!("gw-{i}"))
                    .replace("{bucket}", &bucket)
                    .replace("{key}", &key.display().to_string()),
            )
        })
        .collect();
    // Work on every node, over several shipping intervals: at least two checkpoints each.
    let body = keys.path().join("b.txt");
    std::fs::write(&body, "shipped\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut round = 0;
    while nodes
        .iter()
        .any(|n| ship_state(n)["checkpoint"].as_u64().unwrap_or(0) < 2)
    {
        assert!(
            Instant::now() < deadline,
            "nodes did not ship twice in 30 s"
        );
        for n in &nodes {
            let (code, out) = curl(&[
                "-u",
                "acme:secret",
                "-T",
                body.to_str().unwrap(),
                &n.url(&format!("/v1/files/r{round}.txt")),
            ]);
            assert!(code == 201 || code == 204, "{code} {out}");
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    for n in &mut nodes {
        n.stop();
    }
    // Node 1 loses its shipping state (a crash between checkpoint and state, a wiped state
    // directory): at the next start it takes the newest checkpoint over from the bucket and
    // goes on from there instead of colliding with what it already wrote.
    let before = ship_state(&nodes[0])["checkpoint"].as_u64().unwrap();
    std::fs::remove_file(nodes[0].dir.path().join("var/audit-ship.json")).unwrap();
    nodes[0].restart();
    let (code, out) = curl(&[
        "-u",
        "acme:secret",
        "-T",
        body.to_str().unwrap(),
        &nodes[0].url("/v1/files/after-restart.txt"),
    ]);
    assert!(code == 201 || code == 204, "{code} {out}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ship_state(&nodes[0])["checkpoint"].as_u64().unwrap_or(0) <= before {
        assert!(
            Instant::now() < deadline,
            "no shipment after the restart: {}",
            nodes[0].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        nodes[0].log().contains("taken over from the backend"),
        "{}",
        nodes[0].log()
    );
    nodes[0].stop();
    let cfg1 = nodes[0].config_path.clone();
    let (ok, out) = verify(&cfg1, &["--node", "gw-2"]);
    assert!(
        ok && out.contains("ok: node gw-2:") && !out.contains("gw-3"),
        "{out}"
    );
    let (ok, out) = verify(&cfg1, &[]);
    assert!(ok, "{out}");
    for node in ["gw-1", "gw-2", "gw-3"] {
        assert!(out.contains(&format!("ok: node {node}:")), "{out}");
    }
    assert!(
        out.contains("local unshipped tail") || out.contains("ok: node gw-1"),
        "{out}"
    );
    // The public key alone verifies too (an auditor without the private key).
    let pubkey = run_with_timeout(
        Command::new(bin())
            .args(["audit", "pubkey", "--config"])
            .arg(&cfg1),
        Duration::from_secs(30),
    );
    let pubkey = String::from_utf8_lossy(&pubkey.stdout).trim().to_string();
    assert!(pubkey.starts_with("ed25519:"), "{pubkey}");
    let (ok, out) = verify(&cfg1, &["--pubkey", &pubkey]);
    assert!(ok, "{out}");
    // A wrong key fails every node.
    let (ok, out) = verify(
        &cfg1,
        &[
            "--pubkey",
            "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        ],
    );
    assert!(!ok && out.contains("signature does not verify"), "{out}");

    // The shipped log reads like the local one: every node's uploads, with their node.
    let out = run_with_timeout(
        Command::new(bin())
            .args([
                "audit",
                "query",
                "--shipped",
                "lake",
                "--json",
                "--action",
                "upload",
                "--config",
            ])
            .arg(&cfg1),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out));
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for node in ["gw-1", "gw-2", "gw-3"] {
        assert!(
            records
                .iter()
                .any(|r| r["node"] == node && r["action"] == "upload"),
            "no shipped upload of {node}: {records:?}"
        );
    }

    // The console reads it too: node 3 shows gw-2's shipped uploads (gw-2 itself is down).
    nodes[2].restart();
    let jar = work_jar(&keys);
    let (code, _) = curl(&[
        "-c",
        &jar,
        "-d",
        "user=ops&password=secret",
        &nodes[2].url("/console/login"),
    ]);
    assert_eq!(code, 303);
    let (code, page) = curl(&[
        "-b",
        &jar,
        &nodes[2].url("/console/audit/shipped?node=gw-2&action=upload"),
    ]);
    assert_eq!(code, 200, "{page}");
    for node in ["gw-1", "gw-2", "gw-3"] {
        assert!(
            page.contains("class=\"node\"") && page.contains(&format!(">{node}</a>")),
            "{node} not listed: {page}"
        );
    }
    assert!(page.contains("<strong id=\"node\">gw-2</strong>"), "{page}");
    assert!(
        page.contains("/acme/r0.txt"),
        "gw-2's first upload not shown: {page}"
    );
    assert!(
        !page.contains("<span class=\"action\">login</span>"),
        "the filter was not applied: {page}"
    );
    let (_, local) = curl(&["-b", &jar, &nodes[2].url("/console/audit")]);
    assert!(local.contains("/console/audit/shipped"), "{local}");
    // A node the bucket does not list is not read (the name would become part of a key).
    let (code, page) = curl(&[
        "-b",
        &jar,
        &nodes[2].url("/console/audit/shipped?node=..%2F..%2Fetc"),
    ]);
    assert_eq!(code, 200);
    assert!(page.contains("no node ../../etc has shipped"), "{page}");
    // Not for anyone without an operator's console session.
    let (code, _) = curl(&[&nodes[2].url("/console/audit/shipped?node=gw-2")]);
    assert!(code == 303 || code == 401, "{code}");
    nodes[2].stop();

    let listing = s3(&bucket, &["list", "audit/"]);
    let objects: Vec<&str> = listing.lines().collect();
    let files_of = |node: &str| -> Vec<String> {
        objects
            .iter()
            .filter(|k| k.starts_with(&format!("audit/{node}/audit-")) && k.ends_with(".jsonl"))
            .map(|k| k.to_string())
            .collect()
    };
    let checkpoints_of = |node: &str| -> Vec<String> {
        let mut v: Vec<String> = objects
            .iter()
            .filter(|k| {
                k.starts_with(&format!("audit/{node}/checkpoints/")) && k.ends_with(".json")
            })
            .map(|k| k.to_string())
            .collect();
        v.sort();
        v
    };
    let work = tempfile::tempdir().unwrap();
    // Edit one byte of a record in gw-2's first shipped file.
    let f2 = files_of("gw-2")[0].clone();
    let mut bytes = s3(&bucket, &["get", &f2]).into_bytes();
    let at = bytes.iter().position(|b| *b == b'"').unwrap() + 1;
    bytes[at] = if bytes[at] == b's' { b'x' } else { b's' };
    let edited = work.path().join("edited");
    std::fs::write(&edited, &bytes).unwrap();
    s3(&bucket, &["put", &f2, edited.to_str().unwrap()]);
    // Delete gw-3's first shipped file.
    let f3 = files_of("gw-3")[0].clone();
    s3(&bucket, &["delete", &f3]);
    // Forge gw-1's first checkpoint: claim a different end of chain, keep the signature.
    let c1 = checkpoints_of("gw-1");
    let mut ck: serde_json::Value = serde_json::from_str(&s3(&bucket, &["get", &c1[0]])).unwrap();
    ck["body"]["last_hash"] = serde_json::Value::String("f".repeat(64));
    let forged = work.path().join("forged");
    std::fs::write(&forged, serde_json::to_vec(&ck).unwrap()).unwrap();
    s3(&bucket, &["put", &c1[0], forged.to_str().unwrap()]);
    // Cut gw-1's tail: its last checkpoint goes.
    let last = c1.last().unwrap().clone();
    s3(&bucket, &["delete", &last]);

    let (ok, out) = verify(&cfg1, &[]);
    eprintln!("audit verify --remote after tampering:\n{out}");
    assert!(!ok, "{out}");
    let name = |k: &str| k.rsplit('/').next().unwrap().to_string();
    assert!(
        out.contains(&name(&f2)) && out.contains("(edited)"),
        "edit not named: {out}"
    );
    assert!(
        out.contains(&name(&f3)) && out.contains("missing (deleted)"),
        "deletion not named: {out}"
    );
    assert!(
        out.contains("checkpoint 1: signature does not verify"),
        "forgery not named: {out}"
    );
    assert!(
        out.contains("the tail was cut"),
        "cut tail not named: {out}"
    );
    assert!(out.contains("FAILED: node gw-1"), "{out}");
    assert!(out.contains("FAILED: node gw-2"), "{out}");
    assert!(out.contains("FAILED: node gw-3"), "{out}");
    // Each node recorded its shipments in its own audit log.
    for n in &nodes {
        assert!(
            n.audit().iter().any(|r| r["action"] == "config"
                && r["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("audit shipped to lake:"))),
            "{}",
            n.log()
        );
    }
}
