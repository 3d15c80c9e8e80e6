#!/usr/bin/env python3
"""bench/scale.py: the scale checks of bench/run, against a gatehouse it starts itself on
127.0.0.1 (generated config under a scratch directory on tmpfs). Each check is bounded in time
and prints one line of figures; the exit status is 1 if a check failed (a session or request
that did not succeed, a record missing from the audit chain).

  sftp-sessions   N concurrent SFTP sessions (paramiko, ed25519 key), each logging in and
                  uploading a 64 KiB file, all open at once; then held idle: memory per idle
                  SFTP session and a normal request's latency while they are held
  http-idle       N idle HTTP/1.1 keep-alive connections (one request each, then held):
                  memory per idle connection and a normal request's latency meanwhile
  s3-upload       one SFTP upload of SIZE GiB into the S3-compatible server (moto), streamed
                  by curl from a generator: gateway peak RSS, MiB/s, and boto3's upload of the
                  same stream to the same server for comparison
  audit-flood     audited small uploads (HTTP PUT of 4 KiB, 8 parallel keep-alive clients) for
                  SECS seconds: records/s, MiB/s, every record in the verified chain

Environment: GATEHOUSE_BIN (default target/release/gatehouse), GATEHOUSE_PEERS (the test
peers' venv, for moto), SCALE_SFTP_SESSIONS (1000), SCALE_HTTP_IDLE (10000), SCALE_S3_GIB (5),
SCALE_FLOOD_SECS (60), SCALE_CHECKS (all four, space separated).
"""

import concurrent.futures
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("GATEHOUSE_BIN", os.path.join(ROOT, "target/release/gatehouse"))
PEERS = os.environ.get("GATEHOUSE_PEERS", os.path.expanduser("~/.cache/gatehouse-peers"))
HOST = "127.0.0.1"
FAILED = []


def log(msg):
    print("[scale %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port, proc, secs=30):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("process exited with %s" % proc.returncode)
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d did not open" % port)


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_secs(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


class Gateway:
    def __init__(self, scratch, extra="", s3=None):
        self.dir = tempfile.mkdtemp(prefix="gw-", dir=scratch)
        self.http, self.sftp = free_port(), free_port()
        os.makedirs(os.path.join(self.dir, "data/bench"))
        key = os.path.join(self.dir, "client_key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        self.key = key
        pub = open(key + ".pub").read().strip()
        pw_hash = subprocess.run([BIN, "hash-password"], input=b"bench-pw", capture_output=True,
                                 check=True).stdout.decode().strip()
        s3_backend = ""
        if s3:
            s3_backend = """
[backends.lake]
kind = "s3"
bucket = "%s"
endpoint = "%s"
region = "us-east-1"
access_key_id = "test"
secret_access_key = "test"

[[mounts]]
path = "/bench/lake"
backend = "lake"
""" % (s3[1], s3[0])
        cfg = """
[gateway]
state_dir = "{d}/var"
shutdown_grace_secs = 5

[audit]
dir = "{d}/audit"
fsync = "batch"

[limits]
max_connections = 100000
max_connections_per_ip = 0
max_sessions_per_user = 0
login_failures = {{ max = 1000000, window_secs = 60, ban_secs = 1 }}
{extra}

[http]
listen = "{h}:{hp}"

[sftp]
listen = "{h}:{sp}"
host_keys = ["{d}/var/ssh_host_ed25519_key"]

[backends.disk]
kind = "local"
root = "{d}/data"

[[mounts]]
path = "/"
backend = "disk"
{s3}
[[users]]
name = "bench"
password_hash = "{pw}"
public_keys = ["{pub}"]
home = "/bench"
permissions = [ {{ path = "/", allow = ["list", "read", "write", "overwrite", "delete", "mkdir", "rename"] }} ]
""".format(d=self.dir, h=HOST, hp=self.http, sp=self.sftp, pw=pw_hash, pub=pub, s3=s3_backend,
           extra=extra)
        self.config = os.path.join(self.dir, "gatehouse.toml")
        with open(self.config, "w") as f:
            f.write(cfg)
        subprocess.run([BIN, "check", "--config", self.config], check=True, capture_output=True)
        self.log = open(os.path.join(self.dir, "gatehouse.log"), "w")
        self.proc = subprocess.Popen([BIN, "serve", "--config", self.config], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_port(self.http, self.proc)
        wait_port(self.sftp, self.proc)

    def rss_kib(self):
        return status_kib(self.proc.pid, "VmRSS")

    def hwm_kib(self):
        return status_kib(self.proc.pid, "VmHWM")

    def sample_peaks(self, stop, peaks, every=0.1):
        """Until `stop` is set: the highest RssAnon and RssFile seen (KiB) into `peaks`. VmHWM
        is their sum at its peak; the split tells the process's own memory (anonymous) from
        the executable's and libraries' pages it has touched (file-backed, shared)."""
        while not stop.is_set():
            try:
                for k in ("RssAnon", "RssFile"):
                    peaks[k] = max(peaks.get(k, 0), status_kib(self.proc.pid, k))
            except OSError:  # the gateway is gone: the check reports that
                return
            stop.wait(every)

    def latency_ms(self, n=20):
        """Median and max of n fresh-connection GET /healthz round trips."""
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            c = http.client.HTTPConnection(HOST, self.http, timeout=10)
            c.request("GET", "/healthz")
            r = c.getresponse()
            r.read()
            c.close()
            if r.status != 200:
                raise RuntimeError("healthz answered %d" % r.status)
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times), max(times)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def audit_verify(self):
        out = subprocess.run([BIN, "audit", "verify", "--dir", os.path.join(self.dir, "audit")],
                             capture_output=True, timeout=300)
        return out.returncode == 0, out.stdout.decode() + out.stderr.decode()

    def audit_records(self, action):
        n = 0
        adir = os.path.join(self.dir, "audit")
        for name in sorted(os.listdir(adir)):
            if not name.endswith(".jsonl"):
                continue
            with open(os.path.join(adir, name)) as f:
                for line in f:
                    if ('"action":"%s"' % action) in line:
                        n += 1
        return n


def check_sftp_sessions(scratch):
    import paramiko
    n = int(os.environ.get("SCALE_SFTP_SESSIONS", "1000"))
    gw = Gateway(scratch)
    try:
        key = paramiko.Ed25519Key.from_private_key_file(gw.key)
        payload = os.urandom(64 * 1024)
        base = gw.rss_kib()
        opened, errors, lock = [], [], threading.Lock()
        barrier = threading.Barrier(n, timeout=300)

        def one(i):
            try:
                t = paramiko.Transport((HOST, gw.sftp))
                t.banner_timeout = t.auth_timeout = 120
                t.connect(username="bench", pkey=key)
                sftp = paramiko.SFTPClient.from_transport(t)
                with lock:
                    opened.append((t, sftp))
                barrier.wait()  # all n sessions open at once
                with sftp.open("s%05d.bin" % i, "wb") as f:
                    f.write(payload)
                if sftp.stat("s%05d.bin" % i).st_size != len(payload):
                    raise RuntimeError("size mismatch")
            except Exception as e:  # noqa: BLE001 - reported, counted as a failure
                with lock:
                    errors.append("%s: %r" % (i, e))
                try:
                    barrier.abort()
                except threading.BrokenBarrierError:
                    pass

        t0 = time.monotonic()
        cpu0 = cpu_secs(gw.proc.pid)
        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        secs = time.monotonic() - t0
        cpu = cpu_secs(gw.proc.pid) - cpu0
        files = len([x for x in os.listdir(os.path.join(gw.dir, "data/bench")) if x.startswith("s")])
        time.sleep(1)
        held = gw.rss_kib()
        med, worst = gw.latency_ms()
        ok = not errors and files == n
        print("sftp-sessions: %d concurrent sessions, %d uploads of 64 KiB ok, %d errors, %.1f s, "
              "gateway CPU %.1f ms/session; RSS %.1f MiB -> %.1f MiB with all %d idle: %.0f KiB "
              "per idle SFTP session (target <= 200); /healthz while held: median %.1f ms, max %.1f ms"
              % (n, files, len(errors), secs, cpu * 1000 / n, base / 1024, held / 1024, n,
                 (held - base) / n, med, worst), flush=True)
        for e in errors[:5]:
            log("  sftp error " + e)
        if not ok:
            FAILED.append("sftp-sessions")
        for t, s in opened:
            try:
                t.close()
            except Exception:  # noqa: BLE001
                pass
    finally:
        gw.stop()


def check_http_idle(scratch):
    n = int(os.environ.get("SCALE_HTTP_IDLE", "10000"))
    gw = Gateway(scratch)
    socks = []
    try:
        base = gw.rss_kib()
        req = ("GET /healthz HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (HOST, gw.http)).encode()
        failed = 0
        t0 = time.monotonic()
        for i in range(n):
            try:
                s = socket.create_connection((HOST, gw.http), timeout=10)
                s.sendall(req)
                got = b""
                while b"\r\n\r\n" not in got:
                    chunk = s.recv(4096)
                    if not chunk:
                        raise RuntimeError("closed")
                    got += chunk
                if not got.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(got[:40])
                socks.append(s)
            except Exception as e:  # noqa: BLE001
                failed += 1
                if failed <= 3:
                    log("  http connection %d: %r" % (i, e))
        opened = time.monotonic() - t0
        time.sleep(1)
        held = gw.rss_kib()
        med, worst = gw.latency_ms()
        alive = 0
        for s in socks:
            s.setblocking(False)
            try:
                alive += 0 if s.recv(1) == b"" else 1
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        print("http-idle: %d keep-alive connections opened in %.1f s (%d failed), %d still open; "
              "RSS %.1f MiB -> %.1f MiB: %.1f KiB per idle HTTP connection (target <= 20); "
              "/healthz while held: median %.1f ms, max %.1f ms"
              % (n, opened, failed, alive, base / 1024, held / 1024, (held - base) / max(1, len(socks)),
                 med, worst), flush=True)
        if failed or alive != len(socks):
            FAILED.append("http-idle")
    finally:
        for s in socks:
            s.close()
        gw.stop()


def moto(scratch):
    port = free_port()
    exe = os.path.join(PEERS, "venv/bin/moto_server")
    proc = subprocess.Popen([exe, "-H", HOST, "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=scratch)
    wait_port(port, proc)
    return proc, "http://%s:%d" % (HOST, port)


def gen_stream(total, chunk=1 << 20):
    """A pipe's read end fed with `total` pseudo-random bytes by a thread."""
    r, w = os.pipe()
    block = os.urandom(chunk)

    def feed():
        with os.fdopen(w, "wb") as f:
            left = total
            while left > 0:
                n = min(chunk, left)
                f.write(block[:n])
                left -= n

    threading.Thread(target=feed, daemon=True).start()
    return os.fdopen(r, "rb")


def check_s3_upload(scratch):
    import boto3
    gib = float(os.environ.get("SCALE_S3_GIB", "5"))
    size = int(gib * (1 << 30))
    mproc, endpoint = moto(scratch)
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        s3.create_bucket(Bucket="scale")
        gw = Gateway(scratch, s3=(endpoint, "scale"))
        try:
            base = gw.hwm_kib()
            anon0 = status_kib(gw.proc.pid, "RssAnon")
            peaks, stop = {}, threading.Event()
            sampler = threading.Thread(target=gw.sample_peaks, args=(stop, peaks), daemon=True)
            sampler.start()
            src = gen_stream(size)
            t0 = time.monotonic()
            out = subprocess.run(
                ["curl", "-sS", "--fail", "-k", "--key", gw.key, "--pubkey", gw.key + ".pub",
                 "-u", "bench:", "-T", "-", "sftp://%s:%d/lake/big.bin" % (HOST, gw.sftp)],
                stdin=src, capture_output=True, timeout=3600)
            secs = time.monotonic() - t0
            src.close()
            stop.set()
            sampler.join()
            peak = gw.hwm_kib()
            head = s3.head_object(Bucket="scale", Key="big.bin") if out.returncode == 0 else {}
            ok = out.returncode == 0 and head.get("ContentLength") == size
        finally:
            gw.stop()
        src = gen_stream(size)
        t1 = time.monotonic()
        s3.upload_fileobj(src, "scale", "direct.bin")
        direct = time.monotonic() - t1
        mib = size / (1 << 20)
        print("s3-upload: %.1f GiB over SFTP (curl) into moto: %s, %.1f MiB/s; boto3 upload_fileobj "
              "(aws s3 cp's transfer manager) of the same stream: %.1f MiB/s, ratio %.2f; gateway peak "
              "RSS %.1f MiB (before %.1f MiB; target <= 64): anonymous %.1f MiB at rest, %.1f MiB "
              "at most during the upload, executable and libraries %.1f MiB"
              % (gib, "ok" if ok else "FAILED " + out.stderr.decode()[-200:], mib / secs, mib / direct,
                 (mib / secs) / (mib / direct), peak / 1024, base / 1024, anon0 / 1024,
                 peaks.get("RssAnon", 0) / 1024, peaks.get("RssFile", 0) / 1024), flush=True)
        if not ok or peak > 64 * 1024:
            FAILED.append("s3-upload")
    finally:
        mproc.terminate()
        mproc.wait(30)


def check_audit_flood(scratch):
    secs = float(os.environ.get("SCALE_FLOOD_SECS", "60"))
    gw = Gateway(scratch)
    try:
        body = os.urandom(4096)
        auth = "Basic " + __import__("base64").b64encode(b"bench:bench-pw").decode()
        deadline = time.monotonic() + secs
        counts = []

        def client(k):
            c = http.client.HTTPConnection(HOST, gw.http, timeout=30)
            done = bad = 0
            while time.monotonic() < deadline:
                c.request("PUT", "/v1/files/c%d-%07d.bin" % (k, done), body=body,
                          headers={"Authorization": auth})
                r = c.getresponse()
                r.read()
                if r.status in (200, 201):
                    done += 1
                else:
                    bad += 1
            c.close()
            return done, bad

        cpu0 = cpu_secs(gw.proc.pid)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            counts = list(pool.map(client, range(8)))
        took = time.monotonic() - t0
        cpu = cpu_secs(gw.proc.pid) - cpu0
        done = sum(c[0] for c in counts)
        bad = sum(c[1] for c in counts)
    finally:
        gw.stop()
    ok_chain, why = gw.audit_verify()
    recs = gw.audit_records("upload")
    print("audit-flood: %d audited 4 KiB PUTs in %.0f s (%d refused): %.0f records/s, %.1f MiB/s, "
          "gateway CPU %.0f us/upload; %d upload records, chain %s"
          % (done, took, bad, done / took, done * 4096 / took / (1 << 20), cpu * 1e6 / max(1, done),
             recs, "verified" if ok_chain else "BROKEN: " + why[-200:]), flush=True)
    if bad or recs != done or not ok_chain:
        FAILED.append("audit-flood")


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(want, hard)), hard))
    except ValueError:
        pass
    if not os.path.exists(BIN):
        sys.exit("no gatehouse binary at %s (cargo build --release)" % BIN)
    checks = os.environ.get("SCALE_CHECKS", "sftp-sessions http-idle s3-upload audit-flood").split()
    scratch = tempfile.mkdtemp(prefix="gatehouse-scale.", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        for name in checks:
            fn = {"sftp-sessions": check_sftp_sessions, "http-idle": check_http_idle,
                  "s3-upload": check_s3_upload, "audit-flood": check_audit_flood}.get(name)
            if fn is None:
                sys.exit("unknown check %s" % name)
            log(name)
            try:
                fn(scratch)
            except Exception as e:  # noqa: BLE001 - a check that cannot run is a failure
                print("%s: FAILED to run: %r" % (name, e), flush=True)
                FAILED.append(name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if FAILED:
        print("scale checks failed: " + " ".join(FAILED))
        sys.exit(1)


if __name__ == "__main__":
    main()
