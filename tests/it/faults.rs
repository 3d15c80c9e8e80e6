//! Faults survived with nothing lost (issue 11), with stock clients on every door: S3 failing
//! mid-upload (a fault proxy in front of moto), a full disk (a small tmpfs as a local root), an
//! audit log that cannot be written (its own tmpfs, full, then read-only), shutdown with uploads
//! in flight, and `kill -9` with a multipart upload and a staged local upload open.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    Gateway, free_port, make_bucket, moto, python, root, run_with_timeout, text, unique, wait_port,
};

/// The fault proxy (tests/py/fault_proxy.py) in front of moto; stopped on drop.
struct Proxy {
    port: u16,
    control: u16,
    child: Child,
}

impl Proxy {
    fn start() -> Proxy {
        let target: u16 = moto().endpoint.rsplit(':').next().unwrap().parse().unwrap();
        let (port, control) = (free_port(), free_port());
        let mut child = Command::new(python())
            .arg(root().join("tests/py/fault_proxy.py"))
            .args([port.to_string(), control.to_string(), target.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        assert!(wait_port(port, Duration::from_secs(20)));
        Proxy {
            port,
            control,
            child,
        }
    }

    fn mode(&self, m: &str) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.control)).unwrap();
        s.write_all(format!("{m}\n").as_bytes()).unwrap();
        let mut ok = String::new();
        BufReader::new(s).read_line(&mut ok).unwrap();
        assert_eq!(ok.trim(), "ok");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this process may mount filesystems (root with CAP_SYS_ADMIN: CI and this project's
/// machines). Without it the disk-full and failing-disk tests say so loudly and do not run: the
/// environment, not the gateway, cannot do them.
fn can_mount() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            let _ = Command::new("umount").arg(dir.path()).status();
        } else {
            eprintln!("SKIPPED: this process cannot mount filesystems (needs root, CAP_SYS_ADMIN)");
        }
        ok
    })
}

/// A tmpfs mounted for one test; unmounted on drop. The fault tests need root (they are run as
/// root in CI, and by `scripts/test.sh` on this project's machines).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = run_with_timeout(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path()),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "mount tmpfs: {}", text(&out));
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        lazy_umount(self.dir.path());
    }
}

/// Unmounts `dir` even while something still has it open (a test that failed midway).
fn lazy_umount(dir: &Path) {
    let _ = Command::new("umount").arg("-l").arg(dir).status();
}

/// A small ext4 filesystem on a loop device, which can be made to fail every write (the
/// `EXT4_IOC_SHUTDOWN` ioctl: what a dying disk looks like to the process); unmounted on drop.
struct Ext4 {
    _image: tempfile::TempDir,
    mnt: tempfile::TempDir,
}

impl Ext4 {
    fn new(size_mib: u64) -> Ext4 {
        let image = tempfile::tempdir().unwrap();
        let img = image.path().join("fs.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(size_mib << 20)
            .unwrap();
        let out = run_with_timeout(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0"])
                .arg(&img),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "mkfs.ext4: {}", text(&out));
        let mnt = tempfile::tempdir().unwrap();
        let out = run_with_timeout(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(mnt.path()),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "mount -o loop: {}", text(&out));
        Ext4 { _image: image, mnt }
    }

    fn path(&self) -> &Path {
        self.mnt.path()
    }

    /// Unmounts (the users must have closed their files) and mounts the image again: a failed
    /// filesystem readable again, its journal replayed.
    fn remount(&self) {
        let out = run_with_timeout(
            Command::new("umount").arg(self.mnt.path()),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "umount: {}", text(&out));
        let out = run_with_timeout(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(self._image.path().join("fs.img"))
                .arg(self.mnt.path()),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "mount again: {}", text(&out));
    }

    /// Every later write (and sync) on the filesystem fails with EIO.
    fn fail(&self) {
        let script = format!(
            "import fcntl,os\nfd=os.open('{}',os.O_RDONLY)\nfcntl.ioctl(fd,0x8004587D,(2).to_bytes(4,'little'))",
            self.path().display()
        );
        let out = run_with_timeout(
            Command::new(python()).args(["-c", &script]),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "EXT4_IOC_SHUTDOWN: {}", text(&out));
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        lazy_umount(self.mnt.path());
    }
}

/// An upload through one door (tests/py/door_upload.py) that pauses at `pause_at` bytes.
struct Upload {
    child: Child,
    stdin: ChildStdin,
    stdout: Option<BufReader<ChildStdout>>,
}

impl Upload {
    fn start(door: &str, port: u16, path: &str, size: u64, pause_at: Option<u64>) -> Upload {
        let mut cmd = Command::new(python());
        cmd.arg(root().join("tests/py/door_upload.py")).args([
            door,
            &port.to_string(),
            "acme",
            "secret",
            path,
            &size.to_string(),
        ]);
        if let Some(p) = pause_at {
            cmd.args(["--pause-at", &p.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = Some(BufReader::new(child.stdout.take().unwrap()));
        Upload {
            child,
            stdin,
            stdout,
        }
    }

    /// Waits for the client to reach its pause.
    fn paused(&mut self) {
        let mut line = String::new();
        self.stdout.as_mut().unwrap().read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "paused", "client said {line:?}");
    }

    fn resume(&mut self) {
        writeln!(self.stdin).unwrap();
    }

    /// The client's outcome (with a deadline).
    fn outcome(mut self, within: Duration) -> serde_json::Value {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut stdout = self.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(within).unwrap_or_default();
        let _ = self.child.kill();
        let _ = self.child.wait();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("no outcome in time: {line:?}"))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn s3_config(endpoint: &str, bucket: &str, extra: &str) -> String {
    crate::security::config(
        "login_failures = { max = 0, window_secs = 60, ban_secs = 60 }\nlogin_timeout_secs = 300",
    )
    .replace(
        "[[mounts]]\npath = \"/\"\nbackend = \"disk\"",
        &format!(
            "[backends.lake]\nkind = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\npart_size_mib = 5\n\n[[mounts]]\npath = \"/\"\nbackend = \"disk\"\n\n[[mounts]]\npath = \"/acme/lake\"\nbackend = \"lake\"\n{extra}"
        ),
    )
}

/// Uploads still open on moto for a bucket (asked of moto directly, not through the proxy).
fn open_multipart_uploads(bucket: &str) -> usize {
    let script = format!(
        "import boto3\nc=boto3.client('s3',endpoint_url='{}',aws_access_key_id='t',aws_secret_access_key='t',region_name='us-east-1')\nprint(len(c.list_multipart_uploads(Bucket='{bucket}').get('Uploads',[])))",
        moto().endpoint
    );
    let out = run_with_timeout(
        Command::new(python()).args(["-c", &script]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn object_exists(bucket: &str, key: &str) -> bool {
    let out = run_with_timeout(
        Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-I",
            &format!("{}/{bucket}/{key}", moto().endpoint),
        ]),
        Duration::from_secs(20),
    );
    String::from_utf8_lossy(&out.stdout).trim() == "200"
}

/// Waits for a condition that becomes true asynchronously (a sweep), bounded.
fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn door_port(gw: &Gateway, door: &str) -> u16 {
    match door {
        "sftp" => gw.sftp,
        "ftp" => gw.ftp,
        _ => gw.http,
    }
}

#[test]
fn s3_failing_mid_upload_leaves_nothing_on_any_door_and_the_gateway_recovers() {
    let proxy = Proxy::start();
    let bucket = unique("faults");
    make_bucket(&bucket);
    let gw = Gateway::start(&s3_config(
        &format!("http://127.0.0.1:{}", proxy.port),
        &bucket,
        "",
    ));
    std::fs::create_dir_all(gw.path("data/acme")).unwrap();
    // Each door meets a different fault: S3 answering 503, S3 stopped (connections cut and
    // refused), S3 hanging (connections accepted, never answered).
    for (door, fault) in [("sftp", "fail"), ("ftp", "down"), ("http", "stall")] {
        let key = format!("acme/lake/cut-{door}.bin");
        let mut up = Upload::start(
            door,
            door_port(&gw, door),
            &format!("/lake/cut-{door}.bin"),
            12 << 20,
            Some(7 << 20),
        );
        up.paused();
        // The fault comes mid-transfer: after the multipart upload exists. (A fault during
        // CreateMultipartUpload itself can lose its answer, and with it the only copy of the
        // upload id: S3 has made an upload nobody knows of. Only S3's lifecycle rule
        // AbortIncompleteMultipartUpload reaches those; README says to set one.)
        eventually(
            Duration::from_secs(30),
            "the multipart upload to start",
            || open_multipart_uploads(&bucket) == 1,
        );
        proxy.mode(fault);
        up.resume();
        let out = up.outcome(Duration::from_secs(120));
        eprintln!("{door} ({fault}): {out}");
        assert_eq!(out["ok"], false, "{door} ({fault}): {out}");
        assert!(
            out["seconds"].as_f64().unwrap() < 60.0,
            "{door} ({fault}): the client waited too long for its error: {out}"
        );
        proxy.mode("pass");
        // Nothing partial, and the multipart upload is aborted once S3 answers again.
        assert!(!object_exists(&bucket, &key), "{door}: a partial object");
        eventually(Duration::from_secs(40), "the multipart abort", || {
            open_multipart_uploads(&bucket) == 0
        });
        // The same door works again.
        let again = Upload::start(
            door,
            door_port(&gw, door),
            &format!("/lake/ok-{door}.bin"),
            6 << 20,
            None,
        )
        .outcome(Duration::from_secs(120));
        assert_eq!(again["ok"], true, "{door} after recovery: {again}");
    }
    // Brief trouble is retried away: two 503s, then an upload that succeeds.
    proxy.mode("fail 2");
    let out = Upload::start("http", gw.http, "/lake/retried.bin", 100_000, None)
        .outcome(Duration::from_secs(60));
    assert_eq!(out["ok"], true, "{out}");
    let rec = gw
        .wait_audit(|r| r["action"] == "upload" && r["path"] == "/acme/lake/cut-ftp.bin")
        .unwrap();
    assert_eq!(rec["outcome"], "error", "{rec}");
}

fn disk_config(small: &Path) -> String {
    crate::security::config("login_failures = { max = 0, window_secs = 60, ban_secs = 60 }")
        .replace(
            "[[mounts]]\npath = \"/\"\nbackend = \"disk\"",
            &format!(
                "[backends.small]\nkind = \"local\"\nroot = \"{}\"\n\n[[mounts]]\npath = \"/\"\nbackend = \"disk\"\n\n[[mounts]]\npath = \"/acme/small\"\nbackend = \"small\"",
                small.display()
            ),
        )
        .replace(
            "permissions = [ { path = \"/\", allow = [\"list\", \"read\"] } ]\n\n[[users]]\nname = \"carol\"",
            "permissions = [ { path = \"/\", allow = [\"list\", \"read\", \"write\"] } ]\n\n[[users]]\nname = \"carol\"",
        )
}

#[test]
fn a_full_disk_gives_each_door_its_error_and_leaves_nothing() {
    if !can_mount() {
        return;
    }
    let small = Tmpfs::new("6m");
    let gw = Gateway::start(&disk_config(small.path()));
    std::fs::create_dir_all(gw.path("data/acme")).unwrap();
    std::fs::create_dir_all(gw.path("data/bob")).unwrap();
    let expect = [("sftp", "space"), ("ftp", "452"), ("http", "507")];
    for (door, said) in expect {
        let out = Upload::start(
            door,
            door_port(&gw, door),
            &format!("/small/big-{door}.bin"),
            12 << 20,
            None,
        )
        .outcome(Duration::from_secs(120));
        assert_eq!(out["ok"], false, "{door}: {out}");
        let err = out["error"].as_str().unwrap().to_lowercase();
        assert!(err.contains(said), "{door}: {err}");
        // Nothing partial at the path, nothing left in staging: the disk is free again.
        assert!(!small.path().join(format!("big-{door}.bin")).exists());
        let staged = crate::harness::staged_files(small.path());
        assert!(staged.is_empty(), "{door}: staging kept {staged:?}");
    }
    // Other storage, and other users, are unaffected; so is this one, once there is room.
    let out = Upload::start("http", gw.http, "/elsewhere.bin", 1 << 20, None)
        .outcome(Duration::from_secs(60));
    assert_eq!(out["ok"], true, "{out}");
    let out = Upload::start("sftp", gw.sftp, "/small/fits.bin", 1 << 20, None)
        .outcome(Duration::from_secs(60));
    assert_eq!(out["ok"], true, "{out}");
    let rec = gw
        .wait_audit(|r| r["action"] == "upload" && r["path"] == "/acme/small/big-http.bin")
        .unwrap();
    assert_eq!(rec["outcome"], "error");
}

/// The HTTP status of a curl request (the body is not needed).
fn curl_code(args: &[&str]) -> u16 {
    crate::http_files::curl(args).0
}

/// Download records so far.
fn downloads(dir: &Path) -> usize {
    crate::harness::audit_in(dir)
        .iter()
        .filter(|r| r["action"] == "download" && r["outcome"] == "ok")
        .count()
}

fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    filler
}

#[test]
fn with_the_audit_log_full_or_failing_nothing_happens_unrecorded() {
    if !can_mount() {
        return;
    }
    let audit = Ext4::new(16);
    let cfg = crate::security::config("").replace(
        "[audit]\nfsync = \"batch\"",
        &format!(
            "[audit]\nfsync = \"always\"\ndir = \"{}\"\nreserve_bytes = 65536",
            audit.path().display()
        ),
    );
    let gw = Gateway::start(&cfg);
    std::fs::create_dir_all(gw.path("data/acme")).unwrap();
    std::fs::write(gw.path("data/acme/keep.txt"), "keep").unwrap();
    let url = |p: &str| gw.url(&format!("/v1/files/{p}"));
    assert_eq!(curl_code(&["-u", "acme:secret", &url("keep.txt")]), 200);
    let filler = fill(audit.path());
    // The disk is full: the space preallocated ahead of the log still takes records, so
    // downloads go on until it runs low, each one recorded; then they are refused (503).
    let before = downloads(audit.path());
    let mut served = 0;
    loop {
        match curl_code(&["-u", "acme:secret", &url("keep.txt")]) {
            200 => served += 1,
            503 => break,
            other => panic!("download answered {other}"),
        }
        assert!(served < 2000, "the audit log never ran out of space");
    }
    // (A download records when its last byte is sent, so its record may land just after.)
    eventually(
        Duration::from_secs(10),
        "a record of every download",
        || downloads(audit.path()) - before == served,
    );
    // Uploads, deletes and renames are refused before they take effect.
    let f = gw.path("up.txt");
    std::fs::write(&f, "new").unwrap();
    assert_eq!(
        curl_code(&[
            "-u",
            "acme:secret",
            "-T",
            f.to_str().unwrap(),
            &url("new.txt")
        ]),
        503
    );
    assert_eq!(
        curl_code(&["-u", "acme:secret", "-X", "DELETE", &url("keep.txt")]),
        503
    );
    assert_eq!(
        curl_code(&[
            "-u",
            "acme:secret",
            "-X",
            "POST",
            &url("keep.txt?op=rename&to=/moved.txt")
        ]),
        503
    );
    let out =
        Upload::start("sftp", gw.sftp, "/sftp.txt", 1000, None).outcome(Duration::from_secs(60));
    assert_eq!(out["ok"], false, "{out}");
    assert!(gw.path("data/acme/keep.txt").exists());
    assert!(!gw.path("data/acme/new.txt").exists() && !gw.path("data/acme/sftp.txt").exists());
    // Room again: everything works again (an upload first: it waits for the writer's top-up).
    std::fs::remove_file(filler).unwrap();
    // (ext4 reuses freed blocks once its journal commits.)
    let _ = Command::new("sync").arg("-f").arg(audit.path()).status();
    assert_eq!(
        curl_code(&[
            "-u",
            "acme:secret",
            "-T",
            f.to_str().unwrap(),
            &url("new.txt")
        ]),
        201
    );
    let served = downloads(audit.path());
    assert_eq!(curl_code(&["-u", "acme:secret", &url("keep.txt")]), 200);
    eventually(Duration::from_secs(10), "the download's record", || {
        downloads(audit.path()) == served + 1
    });
    // The disk fails (every write an I/O error): refused as well, and nothing changes.
    let before = crate::harness::audit_in(audit.path()).len();
    audit.fail();
    assert_eq!(
        curl_code(&["-u", "acme:secret", "-X", "DELETE", &url("new.txt")]),
        503
    );
    assert!(gw.path("data/acme/new.txt").exists(), "deleted unrecorded");
    assert_eq!(curl_code(&["-u", "acme:secret", &url("keep.txt")]), 503);
    let f2 = gw.path("up2.txt");
    std::fs::write(&f2, "newer").unwrap();
    assert_eq!(
        curl_code(&[
            "-u",
            "acme:secret",
            "-T",
            f2.to_str().unwrap(),
            &url("new.txt")
        ]),
        503
    );
    assert_eq!(
        std::fs::read_to_string(gw.path("data/acme/new.txt")).unwrap(),
        "new"
    );
    let out = Upload::start("ftp", gw.ftp, "/ftp.txt", 1000, None).outcome(Duration::from_secs(60));
    assert_eq!(out["ok"], false, "{out}");
    assert!(!gw.path("data/acme/ftp.txt").exists());
    // What was written before the failure is intact and chained, and nothing after it.
    let mut gw = gw;
    let _ = gw.stop();
    audit.remount();
    let after = crate::harness::audit_in(audit.path());
    assert_eq!(
        after.len(),
        before,
        "written after the failure: {:?}",
        &after[before.min(after.len())..]
    );
    let out = run_with_timeout(
        Command::new(crate::harness::bin())
            .args(["audit", "verify", "--dir"])
            .arg(audit.path()),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn shutdown_records_every_interrupted_upload_and_logout() {
    let cfg =
        crate::security::config("").replace("shutdown_grace_secs = 5", "shutdown_grace_secs = 2");
    let mut gw = Gateway::start(&cfg);
    std::fs::create_dir_all(gw.path("data/acme")).unwrap();
    let mut ups: Vec<Upload> = ["sftp", "ftp", "http"]
        .iter()
        .map(|d| {
            let mut u = Upload::start(
                d,
                door_port(&gw, d),
                &format!("/held-{d}.bin"),
                8 << 20,
                Some(1 << 20),
            );
            u.paused();
            u
        })
        .collect();
    let started = Instant::now();
    assert!(gw.stop().success());
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(ups.drain(..));
    let recs = gw.audit();
    for d in ["sftp", "ftp", "http"] {
        let path = format!("/acme/held-{d}.bin");
        let r = recs
            .iter()
            .find(|r| r["action"] == "upload" && r["path"] == path)
            .unwrap_or_else(|| panic!("no record of the interrupted {d} upload"));
        assert_eq!(r["outcome"], "error", "{r}");
        assert!(r["detail"].as_str().unwrap().contains("interrupted"), "{r}");
        assert!(!gw.path(&format!("data/acme/held-{d}.bin")).exists());
    }
    for d in ["sftp", "ftp"] {
        assert!(
            recs.iter()
                .any(|r| r["action"] == "logout" && r["protocol"] == d),
            "no {d} logout recorded"
        );
    }
    let out = run_with_timeout(
        Command::new(crate::harness::bin())
            .args(["audit", "verify", "--dir"])
            .arg(gw.audit_dir()),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn kill_9_leaves_no_multipart_upload_or_staged_file_after_the_restart() {
    let bucket = unique("kill9");
    make_bucket(&bucket);
    let mut gw = Gateway::start(&s3_config(&moto().endpoint, &bucket, ""));
    std::fs::create_dir_all(gw.path("data/acme")).unwrap();
    let mut to_s3 = Upload::start("http", gw.http, "/lake/crash.bin", 12 << 20, Some(7 << 20));
    to_s3.paused();
    let mut to_disk = Upload::start("sftp", gw.sftp, "/crash.bin", 8 << 20, Some(2 << 20));
    to_disk.paused();
    eventually(
        Duration::from_secs(30),
        "the multipart upload to start",
        || open_multipart_uploads(&bucket) == 1,
    );
    assert_eq!(crate::harness::staged_files(&gw.path("data")).len(), 1);
    gw.kill9();
    drop(to_s3);
    drop(to_disk);
    gw.restart();
    // The start-up sweep ran before the listeners opened.
    assert_eq!(open_multipart_uploads(&bucket), 0);
    assert_eq!(crate::harness::staged_files(&gw.path("data")).len(), 0);
    assert!(!object_exists(&bucket, "acme/lake/crash.bin"));
    assert!(gw.stop().success());
    let out = run_with_timeout(
        Command::new(crate::harness::bin())
            .args(["audit", "verify", "--dir"])
            .arg(gw.audit_dir()),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "the chain continues across the crash: {}",
        text(&out)
    );
}

#[test]
fn two_gateways_on_one_root_keep_each_others_uploads() {
    // Blue/green on one host, or nodes on a shared filesystem: each process stages in its own
    // directory and sweeps only the directories of processes that are gone.
    let a = Gateway::start(&crate::security::config(""));
    std::fs::create_dir_all(a.path("data/acme")).unwrap();
    let mut up = Upload::start("sftp", a.sftp, "/shared.bin", 4 << 20, Some(1 << 20));
    up.paused();
    let b_cfg = crate::security::config("").replace(
        "root = \"{dir}/data\"",
        &format!("root = \"{}\"", a.path("data").display()),
    );
    let b = Gateway::start(&b_cfg);
    assert_eq!(crate::harness::staged_files(&a.path("data")).len(), 1);
    up.resume();
    let out = up.outcome(Duration::from_secs(60));
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(
        std::fs::metadata(a.path("data/acme/shared.bin"))
            .unwrap()
            .len(),
        4 << 20
    );
    // The other gateway serves the same file.
    assert_eq!(
        curl_code(&["-u", "acme:secret", &b.url("/v1/files/shared.bin")]),
        200
    );
}
