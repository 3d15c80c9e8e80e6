//! Upstream servers for the backend tests, on loopback: Azurite (Azure Blob Storage, from npm,
//! one for the whole run), `rclone serve webdav` and OpenSSH `sshd` with `internal-sftp` (one
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
        // A static is never dropped, so nothing would stop it at exit: a shell watches this
        // process and stops Azurite when it is gone (as tests/py/moto_server.py does for moto).
        let mut cmd = Command::new("bash");
        cmd.args([
            "-c",
            "p=$1; shift; \"$@\" & c=$!; while kill -0 \"$p\" 2>/dev/null && kill -0 \"$c\" 2>/dev/null; do sleep 0.5; done; kill -9 \"$c\" 2>/dev/null; wait",
            "azurite-watch",
            &std::process::id().to_string(),
        ])
        .arg(bin);
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
