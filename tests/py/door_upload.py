"""One upload through one door with stock clients (paramiko, ftplib, http.client), optionally
pausing part-way so a test can break the storage behind the gateway. Prints "paused" and waits
for a line on stdin at the pause; prints one JSON line at the end:
{"ok": bool, "error": "...", "seconds": <time from resume to the outcome>}.

usage: door_upload.py sftp|ftp|http PORT USER PASSWORD PATH SIZE [--pause-at BYTES]
"""
import base64
import ftplib
import http.client
import json
import os
import socket
import sys
import time

import paramiko

CHUNK = 256 * 1024


def chunks(size, pause_at):
    sent = 0
    paused = pause_at is None
    block = os.urandom(CHUNK)
    start = None
    while sent < size:
        if not paused and sent >= pause_at:
            print("paused", flush=True)
            sys.stdin.readline()
            paused = True
            start = time.time()
            CHUNKS_START[0] = start
        n = min(CHUNK, size - sent)
        yield block[:n]
        sent += n


CHUNKS_START = [None]


def sftp(port, user, password, path, size, pause_at):
    t = paramiko.Transport(("127.0.0.1", port))
    t.connect(username=user, password=password)
    s = paramiko.SFTPClient.from_transport(t)
    f = s.open(path, "w")
    try:
        for c in chunks(size, pause_at):
            f.write(c)
        f.flush()
        # paramiko's close() swallows the server's status: send CLOSE ourselves.
        f._closed = True
        s._request(paramiko.sftp.CMD_CLOSE, f.handle)
    finally:
        t.close()


def ftp(port, user, password, path, size, pause_at):
    c = ftplib.FTP()
    c.connect("127.0.0.1", port, timeout=120)
    c.login(user, password)
    conn = c.transfercmd("STOR " + path)
    try:
        for ch in chunks(size, pause_at):
            conn.sendall(ch)
    except OSError as e:
        # The server cut the data connection: its reason is on the control connection (as
        # curl and lftp read it); report that reply, or the cut if there is none.
        conn.close()
        try:
            c.voidresp()
        except ftplib.Error as reply:
            raise reply from e
        raise
    conn.close()
    c.voidresp()
    c.quit()


def http_put(port, user, password, path, size, pause_at):
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.putrequest("PUT", "/v1/files/" + path.lstrip("/"))
    c.putheader("Authorization", "Basic " + auth)
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    try:
        for ch in chunks(size, pause_at):
            c.send(b"%x\r\n" % len(ch) + ch + b"\r\n")
        c.send(b"0\r\n\r\n")
    except OSError:
        pass
    r = c.getresponse()
    body = r.read()
    if r.status >= 300:
        raise RuntimeError(f"HTTP {r.status} {body[:200]!r}")


def main():
    door, port, user, password, path, size = sys.argv[1:7]
    args = sys.argv[7:]
    pause_at = int(args[args.index("--pause-at") + 1]) if "--pause-at" in args else None
    fn = {"sftp": sftp, "ftp": ftp, "http": http_put}[door]
    started = time.time()
    try:
        fn(int(port), user, password, path, int(size), pause_at)
        out = {"ok": True, "error": ""}
    except Exception as e:  # noqa: BLE001 - the outcome is the report
        out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    out["seconds"] = round(time.time() - (CHUNKS_START[0] or started), 1)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
