//! Behind a load balancer: Debian's HAProxy in front of the SFTP listener (PROXY protocol v2)
//! and the HTTP listener (v1), clients on their own loopback addresses (127.0.0.7). The gateway
//! sees and records the real client; a listed peer without a header, and an unlisted one that
//! claims an address with a header, are refused.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{Gateway, free_port, python, run_with_timeout, text, wait_port};
use crate::http_files::curl;

fn config() -> String {
    r#"
[gateway]
state_dir = "{dir}/var"
shutdown_grace_secs = 5

[limits]
login_failures = { max = 3, window_secs = 300, ban_secs = 900, account_max = 0 }

[sftp]
listen = "127.0.0.1:{sftp}"
host_keys = ["{dir}/var/host_ed25519"]
proxy_protocol = ["127.0.0.1/32"]

[http]
listen = "127.0.0.1:{http}"
trusted_proxies = ["127.0.0.1/32"]

[backends.disk]
kind = "local"
root = "{dir}/data"

[[mounts]]
path = "/"
backend = "disk"

[[users]]
name = "alice"
password_hash = "{secret_hash}"
home = "/alice"
permissions = [ { path = "/", allow = ["list", "read", "write", "overwrite", "delete", "mkdir", "rename"] } ]

[[users]]
name = "carol"
password_hash = "{secret_hash}"
home = "/carol"
allowed_ips = ["127.0.0.8/32"]
permissions = [ { path = "/", allow = ["list", "read", "write"] } ]
"#
    .to_string()
}

/// HAProxy, stopped (by PID) when dropped.
pub(crate) struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy(dir: &Path, sftp_in: u16, sftp: u16, http_in: u16, http: u16) -> Haproxy {
    haproxy_with(
        dir,
        &format!(
            "frontend sftp_in\n  bind 127.0.0.1:{sftp_in}\n  default_backend sftp_gw\n\
             backend sftp_gw\n  server gw 127.0.0.1:{sftp} send-proxy-v2\n\
             frontend http_in\n  bind 127.0.0.1:{http_in}\n  default_backend http_gw\n\
             backend http_gw\n  server gw 127.0.0.1:{http} send-proxy\n"
        ),
        &[sftp_in, http_in],
    )
}

/// Starts HAProxy (TCP mode) with these frontends and backends; waits for `ports`.
pub(crate) fn haproxy_with(dir: &Path, sections: &str, ports: &[u16]) -> Haproxy {
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 1000\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             {sections}"
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/haproxy")
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy (scripts/install-peers.sh installs it)");
    let h = Haproxy(child);
    for p in ports {
        assert!(
            wait_port(*p, Duration::from_secs(10)),
            "haproxy did not listen on {p}"
        );
    }
    h
}

/// paramiko from `source` to `port`: uploads `name`; prints "ok" or the error.
const PARAMIKO: &str = r#"
import socket, sys, paramiko
source, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
user, password = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else ("alice", "secret")
s = socket.socket(); s.settimeout(20); s.bind((source, 0)); s.connect(("127.0.0.1", port))
try:
    t = paramiko.Transport(s); t.connect(username=user, password=password)
    c = paramiko.SFTPClient.from_transport(t)
    with c.open(name, "wb") as f:
        f.write(b"behind the balancer\n")
    t.close(); print("ok")
except Exception as e:
    print("refused:", type(e).__name__, e)
"#;

fn paramiko(source: &str, port: u16, name: &str) -> String {
    paramiko_as(source, port, name, "alice", "secret")
}

pub(crate) fn paramiko_as(
    source: &str,
    port: u16,
    name: &str,
    user: &str,
    password: &str,
) -> String {
    let out = run_with_timeout(
        Command::new(python()).args([
            "-c",
            PARAMIKO,
            source,
            &port.to_string(),
            name,
            user,
            password,
        ]),
        Duration::from_secs(60),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// Sends raw bytes from `source` and reads what comes back until the server closes (bounded).
const RAW: &str = r#"
import socket, sys
source, port, data = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode().decode("unicode_escape").encode("latin-1")
s = socket.socket(); s.settimeout(10); s.bind((source, 0)); s.connect(("127.0.0.1", port))
s.sendall(data)
got = b""
try:
    while True:
        b = s.recv(4096)
        if not b: break
        got += b
except socket.timeout:
    print("still open"); sys.exit(0)
print("closed", repr(got[:80]))
"#;

fn raw(source: &str, port: u16, data: &str) -> String {
    let out = run_with_timeout(
        Command::new(python()).args(["-c", RAW, source, &port.to_string(), data]),
        Duration::from_secs(30),
    );
    text(&out)
}

#[test]
fn sftp_and_http_behind_haproxy_see_the_real_client_and_nobody_else_can_claim_one() {
    let gw = Gateway::start(&config());
    let (sftp_in, http_in) = (free_port(), free_port());
    let work = tempfile::tempdir().unwrap();
    let _lb = haproxy(work.path(), sftp_in, gw.sftp, http_in, gw.http);

    // SFTP through HAProxy (PROXY v2) from 127.0.0.7: recorded as 127.0.0.7.
    let said = paramiko("127.0.0.7", sftp_in, "via-lb.txt");
    assert!(said.starts_with("ok"), "{said}\n{}", gw.log());
    let up = gw
        .wait_audit(|r| r["action"] == "upload" && r["path"] == "/alice/via-lb.txt")
        .expect("upload record");
    assert!(
        up["remote"].as_str().unwrap().starts_with("127.0.0.7:"),
        "{up}"
    );
    let login = gw
        .wait_audit(|r| r["action"] == "login" && r["protocol"] == "sftp")
        .unwrap();
    assert!(
        login["remote"].as_str().unwrap().starts_with("127.0.0.7:"),
        "{login}"
    );

    // HTTP through HAProxy (PROXY v1) from 127.0.0.7.
    let body = work.path().join("b.txt");
    std::fs::write(&body, "over http\n").unwrap();
    let (code, out) = curl(&[
        "--interface",
        "127.0.0.7",
        "-u",
        "alice:secret",
        "-T",
        body.to_str().unwrap(),
        &format!("http://127.0.0.1:{http_in}/v1/files/http-via-lb.txt"),
    ]);
    assert_eq!(code, 201, "{out}");
    let up = gw
        .wait_audit(|r| r["action"] == "upload" && r["path"] == "/alice/http-via-lb.txt")
        .unwrap();
    assert!(
        up["remote"].as_str().unwrap().starts_with("127.0.0.7:"),
        "{up}"
    );
    // Plain HTTP from the trusted peer itself (no header) still works: the header is optional.
    let (code, _) = curl(&["-u", "alice:secret", &gw.url("/v1/files/http-via-lb.txt")]);
    assert_eq!(code, 200);

    // The balancer's address without a header: refused before SSH starts.
    let said = paramiko("127.0.0.1", gw.sftp, "direct.txt");
    assert!(said.starts_with("refused"), "{said}");
    // Someone else claiming an address: the header is not believed (SSH sees garbage).
    let said = raw(
        "127.0.0.9",
        gw.sftp,
        "PROXY TCP4 203.0.113.5 127.0.0.1 1111 22\\r\\nSSH-2.0-claimer\\r\\n",
    );
    assert!(said.contains("closed"), "{said}");
    let said = raw(
        "127.0.0.9",
        gw.http,
        "PROXY TCP4 203.0.113.5 127.0.0.1 1111 80\\r\\nGET /v1/files/ HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Basic YWxpY2U6c2VjcmV0\\r\\n\\r\\n",
    );
    assert!(
        said.contains("400") || said.contains("closed b''"),
        "{said}"
    );
    assert!(
        !gw.audit().iter().any(|r| r["remote"]
            .as_str()
            .is_some_and(|a| a.starts_with("203.0.113.5"))),
        "a claimed address reached the audit log"
    );
    assert!(
        gw.log().contains("no PROXY protocol header"),
        "{}",
        gw.log()
    );
}
