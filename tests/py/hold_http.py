"""Holds idle HTTP/1.1 keep-alive connections for the idle-memory regression test (hyper patch 1,
vendor/README.md): each connection makes one request, then stays open and idle.

    hold_http.py PORT WARM N

Opens WARM connections, prints "warm" and waits for a line on stdin; opens N more, prints "held"
and waits for a line; then makes a second request on every connection (a connection that gave
its buffers back while idle must serve the next request normally), prints "served K" with the
number of 200s, and exits 0 if all were served.
"""
import http.client
import resource
import sys


def open_some(port, n):
    conns = []
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/healthz")
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit("GET /healthz: %d" % r.status)
        conns.append(c)
    return conns


def main():
    port, warm, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = warm + n + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    conns = open_some(port, warm)
    print("warm", flush=True)
    sys.stdin.readline()
    conns += open_some(port, n)
    print("held", flush=True)
    sys.stdin.readline()
    served = 0
    for c in conns:
        c.request("GET", "/healthz")
        r = c.getresponse()
        r.read()
        served += r.status == 200
        c.close()
    print("served %d" % served, flush=True)
    return 0 if served == len(conns) else 1


if __name__ == "__main__":
    sys.exit(main())
