//! Rights that must not widen through the filesystem (issue 10): a directory rename never
//! carries files out from under a stricter rule (source side) or into one (target side), over
//! HTTP, SFTP and FTP, on disk and S3; a user with only `write` never replaces a file a peer
//! created during the upload (no-replace commit), over all three doors.

use std::process::Command;
use std::time::Duration;

use crate::harness::{Gateway, make_bucket, python, root, run_with_timeout, text, unique};
use crate::sftp::Store;

fn config(store: Store) -> String {
    let backend = match store {
        Store::Disk => "kind = \"local\"\nroot = \"{dir}/data\"".to_string(),
        Store::S3 => {
            let bucket = unique("secfs");
            make_bucket(&bucket);
            format!(
                "kind = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{{s3}}\"\nregion = \"us-east-1\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\npart_size_mib = 5"
            )
        }
    };
    format!(
        r#"
[gateway]
state_dir = "{{dir}}/var"
shutdown_grace_secs = 5

[audit]
fsync = "batch"

[sftp]
listen = "127.0.0.1:{{sftp}}"

[ftp]
listen = "127.0.0.1:{{ftp}}"
passive_ports = [{{pasv_lo}}, {{pasv_hi}}]
passive_host = "127.0.0.1"

[http]
listen = "127.0.0.1:{{http}}"

[backends.store]
{backend}

[[mounts]]
path = "/"
backend = "store"

# Everything, except that legal papers are read-only and /drop/sealed takes no new files.
[[users]]
name = "lee"
password_hash = "{{secret_hash}}"
home = "/lee"
permissions = [ {{ path = "/", allow = ["list", "read", "write", "overwrite", "delete", "mkdir", "rename"] }},
                {{ path = "/projects/legal", allow = ["list", "read"] }},
                {{ path = "/drop/sealed", allow = ["list", "read"] }} ]

# A shared inbox: writer may add files, never replace them; peer may do both.
[[users]]
name = "writer"
password_hash = "{{secret_hash}}"
home = "/shared"
permissions = [ {{ path = "/", allow = ["list", "read"] }},
                {{ path = "/inbox", allow = ["list", "read", "write"] }} ]

[[users]]
name = "peer"
password_hash = "{{secret_hash}}"
home = "/shared"
permissions = [ {{ path = "/", allow = ["list", "read", "write", "overwrite", "mkdir"] }} ]
"#
    )
}

fn curl(args: &[&str]) -> (u16, String) {
    let out = run_with_timeout(
        Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "--max-time", "60"])
            .args(args),
        Duration::from_secs(70),
    );
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn put(gw: &Gateway, user: &str, path: &str, data: &str) -> u16 {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, data).unwrap();
    curl(&[
        "-u",
        &format!("{user}:secret"),
        "-T",
        f.to_str().unwrap(),
        &gw.url(&format!("/v1/files{path}")),
    ])
    .0
}

fn get(gw: &Gateway, user: &str, path: &str) -> (u16, String) {
    curl(&[
        "-u",
        &format!("{user}:secret"),
        &gw.url(&format!("/v1/files{path}")),
    ])
}

fn mkdir(gw: &Gateway, user: &str, path: &str) {
    let (code, body) = curl(&[
        "-u",
        &format!("{user}:secret"),
        "-X",
        "POST",
        &gw.url(&format!("/v1/files{path}?op=mkdir")),
    ]);
    assert!(code == 201 || code == 200 || code == 204, "{code} {body}");
}

/// The same directory-rename attempts through all three doors.
fn renames_across_stricter_rules_are_refused(store: Store) {
    let gw = Gateway::start(&config(store));
    for d in ["/projects", "/stage", "/stage/sealed"] {
        mkdir(&gw, "lee", d);
    }
    // lee cannot write under /projects/legal: the file is put there by the storage's owner.
    match store {
        Store::Disk => {
            std::fs::create_dir_all(gw.path("data/lee/projects/legal")).unwrap();
            std::fs::write(gw.path("data/lee/projects/legal/contract.pdf"), "signed").unwrap();
        }
        Store::S3 => {
            let cfg = std::fs::read_to_string(&gw.config_path).unwrap();
            let bucket = cfg
                .lines()
                .find_map(|l| l.strip_prefix("bucket = \""))
                .unwrap()
                .trim_end_matches('"')
                .to_string();
            crate::sftp::seed_key(&bucket, "lee/projects/legal/contract.pdf", b"signed");
        }
    }
    assert_eq!(put(&gw, "lee", "/stage/sealed/new.txt", "planted"), 201);

    // HTTP: source side, then target side.
    let (code, body) = curl(&[
        "-u",
        "lee:secret",
        "-X",
        "POST",
        &gw.url("/v1/files/projects?op=rename&to=/p2"),
    ]);
    assert_eq!(code, 403, "{body}");
    let (code, body) = curl(&[
        "-u",
        "lee:secret",
        "-X",
        "POST",
        &gw.url("/v1/files/stage?op=rename&to=/drop"),
    ]);
    assert_eq!(code, 403, "{body}");

    // SFTP (paramiko) and FTP (ftplib) get their own refusals for the same moves.
    let out = run_with_timeout(
        Command::new(python())
            .arg(root().join("tests/py/rename_escape.py"))
            .args([&gw.sftp.to_string(), &gw.ftp.to_string()]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out));

    // Nothing moved: the legal file is where it was and cannot be deleted anywhere.
    assert_eq!(get(&gw, "lee", "/projects/legal/contract.pdf").0, 200);
    assert_eq!(get(&gw, "lee", "/p2/legal/contract.pdf").0, 404);
    let (code, _) = curl(&[
        "-u",
        "lee:secret",
        "-X",
        "DELETE",
        &gw.url("/v1/files/projects/legal/contract.pdf"),
    ]);
    assert_eq!(code, 403);
    assert_eq!(get(&gw, "lee", "/drop/sealed/new.txt").0, 404);
    // A plain directory with no stricter rule inside still renames.
    mkdir(&gw, "lee", "/plain");
    let (code, body) = curl(&[
        "-u",
        "lee:secret",
        "-X",
        "POST",
        &gw.url("/v1/files/plain?op=rename&to=/plain2"),
    ]);
    assert!(code == 200 || code == 204, "{code} {body}");
    let rec = gw
        .wait_audit(|r| r["action"] == "rename" && r["outcome"] == "denied")
        .unwrap();
    assert_eq!(rec["user"], "lee");
}

#[test]
fn directory_renames_keep_stricter_rules_on_disk() {
    renames_across_stricter_rules_are_refused(Store::Disk);
}

#[test]
fn directory_renames_keep_stricter_rules_on_s3() {
    renames_across_stricter_rules_are_refused(Store::S3);
}

fn no_replace(store: Store) {
    let gw = Gateway::start(&config(store));
    mkdir(&gw, "peer", "/inbox");
    let out = run_with_timeout(
        Command::new(python())
            .arg(root().join("tests/py/shared_inbox_race.py"))
            .args([
                &gw.http.to_string(),
                &gw.sftp.to_string(),
                &gw.ftp.to_string(),
            ]),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", text(&out));
    for door in ["http", "sftp", "ftp"] {
        let (code, body) = get(&gw, "peer", &format!("/inbox/{door}.csv"));
        assert_eq!(code, 200);
        assert_eq!(
            body,
            format!("peer's {door} file"),
            "{door}: replaced by writer"
        );
        let rec = gw
            .wait_audit(|r| {
                r["action"] == "upload"
                    && r["user"] == "writer"
                    && r["path"] == format!("/shared/inbox/{door}.csv")
            })
            .unwrap();
        assert_eq!(rec["outcome"], "error", "{rec}");
        assert!(
            rec["detail"].as_str().unwrap().contains("already exists"),
            "{rec}"
        );
    }
}

#[test]
fn a_write_only_user_never_replaces_a_peers_file_on_disk() {
    no_replace(Store::Disk);
}

#[test]
fn a_write_only_user_never_replaces_a_peers_file_on_s3() {
    no_replace(Store::S3);
}

/// An empty home is not the user's to remove (it went, and every later operation of the user
/// failed until an operator recreated it): FTP `RMD /` 550, SFTP `rmdir /` permission denied,
/// HTTP `DELETE /v1/files/` 403, each recorded as denied; the home is still there.
#[test]
fn nobody_removes_their_own_home() {
    let gw = Gateway::start(&config(Store::Disk));
    std::fs::create_dir_all(gw.path("data/lee")).unwrap();
    let script = r#"
import ftplib, sys, paramiko
ftp_port, sftp_port = int(sys.argv[1]), int(sys.argv[2])
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", ftp_port, timeout=20)
ftp.login("lee", "secret")
for target in ["/", ".", "/.."]:
    try:
        ftp.rmd(target)
        sys.exit("RMD %s was allowed" % target)
    except ftplib.error_perm as e:
        assert str(e).startswith("550"), e
ftp.mkd("/kept")
ftp.quit()
t = paramiko.Transport(("127.0.0.1", sftp_port))
t.connect(username="lee", password="secret")
sftp = paramiko.SFTPClient.from_transport(t)
for target in ["/", "."]:
    try:
        sftp.rmdir(target)
        sys.exit("SFTP rmdir %s was allowed" % target)
    except PermissionError:
        pass
t.close()
print("ok")
"#;
    let out = run_with_timeout(
        Command::new(python())
            .arg("-c")
            .arg(script)
            .arg(gw.ftp.to_string())
            .arg(gw.sftp.to_string()),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_dir(gw.path("data/lee/kept")).unwrap();
    let (code, body) =
        crate::http_files::curl(&["-u", "lee:secret", "-X", "DELETE", &gw.url("/v1/files/")]);
    assert_eq!(code, 403, "{body}");
    assert!(gw.path("data/lee").is_dir());
    let denied = gw
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "rmdir" && r["outcome"] == "denied" && r["path"] == "/lee")
        .count();
    assert!(denied >= 6, "{denied} denied rmdir records");
}
