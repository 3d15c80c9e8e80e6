//! Test harness: spawns the real `gatehouse` binary on free loopback ports with a config written
//! from a template, starts real peers (moto S3), runs real clients with timeouts, and reads the
//! audit log the gateway wrote.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// argon2id of "secret".
pub const SECRET_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$6f6OAf+JnmCEsToY93LyAw$xY4AkI92+AdnCHgvA5KBShAXkXqbAvabTd86IIufNiM";

/// The binary under test; `GATEHOUSE_BIN` runs the suite against another build (an older
/// commit's binary, to show that a new test fails before its fix).
pub fn bin() -> PathBuf {
    std::env::var_os("GATEHOUSE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_gatehouse")))
}

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where `scripts/install-peers.sh` put the peers.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("GATEHOUSE_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/gatehouse-peers")
        })
}

/// The peers' Python (paramiko, boto3, moto, requests...).
pub fn python() -> PathBuf {
    let p = peers_dir().join("venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-peers.sh (the README's test command does)",
        p.display()
    );
    p
}

/// Ports are handed out by one process-wide counter in 12000..32000: below Linux's ephemeral
/// range (32768+), so outgoing client sockets never take them, and never twice in one test run,
/// so concurrent tests cannot be given overlapping ports or passive ranges.
static NEXT_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
const PORT_LO: u32 = 12000;
const PORT_HI: u32 = 32000;

fn take_ports(n: u16) -> Option<u16> {
    use std::sync::atomic::Ordering;
    // Start at a pid-derived offset so two test binaries running at once rarely meet.
    let _ = NEXT_PORT.compare_exchange(
        0,
        PORT_LO + (std::process::id() * 997) % (PORT_HI - PORT_LO - 2000),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    let base = NEXT_PORT.fetch_add(u32::from(n), Ordering::SeqCst);
    let base = PORT_LO + (base - PORT_LO) % (PORT_HI - PORT_LO - u32::from(n));
    let base = u16::try_from(base).ok()?;
    let all_free = (base..base + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
    all_free.then_some(base)
}

/// A port nobody listens on right now, never handed out before in this run.
pub fn free_port() -> u16 {
    (0..2000)
        .find_map(|_| take_ports(1))
        .expect("no free port in 12000..32000")
}

/// A run of `n` consecutive free ports (for FTP passive mode).
pub fn free_port_range(n: u16) -> (u16, u16) {
    let base = (0..500)
        .find_map(|_| take_ports(n))
        .expect("no free port range in 12000..32000");
    (base, base + n - 1)
}

/// Waits until something accepts connections on the port.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Runs a command to completion with a deadline; kills it if the deadline passes.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    std::thread::scope(|s| {
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let o = s.spawn(move || read_all(stdout));
        let e = s.spawn(move || read_all(stderr));
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let st = child.wait().expect("wait");
                eprintln!("timed out after {timeout:?}: {cmd:?}");
                break st;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Output {
            status,
            stdout: o.join().unwrap_or_default(),
            stderr: e.join().unwrap_or_default(),
        }
    })
}

fn read_all<R: std::io::Read>(r: Option<R>) -> Vec<u8> {
    let mut v = Vec::new();
    if let Some(mut r) = r {
        let _ = r.read_to_end(&mut v);
    }
    v
}

/// Runs a command, feeding `stdin`, with a deadline.
pub fn run_stdin(cmd: &mut Command, stdin: &[u8], timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin);
    }
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// Text of an output, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A running gateway.
pub struct Gateway {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub http: u16,
    pub sftp: u16,
    pub ftp: u16,
    pub pasv: (u16, u16),
    pub config_path: PathBuf,
}

/// Placeholders a config template may use: `{dir}` (the gateway's working directory),
/// `{http}`, `{sftp}`, `{ftp}`, `{pasv_lo}`, `{pasv_hi}`, `{secret_hash}` (argon2 of
/// "secret"), `{fixtures}`, `{s3}` (moto endpoint; starts moto).
pub fn render(
    template: &str,
    dir: &Path,
    http: u16,
    sftp: u16,
    ftp: u16,
    pasv: (u16, u16),
) -> String {
    let mut s = template
        .replace("{dir}", &dir.display().to_string())
        .replace("{http}", &http.to_string())
        .replace("{sftp}", &sftp.to_string())
        .replace("{ftp}", &ftp.to_string())
        .replace("{pasv_lo}", &pasv.0.to_string())
        .replace("{pasv_hi}", &pasv.1.to_string())
        .replace("{secret_hash}", SECRET_HASH)
        .replace("{fixtures}", &root().join("fixtures").display().to_string());
    if s.contains("{s3}") {
        s = s.replace("{s3}", &moto().endpoint);
    }
    s
}

impl Gateway {
    /// Writes the config and starts `gatehouse serve`; waits until every configured port
    /// accepts connections.
    pub fn start(template: &str) -> Gateway {
        // Another process on the machine can take a port between our check and the gateway's
        // bind; that is the test's race, not the gateway's failure, so try fresh ports.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(template) {
                Ok(gw) => return gw,
                Err(log) if log.contains("in use") => last = log,
                Err(log) => panic!("gateway did not start; log:\n{log}"),
            }
        }
        panic!("gateway could not bind fresh ports three times; log:\n{last}");
    }

    fn try_start(template: &str) -> Result<Gateway, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (http, sftp, ftp) = (free_port(), free_port(), free_port());
        let pasv = if template.contains("{pasv_lo}") {
            free_port_range(16)
        } else {
            (0, 0)
        };
        let config = render(template, dir.path(), http, sftp, ftp, pasv);
        let config_path = dir.path().join("gatehouse.toml");
        std::fs::write(&config_path, &config).expect("write config");
        let log = std::fs::File::create(dir.path().join("gatehouse.log")).expect("log file");
        let child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&config_path)
            .current_dir(dir.path())
            .env("RUST_LOG", "info,gatehouse=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn gatehouse");
        let mut gw = Gateway {
            child: Some(child),
            dir,
            http,
            sftp,
            ftp,
            pasv,
            config_path,
        };
        let ports: Vec<u16> = [("{http}", http), ("{sftp}", sftp), ("{ftp}", ftp)]
            .into_iter()
            .filter(|(k, _)| template.contains(k))
            .map(|(_, p)| p)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        for p in ports {
            while Instant::now() < deadline && !wait_port(p, Duration::from_millis(100)) {
                let exited = gw.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                if exited.is_some() {
                    break;
                }
            }
            if !wait_port(p, Duration::from_millis(50)) {
                let log = gw.log();
                gw.kill();
                return Err(format!("did not listen on {p}\n{log}"));
            }
        }
        Ok(gw)
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gatehouse.log")).unwrap_or_default()
    }

    /// Base URL of the HTTP listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Peak resident memory so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Current resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// The audit directory (default layout: `<dir>/var/audit`).
    pub fn audit_dir(&self) -> PathBuf {
        self.dir.path().join("var/audit")
    }

    /// Every audit record written so far.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        audit_in(&self.audit_dir())
    }

    /// Waits (up to 20 s: CI machines under a full parallel run can be several times slower) for
    /// an audit record matching `pred`, returning it.
    pub fn wait_audit(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(r) = self.audit().into_iter().find(|r| pred(r)) {
                return Some(r);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("gateway did not stop within 40 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: no shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Starts the gateway again on the same directory, config and ports (after `stop` or
    /// `kill9`); waits until its ports accept connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill it first");
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("gatehouse.log"))
            .expect("log file");
        let child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info,gatehouse=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn gatehouse");
        self.child = Some(child);
        let config = std::fs::read_to_string(&self.config_path).unwrap_or_default();
        for p in [self.http, self.sftp, self.ftp] {
            if config.contains(&format!(":{p}\"")) {
                assert!(
                    wait_port(p, Duration::from_secs(30)),
                    "gateway did not come back on {p}:\n{}",
                    self.log()
                );
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A file under the gateway's working directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- gateway log\n{}", self.log());
        }
        self.kill();
    }
}

/// Files staged (uploads in progress or left behind) under a local root: everything below
/// `<root>/.gatehouse/staging/` except the per-process lock files.
pub fn staged_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.join(".gatehouse/staging")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_none_or(|x| x != "lock" && x != "claim") {
                out.push(p);
            }
        }
    }
    out
}

/// Every audit record in a log directory.
pub fn audit_in(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let file = std::fs::File::open(f).expect("open audit");
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                out.push(v);
            }
        }
    }
    out
}

/// A moto S3 server for the whole test run.
pub struct Moto {
    pub endpoint: String,
    _child: std::sync::Mutex<Child>,
}

/// Starts (once) moto's S3 server; it stops when the test process exits.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let port = free_port();
        let mut child = Command::new(python())
            .arg(root().join("tests/py/moto_server.py"))
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        assert!(
            wait_port(port, Duration::from_secs(30)),
            "moto did not start"
        );
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            _child: std::sync::Mutex::new(child),
        }
    })
}

/// Creates a bucket on moto (it does not check signatures, so a plain PUT does).
pub fn make_bucket(name: &str) {
    let m = moto();
    let out = run_with_timeout(
        Command::new("curl").args(["-sf", "-X", "PUT", &format!("{}/{name}", m.endpoint)]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "create bucket: {}", text(&out));
}

/// A bucket name unique to this test run.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid_like())
}

fn uuid_like() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", n, std::process::id())
}

/// Writes `size` bytes of pseudo-random data to `path`, streaming.
pub fn write_random(path: &Path, size: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ size;
    let mut buf = vec![0u8; 1 << 16];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    f.flush().expect("flush");
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}
