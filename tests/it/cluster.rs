//! The multi-node mode on real engines: three gateway nodes sharing one Debian `redis-server`,
//! behind Debian HAProxy (PROXY protocol to every node), driven by Python clients from their own
//! loopback addresses. A rate limit holds over the three nodes as one; a ban earned on one node
//! over SFTP holds on the others over FTP and HTTP; an account locked by failures spread over
//! the nodes stays locked everywhere; with Redis hung (SIGSTOP), slowed (DEBUG SLEEP) or gone,
//! each `on_store_error` mode does what it says within bounded latency, and the nodes return to
//! shared limits when it comes back. Every node's audit shows the real client behind the balancer, and a node killed
//! mid-run loses nothing acknowledged.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Gateway, free_port, python, root, run_with_timeout, text, wait_port};
use crate::proxy::Upstream;
use crate::proxy_protocol::{Haproxy, haproxy_with, paramiko_as};

/// A `redis-server` of the test's own (no persistence), stopped by PID on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_on(free_port())
    }

    fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            // DEBUG SLEEP slows it in the failure-mode test (Redis 7 refuses DEBUG by default).
            .args(["--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/install-peers.sh installs it)");
        assert!(
            wait_port(port, Duration::from_secs(10)),
            "redis did not start"
        );
        Redis { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (what a crash leaves: nothing listening).
    fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts an empty server on the same port after [`Redis::crash`] (no persistence: every
    /// key is gone).
    fn start_empty(&mut self) {
        let fresh = Redis::start_on(self.port);
        let old = std::mem::replace(self, fresh);
        // Already reaped: its Drop must not signal a pid that may be reused.
        std::mem::forget(old);
    }

    /// `redis-cli ARGS...` against this server.
    fn cli(&self, args: &[&str]) -> String {
        let out = run_with_timeout(
            Command::new("redis-cli")
                .args(["-p", &self.port.to_string()])
                .args(args),
            Duration::from_secs(10),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn signal(&self, sig: &str) -> bool {
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // A stopped server cannot die until it is continued.
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node's config: `{redis}`, `{node}`, `{mode}`, `{data}` (a directory every node shares,
/// as they would share a bucket) and `{upstream}` are filled in before the harness's own.
const NODE: &str = r#"
[gateway]
state_dir = "{dir}/var"
shutdown_grace_secs = 5

[cluster]
node = "{node}"
redis = "{redis}"
on_store_error = "{mode}"
timeout_ms = 25

[audit]
fsync = "batch"

[limits]
login_failures = { max = 3, window_secs = 300, ban_secs = 900, account_max = 3 }
max_sessions_per_user = {sessions}
max_connections_per_ip = {per_ip}
refused_login_records_per_sec = 1000

[sftp]
listen = "127.0.0.1:{sftp}"
host_keys = ["{data}/host_ed25519"]
proxy_protocol = ["127.0.0.1/32"]

[ftp]
listen = "{ftp_addr}"
passive_ports = [{pasv_lo}, {pasv_hi}]
passive_host = "127.0.0.1"
proxy_protocol = ["127.0.0.1/32"]

[ftp.tls]
cert = "{fixtures}/tls/cert.pem"
key = "{fixtures}/tls/key.pem"

[http]
listen = "127.0.0.1:{http}"
trusted_proxies = ["127.0.0.1/32"]

[backends.shared]
kind = "local"
root = "{data}/files"

[[mounts]]
path = "/"
backend = "shared"

[[users]]
name = "acme"
password_hash = "{secret_hash}"
home = "/acme"
permissions = [ { path = "/", allow = ["list", "read", "write", "overwrite", "delete", "mkdir", "rename"] } ]

[[users]]
name = "bob"
password_hash = "{secret_hash}"
home = "/bob"
permissions = [ { path = "/", allow = ["list", "read"] } ]

[[users]]
name = "ops"
password_hash = "{secret_hash}"
role = "operator"

[[routes]]
name = "public"
path_prefix = "/public"
upstreams = ["{upstream}"]
strip_prefix = true
auth = ["none"]
rate_limit = { per_second = {rate}, burst = {burst} }
"#;

struct Cluster {
    nodes: Vec<Gateway>,
    /// Each node's FTP listener: on 127.0.0.11, .12, .13 (its passive ports too, so the
    /// balancer on 127.0.0.1 can forward the same port numbers to it).
    ftp: Vec<(String, u16)>,
    _data: tempfile::TempDir,
    _upstream: Upstream,
    redis: Redis,
}

fn cluster(modes: [&str; 3], rate: u32, burst: u32) -> Cluster {
    cluster_with(modes, rate, burst, 0)
}

/// [`cluster`] with `max_sessions_per_user = sessions` (0: no cap).
fn cluster_with(modes: [&str; 3], rate: u32, burst: u32, sessions: usize) -> Cluster {
    cluster_capped(modes, rate, burst, sessions, 64)
}

/// [`cluster_with`] and `max_connections_per_ip = per_ip`.
fn cluster_capped(
    modes: [&str; 3],
    rate: u32,
    burst: u32,
    sessions: usize,
    per_ip: usize,
) -> Cluster {
    let redis = Redis::start();
    let upstream = Upstream::start("u");
    let data = tempfile::tempdir().unwrap();
    let ftp: Vec<(String, u16)> = (0..3)
        .map(|i| (format!("127.0.0.{}", 11 + i), free_port()))
        .collect();
    let nodes = modes
        .iter()
        .enumerate()
        .map(|(i, mode)| {
            Gateway::start(
                &NODE
                    .replace("{ftp_addr}", &format!("{}:{}", ftp[i].0, ftp[i].1))
                    .replace("{redis}", &redis.url())
                    .replace("{node}", &format!("gw-{}", i + 1))
                    .replace("{mode}", mode)
                    .replace("{data}", &data.path().display().to_string())
                    .replace("{upstream}", &upstream.url())
                    .replace("{rate}", &rate.to_string())
                    .replace("{burst}", &burst.to_string())
                    .replace("{sessions}", &sessions.to_string())
                    .replace("{per_ip}", &per_ip.to_string()),
            )
        })
        .collect();
    for (ip, port) in &ftp {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect((ip.as_str(), *port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "ftp did not listen on {ip}:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Cluster {
        nodes,
        ftp,
        _data: data,
        _upstream: upstream,
        redis,
    }
}

/// HAProxy round robin over the nodes' SFTP (PROXY v2), HTTP (PROXY v1) and FTP control
/// (PROXY v2) listeners, with health checks so a killed node is taken out; and each node's
/// passive port range forwarded to that node (PROXY v2), as docs/cluster.md describes.
/// Returns it with its SFTP, HTTP and FTP ports.
fn balancer(c: &Cluster, dir: &std::path::Path) -> (Haproxy, u16, u16, u16) {
    let (sftp_in, http_in, ftp_in) = (free_port(), free_port(), free_port());
    let mut ftp = format!(
        "frontend ftp_in\n  bind 127.0.0.1:{ftp_in}\n  default_backend ftp_gw\n\
         backend ftp_gw\n  balance roundrobin\n  option redispatch\n  retries 3\n"
    );
    for (i, (ip, port)) in c.ftp.iter().enumerate() {
        ftp.push_str(&format!(
            "  server gw{i} {ip}:{port} send-proxy-v2 check-send-proxy check inter 300ms fall 1 rise 2\n"
        ));
    }
    for (i, n) in c.nodes.iter().enumerate() {
        let (lo, hi) = n.pasv;
        ftp.push_str(&format!(
            "frontend pasv{i}\n  bind 127.0.0.1:{lo}-{hi}\n  default_backend pasv{i}\n\
             backend pasv{i}\n  server p{i} {} send-proxy-v2\n",
            c.ftp[i].0
        ));
    }
    let servers = |proto: &str, send: &str| -> String {
        c.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let port = if proto == "sftp" { n.sftp } else { n.http };
                format!("  server gw{i} 127.0.0.1:{port} {send} check inter 300ms fall 1 rise 2\n")
            })
            .collect()
    };
    let lb = haproxy_with(
        dir,
        &format!(
            "frontend sftp_in\n  bind 127.0.0.1:{sftp_in}\n  default_backend sftp_gw\n\
             backend sftp_gw\n  balance roundrobin\n  option redispatch\n  retries 3\n{}\
             frontend http_in\n  bind 127.0.0.1:{http_in}\n  default_backend http_gw\n\
             backend http_gw\n  balance roundrobin\n  option redispatch\n  retries 3\n{}{ftp}",
            servers("sftp", "send-proxy-v2 check-send-proxy"),
            servers("http", "send-proxy check-send-proxy"),
        ),
        &[sftp_in, http_in, ftp_in],
    );
    (lb, sftp_in, http_in, ftp_in)
}

/// curl from `from`: the status code and how long the request took.
fn curl_from(from: &str, url: &str, user: Option<&str>) -> (u16, Duration) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "20",
    ])
    .args(["--interface", from, "-H", "Cache-Control: no-cache"]);
    if let Some(u) = user {
        cmd.args(["-u", u]);
    }
    let t = Instant::now();
    let out = run_with_timeout(cmd.arg(url), Duration::from_secs(30));
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (code, t.elapsed())
}

/// Stock ftplib FTPS (AUTH TLS, PROT P, passive) from `from` through the balancer: uploads
/// `name`, reads it back; "ok" or the error.
fn ftps_round_trip(from: &str, port: u16, name: &str) -> String {
    let script = r#"
import ftplib, io, sys
src, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    f = ftplib.FTP_TLS(timeout=20, source_address=(src, 0))
    f.connect("127.0.0.1", port)
    f.auth()
    f.login("acme", "secret")
    f.prot_p()
    f.storbinary("STOR " + name, io.BytesIO(b"ftps behind the balancer\n"))
    got = io.BytesIO()
    f.retrbinary("RETR " + name, got.write)
    assert got.getvalue() == b"ftps behind the balancer\n", got.getvalue()
    f.quit()
    print("ok")
except Exception as e:
    print("failed:", type(e).__name__, e)
"#;
    let out = run_with_timeout(
        Command::new(python()).args(["-c", script, from, &port.to_string(), name]),
        Duration::from_secs(60),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// ftplib login from `from` to a node's FTP listener: "ok" or the server's refusal.
fn ftp_login(from: &str, to: &(String, u16), user: &str, password: &str) -> String {
    let (host, port) = to;
    let script = r#"
import ftplib, sys
src, host, port, user, pw = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
f = ftplib.FTP(timeout=20, source_address=(src, 0))
try:
    f.connect(host, port)
    f.login(user, pw)
    print("ok")
    f.quit()
except ftplib.all_errors as e:
    print("refused:", e)
"#;
    let out = run_with_timeout(
        Command::new(python()).args(["-c", script, from, host, &port.to_string(), user, password]),
        Duration::from_secs(40),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn readyz(n: &Gateway) -> (u16, serde_json::Value) {
    let out = run_with_timeout(
        Command::new("curl").args(["-s", "-w", "\n%{http_code}", &n.url("/readyz")]),
        Duration::from_secs(20),
    );
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or_default(),
    )
}

/// Polls each node's `/readyz` until its shared store reads `want` (bounded).
fn wait_store(c: &Cluster, want: &str) {
    for n in &c.nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, body) = readyz(n);
            if body["cluster"]["store"] == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "store never read {want}: {body}\n{}",
                n.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_rate_limit_over_three_nodes_admits_burst_plus_rate_times_time() {
    let (rate, burst, secs) = (25u32, 10u32, 4.0f64);
    let c = cluster(["local", "local", "local"], rate, burst);
    let work = tempfile::tempdir().unwrap();
    let (_lb, _, http_in, _) = balancer(&c, work.path());
    let out = run_with_timeout(
        Command::new(python()).args([
            root().join("tests/py/cluster_rate.py").to_str().unwrap(),
            "127.0.0.31",
            &http_in.to_string(),
            "/public/x",
            &secs.to_string(),
        ]),
        Duration::from_secs(60),
    );
    let res: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())
        .unwrap_or_else(|e| panic!("one JSON line: {e}\n{}", text(&out)));
    let codes = res["codes"].as_object().unwrap();
    let admitted = codes.get("200").and_then(|v| v.as_u64()).unwrap_or(0) as f64;
    let refused = codes.get("429").and_then(|v| v.as_u64()).unwrap_or(0);
    assert_eq!(
        codes.len(),
        2,
        "only 200 and 429 are expected through the balancer: {res}"
    );
    let elapsed = res["elapsed"].as_f64().unwrap();
    let expected = f64::from(burst) + f64::from(rate) * elapsed;
    let ratio = admitted / expected;
    eprintln!(
        "cluster rate limit: {admitted} admitted, {refused} refused over 3 nodes in {elapsed:.2} s; \
         expected B + R*t = {expected:.1}; ratio {ratio:.3}"
    );
    assert!(
        (0.95..=1.05).contains(&ratio),
        "admitted {admitted}, expected {expected:.1} (ratio {ratio:.3}): {res}"
    );
    // The balancer spread the requests: every node admitted some, and saw the real client.
    for n in &c.nodes {
        let rec = n
            .wait_audit(|r| r["action"] == "proxy" && r["status"] == 200)
            .unwrap_or_else(|| panic!("a node admitted nothing\n{}", n.log()));
        assert!(
            rec["remote"].as_str().unwrap().starts_with("127.0.0.31:"),
            "{rec}"
        );
    }
}

#[test]
fn a_ban_or_lock_earned_on_one_node_holds_on_every_node_and_door() {
    let c = cluster(["local", "local", "local"], 100, 100);
    let [n1, _, n3] = [&c.nodes[0], &c.nodes[1], &c.nodes[2]];
    // Three wrong SFTP passwords on node 1 ban 127.0.0.21 (max = 3); an unknown user, so no
    // account is locked on the way.
    for _ in 0..3 {
        let said = paramiko_as("127.0.0.21", n1.sftp, "x.txt", "intruder", "wrong");
        assert!(said.starts_with("refused"), "{said}");
    }
    n1.wait_audit(|r| {
        r["detail"]
            .as_str()
            .is_some_and(|d| d.contains("ban started"))
    })
    .expect("the ban is recorded where it was earned");
    // Node 2 over FTP and node 3 over HTTP refuse the right password from that address.
    let said = ftp_login("127.0.0.21", &c.ftp[1], "acme", "secret");
    assert!(said.starts_with("refused"), "ftp on node 2: {said}");
    let (code, _) = curl_from("127.0.0.21", &n3.url("/v1/files/"), Some("acme:secret"));
    assert_eq!(code, 429, "http on node 3");
    // Another address is untouched on every node.
    let said = ftp_login("127.0.0.22", &c.ftp[1], "acme", "secret");
    assert_eq!(said.trim(), "ok");
    let (code, _) = curl_from("127.0.0.22", &n3.url("/v1/files/"), Some("acme:secret"));
    assert_eq!(code, 200);

    // Account lock (account_max = 3) from three addresses over three nodes and doors.
    let (code, _) = curl_from("127.0.0.41", &n1.url("/v1/files/"), Some("bob:wrong"));
    assert_eq!(code, 401);
    let said = ftp_login("127.0.0.42", &c.ftp[1], "bob", "wrong");
    assert!(said.starts_with("refused"), "{said}");
    let said = paramiko_as("127.0.0.43", n3.sftp, "x.txt", "bob", "wrong");
    assert!(said.starts_with("refused"), "{said}");
    // Now the right password from a fresh address is refused on every node.
    let (code, _) = curl_from("127.0.0.44", &n1.url("/v1/files/"), Some("bob:secret"));
    assert_eq!(code, 401, "bob is locked on node 1");
    let said = ftp_login("127.0.0.45", &c.ftp[1], "bob", "secret");
    assert!(
        said.starts_with("refused"),
        "bob is locked on node 2: {said}"
    );
    n3.wait_audit(|r| {
        r["detail"]
            .as_str()
            .is_some_and(|d| d.contains("password logins locked"))
    })
    .expect("the lock is recorded by the node whose failure started it");
}

#[test]
fn with_redis_hung_slowed_or_gone_each_on_store_error_mode_does_what_it_says() {
    let c = cluster(["local", "open", "closed"], 1, 2);
    let [local, open, closed] = [&c.nodes[0], &c.nodes[1], &c.nodes[2]];
    wait_store(&c, "up");
    let (code, body) = readyz(closed);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["cluster"]["on_store_error"], "closed");

    let mut sleeper = None;
    for (sig, label) in [("-STOP", "hung"), ("sleep", "slowed"), ("-KILL", "gone")] {
        if label != "hung" {
            // Shared limits resumed (after SIGCONT, or the DEBUG SLEEP's end); now Redis is
            // slowed by DEBUG SLEEP (busy for 6 s, answering nothing meanwhile), then it
            // disappears altogether.
            assert!(c.redis.signal("-CONT"));
            wait_store(&c, "up");
        }
        if sig == "sleep" {
            sleeper = Some(
                Command::new("redis-cli")
                    .args(["-p", &c.redis.port.to_string(), "DEBUG", "SLEEP", "6"])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            std::thread::sleep(Duration::from_millis(100));
        } else {
            assert!(c.redis.signal(sig));
        }
        // Requests stay fast whatever the mode: bounded by timeout_ms, then decided locally.
        let from = match label {
            "hung" => "127.0.0.61",
            "slowed" => "127.0.0.63",
            _ => "127.0.0.62",
        };
        let mut local_codes = Vec::new();
        for i in 0..5 {
            let (code, took) = curl_from(from, &local.url(&format!("/public/{i}")), None);
            assert!(took < Duration::from_secs(2), "{label}: {took:?}");
            local_codes.push(code);
        }
        assert_eq!(
            &local_codes[..2],
            &[200, 200],
            "{label} local: {local_codes:?}"
        );
        assert!(
            local_codes[2..].contains(&429),
            "{label} local: {local_codes:?}"
        );
        for i in 0..5 {
            let (code, took) = curl_from(from, &open.url(&format!("/public/{i}")), None);
            assert!(took < Duration::from_secs(2), "{label}: {took:?}");
            assert_eq!(code, 200, "{label} open admits everything");
        }
        let (code, took) = curl_from(from, &closed.url("/public/0"), None);
        assert!(took < Duration::from_secs(2), "{label}: {took:?}");
        assert_eq!(code, 503, "{label} closed refuses rate-limited routes");
        // Logins: local and open log in; closed refuses.
        let (code, _) = curl_from(from, &local.url("/v1/files/"), Some("acme:secret"));
        assert_eq!(code, 200, "{label} local login");
        let (code, _) = curl_from(from, &open.url("/v1/files/"), Some("acme:secret"));
        assert_eq!(code, 200, "{label} open login");
        let (code, _) = curl_from(from, &closed.url("/v1/files/"), Some("acme:secret"));
        assert_eq!(code, 503, "{label} closed login");
        let said = ftp_login(from, &c.ftp[2], "acme", "secret");
        assert!(said.starts_with("refused"), "{label} closed ftp: {said}");
        wait_store(&c, "down");
        let (code, body) = readyz(closed);
        assert_eq!(code, 503, "{body}");
        let (code, body) = readyz(local);
        assert_eq!(code, 200, "{body}");
    }
    if let Some(mut s) = sleeper {
        let _ = s.wait();
    }
    // Every switch is audited on every node, and the gauge says so.
    for n in &c.nodes {
        n.wait_audit(|r| {
            r["action"] == "config"
                && r["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("cluster store down"))
        })
        .expect("the switch to down is recorded");
        n.wait_audit(|r| {
            r["action"] == "config"
                && r["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("cluster store up"))
        })
        .expect("the switch back up is recorded");
    }
    let out = run_with_timeout(
        Command::new("curl").args(["-s", "-u", "ops:secret", &local.url("/metrics")]),
        Duration::from_secs(20),
    );
    assert!(
        text(&out).contains("gatehouse_cluster_store_up 0"),
        "{}",
        text(&out)
    );
}

#[test]
fn through_the_balancer_every_node_records_the_real_client_and_a_lost_node_loses_nothing() {
    let mut c = cluster(["local", "local", "local"], 100, 100);
    let work = tempfile::tempdir().unwrap();
    let (_lb, sftp_in, http_in, ftp_in) = balancer(&c, work.path());
    // Round robin: six SFTP uploads from 127.0.0.51 reach all three nodes.
    for i in 0..6 {
        let said = paramiko_as(
            "127.0.0.51",
            sftp_in,
            &format!("lb-{i}.txt"),
            "acme",
            "secret",
        );
        assert!(said.starts_with("ok"), "{said}");
    }
    for n in &c.nodes {
        let up = n
            .wait_audit(|r| r["action"] == "upload" && r["protocol"] == "sftp")
            .unwrap_or_else(|| panic!("no upload reached this node\n{}", n.log()));
        assert!(
            up["remote"].as_str().unwrap().starts_with("127.0.0.51:"),
            "{up}"
        );
    }
    // FTPS through the balancer: control round robin, each node's passive range forwarded to
    // it; every node sees (and records) the client, and checks the data connection against it.
    for i in 0..3 {
        let said = ftps_round_trip("127.0.0.53", ftp_in, &format!("ftps-{i}.txt"));
        assert_eq!(
            said,
            "ok",
            "{}",
            c.nodes.iter().map(|n| n.log()).collect::<String>()
        );
    }
    for n in &c.nodes {
        let up = n
            .wait_audit(|r| r["action"] == "upload" && r["protocol"] == "ftp")
            .unwrap_or_else(|| panic!("no FTPS upload reached this node\n{}", n.log()));
        assert!(
            up["remote"].as_str().unwrap().starts_with("127.0.0.53:"),
            "{up}"
        );
    }
    // The balancer's own address without a header is refused before the greeting.
    {
        use std::io::{Read, Write};
        let (ip, port) = &c.ftp[0];
        let mut s = std::net::TcpStream::connect((ip.as_str(), *port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(b"USER acme\r\n");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(
            !String::from_utf8_lossy(&got).contains("220"),
            "a trusted peer without a PROXY header got a session: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(c.nodes[0].log().contains("ftp connection refused"));
        // Anyone else claiming an address with a header is not believed: it is just a bad
        // command line to FTP, and the claimed address appears nowhere.
        let local = std::net::SocketAddr::from(([127, 0, 0, 9], 0));
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&local.into()).unwrap();
        let target: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();
        sock.connect(&target.into()).unwrap();
        let mut s: std::net::TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(
            b"PROXY TCP4 203.0.113.5 127.0.0.1 1111 21\r\nUSER acme\r\nPASS secret\r\nQUIT\r\n",
        );
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("220"), "{got}");
        assert!(!c.nodes[0].audit().iter().any(|r| {
            r["remote"]
                .as_str()
                .is_some_and(|a| a.starts_with("203.0.113.5"))
        }));
    }
    // Node 2 dies mid-run: HAProxy takes it out; new sessions go to the other two.
    c.nodes[1].kill9();
    let mut acknowledged = Vec::new();
    for i in 0..6 {
        let name = format!("after-{i}.txt");
        let said = paramiko_as("127.0.0.52", sftp_in, &name, "acme", "secret");
        assert!(said.starts_with("ok"), "after the node loss: {said}");
        acknowledged.push(name);
    }
    let (code, _) = curl_from(
        "127.0.0.52",
        &format!("http://127.0.0.1:{http_in}/v1/files/"),
        Some("acme:secret"),
    );
    assert_eq!(code, 200);
    // Everything acknowledged is on the shared storage, and in a live node's audit log.
    for name in &acknowledged {
        let p = c._data.path().join("files/acme").join(name);
        assert_eq!(
            std::fs::read(&p).unwrap_or_default(),
            b"behind the balancer\n",
            "{name}"
        );
        let path = format!("/acme/{name}");
        assert!(
            [&c.nodes[0], &c.nodes[2]].iter().any(|n| n
                .audit()
                .iter()
                .any(|r| r["action"] == "upload" && r["path"] == path.as_str())),
            "{name} has no upload record"
        );
    }
}

/// A paramiko process holding a session; killed (by PID) when dropped.
struct HeldSession(Child);

impl Drop for HeldSession {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An SFTP session held open by paramiko from `from` until it is dropped.
fn hold_sftp(from: &str, port: u16) -> HeldSession {
    use std::io::BufRead;
    let script = r#"
import socket, sys, time, paramiko
src, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(); s.settimeout(20); s.bind((src, 0)); s.connect(("127.0.0.1", port))
t = paramiko.Transport(s); t.connect(username="acme", password="secret")
paramiko.SFTPClient.from_transport(t).listdir(".")
print("in", flush=True)
time.sleep(120)
"#;
    let mut child = Command::new(python())
        .args(["-c", script, from, &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let _ = std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let held = HeldSession(child);
    assert_eq!(line.trim(), "in", "the held session did not log in");
    held
}

#[test]
fn a_users_session_cap_holds_over_the_nodes() {
    let c = cluster_with(["local", "local", "local"], 100, 100, 2);
    let first = hold_sftp("127.0.0.71", c.nodes[0].sftp);
    let _second = hold_sftp("127.0.0.72", c.nodes[1].sftp);
    // Two sessions open on nodes 1 and 2: the cap (2) refuses a third on node 3, any door.
    let said = paramiko_as("127.0.0.73", c.nodes[2].sftp, "x.txt", "acme", "secret");
    assert!(said.starts_with("refused"), "sftp on node 3: {said}");
    let said = ftp_login("127.0.0.73", &c.ftp[2], "acme", "secret");
    assert!(said.starts_with("refused"), "ftp on node 3: {said}");
    c.nodes[2]
        .wait_audit(|r| {
            r["action"] == "login"
                && r["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("too many sessions"))
        })
        .expect("the refusal is recorded");
    // One ends: its lease is released and node 3 admits a session again.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let said = ftp_login("127.0.0.73", &c.ftp[2], "acme", "secret");
        if said.starts_with("ok") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ended session's slot was never released: {said}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A connection to `to` from `from`, and what the server says to it first (HTTP: to a
/// request, after `preface`, a PROXY header or nothing).
fn open_and_listen(from: &str, to: (&str, u16), door: &str, preface: &str) -> (TcpStream, String) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    s.bind(&local.into()).unwrap();
    let remote: std::net::SocketAddr = format!("{}:{}", to.0, to.1).parse().unwrap();
    s.connect(&remote.into()).unwrap();
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if door == "http" {
        let _ =
            s.write_all(format!("{preface}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    let mut b = [0u8; 128];
    let n = s.read(&mut b).unwrap_or(0);
    (s, String::from_utf8_lossy(&b[..n]).into_owned())
}

/// A listener's address.
type Addr<'a> = (&'a str, u16);

#[test]
fn a_per_address_connection_cap_holds_over_the_nodes() {
    let c = cluster_capped(["local", "local", "local"], 100, 100, 0, 2);
    let n = &c.nodes;
    // HTTP connections come from the trusted balancer address with a PROXY header naming the
    // client: the client is what is counted.
    let proxied = "PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\n";
    let doors: [(&str, [Addr; 3], &str, &str); 3] = [
        (
            "ftp",
            [0, 1, 2].map(|i| (c.ftp[i].0.as_str(), c.ftp[i].1)),
            "127.0.0.81",
            "",
        ),
        (
            "sftp",
            [0, 1, 2].map(|i| ("127.0.0.1", n[i].sftp)),
            "127.0.0.82",
            "",
        ),
        (
            "http",
            [0, 1, 2].map(|i| ("127.0.0.1", n[i].http)),
            "127.0.0.1",
            proxied,
        ),
    ];
    for (door, to, from, preface) in doors {
        let served = |said: &str| match door {
            "ftp" => said.starts_with("220"),
            "sftp" => said.starts_with("SSH-2.0-"),
            _ => said.starts_with("HTTP/1.1 200"),
        };
        // One connection held on node 1 and one on node 2: the cap (2) is reached over the
        // cluster, and node 3, with none of its own, refuses a third.
        let (first, said) = open_and_listen(from, to[0], door, preface);
        assert!(served(&said), "{door} node 1: {said:?}");
        let (_second, said) = open_and_listen(from, to[1], door, preface);
        assert!(served(&said), "{door} node 2: {said:?}");
        let (_, said) = open_and_listen(from, to[2], door, preface);
        match door {
            "ftp" => assert!(said.starts_with("421"), "ftp node 3 said {said:?}"),
            _ => assert!(
                said.is_empty(),
                "{door} node 3 served a third connection: {said:?}"
            ),
        }
        // Another client is served meanwhile.
        let other = if door == "http" {
            "PROXY TCP4 203.0.113.8 127.0.0.1 40000 80\r\n"
        } else {
            preface
        };
        let other_from = if door == "http" { from } else { "127.0.0.83" };
        let (_, said) = open_and_listen(other_from, to[2], door, other);
        assert!(served(&said), "{door}: another address on node 3: {said:?}");
        // The first ends: its lease is released (asynchronously) and node 3 admits one.
        drop(first);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_held, said) = open_and_listen(from, to[2], door, preface);
            if served(&said) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{door}: the ended connection's lease was never released: {said:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn session_leases_lost_with_the_store_are_taken_again_when_it_returns() {
    let mut c = cluster_with(["local", "local", "local"], 100, 100, 2);
    wait_store(&c, "up");
    let _first = hold_sftp("127.0.0.74", c.nodes[0].sftp);
    let _second = hold_sftp("127.0.0.75", c.nodes[1].sftp);
    assert_eq!(c.redis.cli(&["ZCARD", "gh:conn:u:acme"]), "2");
    // Redis crashes and comes back empty: the two sessions' leases are gone with it.
    c.redis.crash();
    wait_store(&c, "down");
    c.redis.start_empty();
    assert_eq!(c.redis.cli(&["ZCARD", "gh:conn:u:acme"]), "0");
    wait_store(&c, "up");
    // Each node takes its leases again as soon as it sees the store back (not at the next
    // renewal, and not only while the lease was still alive).
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.redis.cli(&["ZCARD", "gh:conn:u:acme"]) != "2" {
        assert!(
            Instant::now() < deadline,
            "the leases were not taken again: {}",
            c.redis.cli(&["ZRANGE", "gh:conn:u:acme", "0", "-1"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // So the cap (2) still holds: node 3 refuses a third session.
    let said = ftp_login("127.0.0.76", &c.ftp[2], "acme", "secret");
    assert!(said.starts_with("refused"), "ftp on node 3: {said}");
}

fn healthz_sha(n: &Gateway) -> String {
    let (_, body) = crate::http_files::curl(&[&n.url("/healthz")]);
    serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()["config_sha256"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[test]
fn sighup_with_a_changed_config_takes_effect_on_every_node_and_a_broken_one_on_none() {
    let c = cluster(["local", "local", "local"], 100, 100);
    let hup = |n: &Gateway| {
        assert!(
            Command::new("kill")
                .args(["-HUP", &n.pid().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    // The same change everywhere: a new user, dave.
    let mut wanted = Vec::new();
    for (i, n) in c.nodes.iter().enumerate() {
        let mut text = std::fs::read_to_string(&n.config_path).unwrap();
        text.push_str(&format!(
            "\n[[users]]\nname = \"dave\"\npassword_hash = \"{}\"\nhome = \"/dave\"\npermissions = [ {{ path = \"/\", allow = [\"list\", \"read\"] }} ]\n",
            crate::harness::SECRET_HASH
        ));
        std::fs::write(&n.config_path, &text).unwrap();
        wanted.push(sha256_hex(&text));
        // One refusal per address (three from one address would ban it on every node).
        let from = format!("127.0.0.{}", 81 + i);
        let (code, _) = curl_from(&from, &n.url("/v1/files/"), Some("dave:secret"));
        assert_eq!(code, 401, "dave is unknown before the reload");
        hup(n);
    }
    for (n, sha) in c.nodes.iter().zip(&wanted) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while healthz_sha(n) != *sha {
            assert!(Instant::now() < deadline, "no reload: {}", n.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        let (code, _) = curl_from("127.0.0.91", &n.url("/v1/files/"), Some("dave:secret"));
        assert_eq!(code, 200, "dave after the reload");
    }
    // A broken config: refused on every node, the running one stays.
    for n in &c.nodes {
        std::fs::write(&n.config_path, "[gateway\nstate_dir = 1\n").unwrap();
        hup(n);
    }
    for (n, sha) in c.nodes.iter().zip(&wanted) {
        n.wait_audit(|r| {
            r["action"] == "config"
                && r["outcome"] == "error"
                && r["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("reload refused"))
        })
        .expect("the refused reload is recorded");
        assert_eq!(healthz_sha(n), *sha, "the running config stays");
        let (code, _) = curl_from("127.0.0.91", &n.url("/v1/files/"), Some("dave:secret"));
        assert_eq!(code, 200);
    }
}
