//! End to end over the upstream backends: partners upload over SFTP (OpenSSH), FTP (ftplib) and
//! HTTP (curl) into an Azure container (Azurite), a GCS bucket (fake-gcs-server), a WebDAV share (rclone serve webdav) and an
//! upstream OpenSSH server; each file arrives intact on the upstream, read back there (the Azure
//! SDK, the share's or server's directory), with the sha256 the audit log recorded; an upload cut
//! off part-way leaves nothing there; an upstream SFTP server with the wrong host key, or going
//! away mid-upload, gets a clear error and the gateway recovers when it returns.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::emulators::{
    AZURE_ACCOUNT, AZURE_KEY, OwnGcs, Sshd, WebDav, azure, azurite, fake_gcs, gcs_bucket,
    gcs_credentials, gcs_sha256,
};
use crate::harness::{
    Gateway, python, root, run_with_timeout, sha256_file, text, unique, write_random,
};
use crate::http_files::curl;
use crate::sftp::{key, sftp_batch};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cloud {
    Azure,
    Gcs,
    WebDav,
    Sftp,
}

/// The upstream servers a test starts for itself.
#[derive(Default)]
struct Upstreams {
    share: Option<WebDav>,
    sshd: Option<Sshd>,
    key: Option<std::path::PathBuf>,
    gcs_credentials: Option<std::path::PathBuf>,
    /// A GCS emulator of the test's own (else the shared one).
    gcs: Option<OwnGcs>,
}

impl Upstreams {
    fn gcs_endpoint(&self) -> String {
        match &self.gcs {
            Some(g) => g.endpoint.clone(),
            None => fake_gcs().endpoint.clone(),
        }
    }
}

/// The sftp tests' layout (acme, home /partners/acme, full rights in /inbox) on a cloud store.
fn config(cloud: Cloud, name: &str, up: &Upstreams) -> String {
    let backend = match cloud {
        Cloud::WebDav => format!(
            "kind = \"webdav\"\nurl = \"{}\"\nuser = \"gw\"\npassword = \"secret\"",
            up.share
                .as_ref()
                .map(|s| s.url.as_str())
                .unwrap_or_default()
        ),
        Cloud::Sftp => {
            let sshd = up.sshd.as_ref().unwrap();
            format!(
                "kind = \"sftp\"\naddress = \"127.0.0.1:{}\"\nuser = \"{}\"\nprivate_key = \"{}\"\nhost_key = \"{}\"\nroot = \"{}\"\nmax_sessions = 4",
                sshd.port,
                sshd.user,
                up.key.as_ref().unwrap().display(),
                sshd.host_key,
                sshd.root().display()
            )
        }
        Cloud::Gcs => {
            gcs_bucket(&up.gcs_endpoint(), name);
            format!(
                "kind = \"gcs\"\nbucket = \"{name}\"\nservice_account_file = \"{}\"\nendpoint = \"{}\"\npart_size_mib = 5",
                up.gcs_credentials.as_ref().unwrap().display(),
                up.gcs_endpoint()
            )
        }
        Cloud::Azure => {
            azure(&["create", name]);
            format!(
                "kind = \"azure\"\naccount = \"{AZURE_ACCOUNT}\"\ncontainer = \"{name}\"\naccess_key = \"{AZURE_KEY}\"\nendpoint = \"{}\"\npart_size_mib = 5",
                azurite().endpoint
            )
        }
    };
    let mut c = crate::sftp::config(crate::sftp::Store::Disk);
    let start = c.find("[backends.store]").unwrap();
    let end = c[start..].find("\n\n").unwrap() + start;
    c.replace_range(start..end, &format!("[backends.store]\n{backend}"));
    c
}

/// sha256 of an object as the provider serves it (None: no such object).
fn upstream_sha256(cloud: Cloud, name: &str, key: &str, up: &Upstreams) -> Option<String> {
    match cloud {
        Cloud::WebDav => {
            let p = up.share.as_ref()?.dir.path().join(key);
            p.is_file().then(|| sha256_file(&p))
        }
        Cloud::Sftp => {
            let p = up.sshd.as_ref()?.root().join(key);
            p.is_file().then(|| sha256_file(&p))
        }
        Cloud::Gcs => gcs_sha256(&up.gcs_endpoint(), name, key),
        Cloud::Azure => {
            let listed = azure(&["list", name]);
            listed
                .lines()
                .any(|l| l == key)
                .then(|| azure(&["sha256", name, key]))
        }
    }
}

/// A stock-client upload through one door (tests/py/door_upload.py) of `size` bytes, paused
/// at `pause_at`: the client, with its output, once it has said "paused".
fn paused_upload(
    door: &str,
    port: u16,
    path: &str,
    size: u64,
    pause_at: u64,
) -> (Child, BufReader<ChildStdout>) {
    let mut client = Command::new(python())
        .arg(root().join("tests/py/door_upload.py"))
        .args([door, &port.to_string(), "acme", "secret", path])
        .args([&size.to_string(), "--pause-at", &pause_at.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "paused");
    (client, out)
}

fn every_door_lands_intact(cloud: Cloud) {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("partners");
    let mut up = Upstreams::default();
    match cloud {
        Cloud::WebDav => up.share = Some(WebDav::start()),
        Cloud::Sftp => {
            up.sshd = Some(Sshd::start());
            up.key = Some(key(dir.path(), "client_ed25519"));
        }
        Cloud::Gcs => up.gcs_credentials = Some(gcs_credentials(dir.path())),
        Cloud::Azure => {}
    }
    let gw = Gateway::start(&config(cloud, &name, &up));
    let small = dir.path().join("small.csv");
    std::fs::write(&small, b"order_id,sku,qty\n1,X,2\n").unwrap();
    let big = dir.path().join("big.bin");
    write_random(&big, 13 * 1024 * 1024 + 5);

    let k = key(dir.path(), "client_ed25519");
    let (ok, out) = sftp_batch(
        &gw,
        &k,
        &format!(
            "mkdir inbox\nput {} inbox/s.bin\nput {} inbox/s.csv\n",
            big.display(),
            small.display()
        ),
        &[],
    );
    assert!(ok, "{out}");
    let out = run_with_timeout(
        Command::new(python())
            .arg(root().join("tests/py/validate_upload.py"))
            .args(["ftp", &gw.ftp.to_string(), "acme", "secret"])
            .arg(&big)
            .arg("inbox/f.bin"),
        Duration::from_secs(120),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"ok\": true"),
        "{}",
        text(&out)
    );
    let (code, body) = curl(&[
        "-u",
        "acme:secret",
        "-T",
        big.to_str().unwrap(),
        &gw.url("/v1/files/inbox/h.bin"),
    ]);
    assert_eq!(code, 201, "{body}");

    let audit = gw.audit();
    for (file, local) in [
        ("s.bin", &big),
        ("s.csv", &small),
        ("f.bin", &big),
        ("h.bin", &big),
    ] {
        let path = format!("/partners/acme/inbox/{file}");
        let rec = audit
            .iter()
            .find(|r| r["action"] == "upload" && r["outcome"] == "ok" && r["path"] == path)
            .unwrap_or_else(|| panic!("no upload record for {path}"));
        let want = sha256_file(local);
        assert_eq!(rec["sha256"], want, "{path}");
        let key = format!("partners/acme/inbox/{file}");
        assert_eq!(
            upstream_sha256(cloud, &name, &key, &up).as_deref(),
            Some(want.as_str()),
            "{cloud:?} {key}"
        );
    }
    // Downloads come back intact, with listings of the uploads.
    let back = dir.path().join("back.bin");
    let (ok, out) = sftp_batch(
        &gw,
        &k,
        &format!("ls -l inbox\nget inbox/h.bin {}\n", back.display()),
        &[],
    );
    assert!(ok, "{out}");
    assert!(out.contains("s.csv") && out.contains("f.bin"), "{out}");
    assert_eq!(sha256_file(&back), sha256_file(&big));

    // An upload cut off part-way (past the first 5 MiB part) leaves nothing on the upstream.
    let (mut client, _out) = paused_upload("sftp", gw.sftp, "inbox/cut.bin", 20 << 20, 7 << 20);
    client.kill().unwrap();
    let _ = client.wait();
    let rec = gw
        .wait_audit(|r| {
            r["action"] == "upload"
                && r["outcome"] == "error"
                && r["path"] == "/partners/acme/inbox/cut.bin"
        })
        .expect("the interrupted upload is recorded");
    assert!(
        rec["detail"].as_str().unwrap().starts_with("interrupted"),
        "{rec}"
    );
    assert!(upstream_sha256(cloud, &name, "partners/acme/inbox/cut.bin", &up).is_none());

    if matches!(cloud, Cloud::Sftp | Cloud::WebDav) {
        // Resume (OpenSSH `reput`): the first 5 MiB are on the upstream, the rest follows.
        let part = dir.path().join("part.bin");
        std::fs::write(&part, &std::fs::read(&big).unwrap()[..5 << 20]).unwrap();
        let (ok, out) = sftp_batch(
            &gw,
            &k,
            &format!(
                "put {} inbox/r.bin\nreput {} inbox/r.bin\n",
                part.display(),
                big.display()
            ),
            &[],
        );
        assert!(ok, "{out}");
        let want = sha256_file(&big);
        assert_eq!(
            upstream_sha256(cloud, &name, "partners/acme/inbox/r.bin", &up).as_deref(),
            Some(want.as_str()),
            "the resumed file on the upstream"
        );
        let rec = gw
            .audit()
            .into_iter()
            .rfind(|r| r["action"] == "upload" && r["path"] == "/partners/acme/inbox/r.bin")
            .unwrap();
        assert_eq!(rec["outcome"], "ok", "{rec}");
        assert_eq!(rec["sha256"], want, "{rec}");
        // Only the rest came from the client: the prefix was kept from the upstream.
        let total = std::fs::metadata(&big).unwrap().len();
        assert_eq!(rec["bytes"], total - (5 << 20), "{rec}");

        // FTP resume (ftplib `REST` then `STOR`) onto the same backend: the rest appends.
        let script = "import ftplib, io, sys\n\
            port, src = int(sys.argv[1]), open(sys.argv[2], 'rb').read()\n\
            ftp = ftplib.FTP(); ftp.connect('127.0.0.1', port, timeout=60); ftp.login('acme', 'secret')\n\
            ftp.storbinary('STOR inbox/fr.bin', io.BytesIO(src[:5 << 20]))\n\
            ftp.storbinary('STOR inbox/fr.bin', io.BytesIO(src[5 << 20:]), rest=5 << 20)\n\
            print(ftp.size('inbox/fr.bin')); ftp.quit()\n";
        let out = run_with_timeout(
            Command::new(python())
                .args(["-c", script, &gw.ftp.to_string()])
                .arg(&big),
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "ftplib REST+STOR: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            total.to_string()
        );
        assert_eq!(
            upstream_sha256(cloud, &name, "partners/acme/inbox/fr.bin", &up).as_deref(),
            Some(want.as_str()),
            "the file resumed over FTP, on the upstream"
        );
    }
    if matches!(cloud, Cloud::Sftp) {
        // Read-write opens and random writes (paramiko, as sshfs and WinSCP do them): edits in
        // place read back their own writes, a file written out of order has its hole, and the
        // record's sha256 is the final content's, as on local disk.
        let sha = crate::sftp_conformance::in_place_edits_recorded(&gw);
        assert_eq!(
            upstream_sha256(cloud, &name, "partners/acme/inbox/rand.bin", &up).as_deref(),
            Some(sha.as_str())
        );
    }
}

#[test]
fn azure_takes_uploads_through_every_door() {
    every_door_lands_intact(Cloud::Azure);
}

#[test]
fn gcs_takes_uploads_through_every_door() {
    every_door_lands_intact(Cloud::Gcs);
}

#[test]
fn an_upstream_sftp_server_takes_uploads_through_every_door() {
    every_door_lands_intact(Cloud::Sftp);
}

#[test]
fn webdav_takes_uploads_through_every_door() {
    every_door_lands_intact(Cloud::WebDav);
}

#[test]
fn an_upstream_sftp_server_that_fails_or_is_not_the_pinned_one_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstreams {
        sshd: Some(Sshd::start()),
        key: Some(key(dir.path(), "client_ed25519")),
        ..Default::default()
    };
    let file = dir.path().join("f.bin");
    write_random(&file, 1024 * 1024);

    // A server whose key is not the pinned one: refused, and the audit log says why.
    let real = up.sshd.as_ref().unwrap().host_key.clone();
    let wrong = std::fs::read_to_string(root().join("fixtures/ssh/other_ed25519.pub")).unwrap();
    let cfg = config(Cloud::Sftp, "x", &up).replace(&real, wrong.trim());
    let gw = Gateway::start(&cfg);
    let (code, body) = curl(&[
        "-u",
        "acme:secret",
        "-T",
        file.to_str().unwrap(),
        &gw.url("/v1/files/inbox/x.bin"),
    ]);
    assert!(code >= 500, "{code} {body}");
    let rec = gw
        .wait_audit(|r| {
            r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("host key mismatch"))
        })
        .expect("the refusal is audited with its reason");
    assert_eq!(rec["outcome"], "error", "{rec}");
    drop(gw);

    drop(up);
    // The right server going away mid-upload.
    a_store_going_away_mid_upload_is_survived(Cloud::Sftp);
}

/// The store or server going away mid-upload (HTTP, a stock-client upload paused at 4 MiB of 20): the client is
/// told, nothing lands at the final name, and the gateway works again once the store is back.
fn a_store_going_away_mid_upload_is_survived(cloud: Cloud) {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("down");
    let mut up = Upstreams::default();
    match cloud {
        Cloud::WebDav => up.share = Some(WebDav::start()),
        Cloud::Gcs => {
            up.gcs = Some(OwnGcs::start());
            up.gcs_credentials = Some(gcs_credentials(dir.path()));
        }
        Cloud::Sftp => {
            up.sshd = Some(Sshd::start());
            up.key = Some(key(dir.path(), "client_ed25519"));
        }
        Cloud::Azure => panic!("Azurite is shared by the run: not stopped here"),
    }
    let gw = Gateway::start(&config(cloud, &name, &up));
    let (code, body) = curl(&[
        "-u",
        "acme:secret",
        "-X",
        "POST",
        &gw.url("/v1/files/inbox?op=mkdir"),
    ]);
    assert_eq!(code, 201, "{body}");
    let (mut client, mut out) = paused_upload("http", gw.http, "inbox/cut.bin", 20 << 20, 4 << 20);
    match cloud {
        Cloud::WebDav => up.share.as_mut().unwrap().stop(),
        Cloud::Sftp => up.sshd.as_mut().unwrap().stop(),
        _ => up.gcs.as_mut().unwrap().stop(),
    }
    use std::io::Write;
    writeln!(client.stdin.as_mut().unwrap()).unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let _ = client.wait();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_default();
    assert_eq!(v["ok"], false, "the client is told: {line}");
    let rec = gw
        .wait_audit(|r| {
            r["action"] == "upload"
                && r["outcome"] == "error"
                && r["path"] == "/partners/acme/inbox/cut.bin"
        })
        .expect("the failed upload is recorded");
    assert!(
        rec["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{rec}"
    );
    match cloud {
        Cloud::WebDav => up.share.as_mut().unwrap().restart(),
        Cloud::Sftp => up.sshd.as_mut().unwrap().restart(),
        _ => up.gcs.as_mut().unwrap().restart(),
    }
    assert!(upstream_sha256(cloud, &name, "partners/acme/inbox/cut.bin", &up).is_none());
    let file = dir.path().join("f.bin");
    write_random(&file, 6 * 1024 * 1024 + 3);
    let (code, body) = curl(&[
        "-u",
        "acme:secret",
        "-T",
        file.to_str().unwrap(),
        &gw.url("/v1/files/inbox/after.bin"),
    ]);
    assert_eq!(code, 201, "recovered: {body}");
    assert_eq!(
        upstream_sha256(cloud, &name, "partners/acme/inbox/after.bin", &up),
        Some(sha256_file(&file))
    );
}

#[test]
fn gcs_going_away_mid_upload_is_survived() {
    a_store_going_away_mid_upload_is_survived(Cloud::Gcs);
}

#[test]
fn webdav_going_away_mid_upload_is_survived() {
    a_store_going_away_mid_upload_is_survived(Cloud::WebDav);
}
