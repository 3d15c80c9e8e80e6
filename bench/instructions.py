#!/usr/bin/env python3
"""bench/instructions.py: a regression guard that holds on a noisy machine. Runs gatehouse
under valgrind's callgrind, sends N and then 2N more requests of each kind over one keep-alive
connection, and prints the instructions the gateway executed per request (the difference
between the two counts, so start-up and shutdown cancel out). Wall-clock noise does not
change these figures; a change that doubles the work per request does.

  proxied GET    route auth = ["none"] to a local upstream (Python, in this process)
  4 KiB GET      GET /v1/files/<file> with Basic auth (verification cached after the first)

Environment: GATEHOUSE_BIN (default target/release/gatehouse), INSTR_N (default 2000),
INSTR_KEEP=1 keeps the scratch directory with the callgrind dumps, to read where the
instructions go: `callgrind_annotate --inclusive=yes <dir>/callgrind.out.<pid>.<k>` (dump 2 is
the N-request phase of a case). Prints one line per case: "instructions per <case>: <count>".
"""

import base64
import http.client
import http.server
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("GATEHOUSE_BIN", os.path.join(ROOT, "target/release/gatehouse"))
N = int(os.environ.get("INSTR_N", "2000"))
HOST = "127.0.0.1"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    BODY = b'{"status":"ok","service":"upstream"}\n'

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        self.wfile.write(self.BODY)

    def log_message(self, *_):
        pass


def instructions(outfile):
    """Total instructions (Ir) of a callgrind output file."""
    with open(outfile) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError("no summary in " + outfile)


def run_case(path, headers, counts, d, http_port, config):
    """Starts gatehouse under callgrind, sends counts[0] requests, dumps, sends counts[1] more,
    stops; returns the instructions of each phase."""
    out = os.path.join(d, "callgrind.out")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out + ".%p",
         "--dump-instr=no", "--collect-atstart=yes", BIN, "serve", "--config", config],
        stdout=open(os.path.join(d, "gw.log"), "a"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection((HOST, http_port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("gatehouse did not start under valgrind")
            time.sleep(0.2)
    c = http.client.HTTPConnection(HOST, http_port, timeout=60)

    def send(n):
        for _ in range(n):
            c.request("GET", path, headers=headers)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError("%s answered %d" % (path, r.status))

    send(50)  # warm-up: pools, caches, first-use allocations
    marks = []
    for n in counts:
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], capture_output=True, check=True)
        send(n)
        marks.append(n)
    subprocess.run(["callgrind_control", "--dump", str(proc.pid)], capture_output=True, check=True)
    c.close()
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)
    dumps = sorted((p for p in os.listdir(d) if p.startswith("callgrind.out.%d." % proc.pid)),
                   key=lambda p: int(p.rsplit(".", 1)[1]))
    # Dump k holds what ran since dump k-1: dump 1 ends the warm-up, dumps 2.. the measured phases.
    phases = [instructions(os.path.join(d, p)) for p in dumps[1:1 + len(counts)]]
    return phases


def main():
    if not os.path.exists(BIN):
        sys.exit("no gatehouse binary at %s" % BIN)
    d = tempfile.mkdtemp(prefix="gatehouse-instr.", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    up_port, http_port = free_port(), free_port()
    srv = http.server.ThreadingHTTPServer((HOST, up_port), Upstream)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    os.makedirs(os.path.join(d, "data/bench"))
    with open(os.path.join(d, "data/bench/small.bin"), "wb") as f:
        f.write(os.urandom(4096))
    pw_hash = subprocess.run([BIN, "hash-password"], input=b"bench-pw", capture_output=True,
                             check=True).stdout.decode().strip()
    config = os.path.join(d, "gatehouse.toml")
    with open(config, "w") as f:
        f.write("""
[gateway]
state_dir = "{d}/var"
[audit]
dir = "{d}/audit"
fsync = "batch"
[http]
listen = "{h}:{p}"
[backends.disk]
kind = "local"
root = "{d}/data"
[[mounts]]
path = "/"
backend = "disk"
[[users]]
name = "bench"
password_hash = "{pw}"
home = "/bench"
permissions = [ {{ path = "/", allow = ["list", "read"] }} ]
[[routes]]
name = "open"
path_prefix = "/api/open"
upstreams = ["http://{h}:{up}"]
strip_prefix = false
auth = ["none"]
""".format(d=d, h=HOST, p=http_port, pw=pw_hash, up=up_port))
    auth = {"Authorization": "Basic " + base64.b64encode(b"bench:bench-pw").decode()}
    cases = [("proxied GET", "/api/open/bench", {}), ("4 KiB GET", "/v1/files/small.bin", auth)]
    for name, path, headers in cases:
        a, b = run_case(path, headers, [N, 2 * N], d, http_port, config)
        # Phase b has N more requests than phase a; what both share (timers, idle work) cancels.
        per = (b - a) / N
        print("instructions per %s: %.0f  (N=%d: %d, 2N: %d)" % (name, per, N, a, b), flush=True)
    srv.shutdown()
    if os.environ.get("INSTR_KEEP") == "1":
        print("callgrind dumps kept in %s" % d, flush=True)
    else:
        subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    main()
