"""A real HTTP upstream for the proxy tests: echoes what it received, counts hits, and can be
slow, failing, unhealthy, streaming, or a WebSocket echo server. Stops when its parent exits.

usage: upstream.py PORT NAME

  GET  /health            200, or 503 after POST /__down (200 again after POST /__up)
  GET  /hits              {"hits": N} (requests seen, /health and /hits excluded)
  ANY  /slow?ms=N         waits N ms, then echoes
  ANY  /status/NNN        answers NNN with an echo body
  GET  /cache?cc=V&vary=H echo with Cache-Control: V and Vary: H when given
  PUT  /upload            reads the body, answers {"bytes": n, "sha256": hex}
  GET  /big?mib=N         streams N MiB of zeros
  GET  /json/X            {"part": X}; /json/bad answers non-JSON
  GET  /ws                WebSocket echo
  ANY  other              echo: method, path, query, headers, body length and sha256
"""
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

NAME = sys.argv[2] if len(sys.argv) > 2 else "up"
STATE = {"hits": 0, "down": False}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _read_body(self):
        h = hashlib.sha256()
        n = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                left = size
                while left:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    h.update(chunk)
                    n += len(chunk)
                    left -= len(chunk)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
                left -= len(chunk)
        return n, h.hexdigest()

    def _send(self, status, body, headers=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Upstream", NAME)
        self.send_header("Server", "upstream-test")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _echo(self, status=200, headers=None):
        n, digest = self._read_body()
        u = urlparse(self.path)
        self._send(status, {
            "server": NAME,
            "method": self.command,
            "path": u.path,
            "query": u.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_len": n,
            "body_sha256": digest,
        }, headers)

    def _route(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        if u.path == "/health":
            return self._send(503 if STATE["down"] else 200, {"ok": not STATE["down"]})
        if u.path in ("/__down", "/__up"):
            STATE["down"] = u.path == "/__down"
            self._read_body()
            return self._send(200, {"down": STATE["down"]})
        if u.path == "/hits":
            return self._send(200, {"hits": STATE["hits"]})
        with LOCK:
            STATE["hits"] += 1
        if u.path == "/slow":
            time.sleep(int(q.get("ms", ["1000"])[0]) / 1000)
            return self._echo()
        if u.path.startswith("/status/"):
            return self._echo(int(u.path.rsplit("/", 1)[1]))
        if u.path == "/cache":
            h = {}
            if "cc" in q:
                h["Cache-Control"] = q["cc"][0]
            if "vary" in q:
                h["Vary"] = q["vary"][0]
            return self._echo(200, h)
        if u.path == "/upload":
            n, digest = self._read_body()
            return self._send(200, {"bytes": n, "sha256": digest})
        if u.path == "/big":
            mib = int(q.get("mib", ["1"])[0])
            self.send_response(200)
            self.send_header("Content-Length", str(mib << 20))
            self.end_headers()
            block = b"\0" * (1 << 20)
            for _ in range(mib):
                self.wfile.write(block)
            return
        if u.path.startswith("/json/"):
            part = u.path.split("/", 2)[2]
            if part == "bad":
                return self._send(200, b"not json")
            if part == "slow":
                time.sleep(3)
            return self._send(200, {"part": part, "server": NAME})
        if u.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            return self._websocket()
        return self._echo()

    def _websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        sock = self.connection
        while True:
            head = _recv(sock, 2)
            if not head:
                return
            opcode, ln = head[0] & 0x0F, head[1] & 0x7F
            if ln == 126:
                ln = struct.unpack(">H", _recv(sock, 2))[0]
            elif ln == 127:
                ln = struct.unpack(">Q", _recv(sock, 8))[0]
            mask = _recv(sock, 4)
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(_recv(sock, ln)))
            if opcode == 8:
                sock.sendall(b"\x88\x00")
                return
            reply = (f"{NAME}:".encode() + payload)
            hdr = bytes([0x80 | opcode])
            if len(reply) < 126:
                hdr += bytes([len(reply)])
            else:
                hdr += bytes([126]) + struct.pack(">H", len(reply))
            sock.sendall(hdr + reply)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _route


def _recv(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return b""
        buf += chunk
    return buf


def main():
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    parent = os.getppid()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    while os.getppid() == parent:
        time.sleep(0.3)
    server.shutdown()


if __name__ == "__main__":
    main()
