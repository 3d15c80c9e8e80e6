"""The hostile-input corpus against all three doors of a live gateway, with a well-behaved client
served throughout. Each case must get a clear protocol error (an SFTP status, an FTP 4xx/5xx
reply, an HTTP 4xx) or a clean close, never a hang; the good client (user `good`, from
127.0.0.9, so bans of the hostile address do not touch it) must never fail. Prints a JSON summary.

usage: hostile_corpus.py HTTP_PORT SFTP_PORT FTP_PORT
       (users: acme/secret for the hostile side, good/secret for the good client; acme's home
        holds `big/` with many files and `escape`, a symlink to a directory outside the backend
        root holding canary.txt; the caller checks that directory is unchanged afterwards)
"""
import ftplib
import http.client
import json
import socket
import struct
import sys
import threading
import time
import urllib.parse

import paramiko

HOSTILE_PATHS = [
    "..", "../..", "../../../../etc/passwd", "/../../etc/passwd", "a/../../..", "....//....//etc",
    "%2e%2e/%2e%2e/etc/passwd", "..%2f..%2fetc", ".%2e/x", "..\\..\\windows", "C:\\Windows\\win.ini",
    "/etc/passwd", "//etc//passwd", "~root/.ssh/id_rsa", "a\x00b", "\x00", "x" * 300, "y" * 5000,
    "/".join(["d"] * 200), "bidi\u202etxt.exe", "zero\u200bwidth", "ctl\x01\x1b[2Jx", "\n\r", " ",
    ".", "/", "", "escape", "escape/passwd", "big/../../..", "\ufeffbom", "a" * 255 + "/" + "b" * 255,
]
CANARY = b"outside the backend root"
HOSTILE_BYTES = [b"\xff\xfe", b"bad\xc3\x28utf8", b"\xed\xa0\x80surrogate", b"..\xc0\xafetc"]


class Summary:
    def __init__(self):
        self.cases = {"sftp": 0, "ftp": 0, "http": 0}
        self.failures = []
        self.good = {"sftp": 0, "ftp": 0, "http": 0}
        self.good_failures = []
        self.lock = threading.Lock()

    def case(self, door, ok, what):
        with self.lock:
            self.cases[door] += 1
            if not ok:
                self.failures.append(f"{door}: {what}")


S = Summary()


def sftp_client(port, user="acme", source="127.0.0.1"):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    t = paramiko.Transport(sock)
    t.banner_timeout = 30
    t.connect(username=user, password="secret")
    return t, paramiko.SFTPClient.from_transport(t)


def sftp_cases(port):
    t, s = sftp_client(port)
    ops = [
        ("stat", lambda p: s.stat(p)),
        ("open-r", lambda p: s.open(p, "r").read(10)),
        ("open-w", lambda p: s.open(p, "w").close()),
        ("mkdir", lambda p: s.mkdir(p)),
        ("remove", lambda p: s.remove(p)),
        ("rmdir", lambda p: s.rmdir(p)),
        ("rename", lambda p: s.rename(p, "renamed")),
        ("listdir", lambda p: s.listdir(p)),
        ("realpath", lambda p: s.normalize(p)),
    ]
    for p in HOSTILE_PATHS:
        for name, op in ops:
            try:
                result = op(p)
                # Allowed answers inside the home are fine (e.g. realpath of ".."), but nothing
                # outside it may be read or listed.
                # realpath only names a path; everything else must not work through the link.
                if (p.startswith("escape") and name != "realpath") or CANARY in repr(result).encode():
                    S.case("sftp", False, f"{name} {p!r} went through a symlink out of the root: {result!r}")
                    continue
                if name == "realpath" and not str(result).startswith("/"):
                    S.case("sftp", False, f"realpath {p!r} -> {result!r}")
                    continue
                S.case("sftp", True, "")
            except (IOError, OSError, UnicodeError):
                S.case("sftp", True, "")
            except paramiko.SSHException as e:
                S.case("sftp", False, f"{name} {p!r}: SSH error {e}")
                t, s = sftp_client(port)
    # Bytes that are not UTF-8, straight on the wire.
    for b in HOSTILE_BYTES:
        for cmd in (paramiko.sftp.CMD_STAT, paramiko.sftp.CMD_OPENDIR, paramiko.sftp.CMD_REMOVE):
            try:
                s._request(cmd, b)
                S.case("sftp", False, f"cmd {cmd} on non-UTF-8 {b!r} succeeded")
            except IOError:
                S.case("sftp", True, "")
    # Handles that were never issued, and a read of 2 GiB.
    for bad in (b"h999999", b"", b"\x00" * 300):
        try:
            s._request(paramiko.sftp.CMD_READ, bad, 0, 2**31)
            S.case("sftp", False, f"read on forged handle {bad!r}")
        except IOError:
            S.case("sftp", True, "")
    # The big directory lists (streamed), the symlink out of the root is not followed.
    names = s.listdir("big")
    S.case("sftp", len(names) >= 1000, f"big listing gave {len(names)}")
    t.close()
    raw_sftp_packets(port)


def raw_sftp_packets(port):
    """Malformed SFTP packets on a fresh subsystem channel: each must end in a status or a
    closed channel, never take the connection (or the gateway) down."""
    cases = [
        struct.pack(">I", 0),                                  # zero length
        struct.pack(">I", 0x7FFFFFFF),                         # 2 GiB length announced
        struct.pack(">IB", 5, 1) + struct.pack(">I", 3) * 2,  # INIT then junk
        struct.pack(">IBI", 9, 200, 7) + b"\x00" * 4,          # unknown packet type
        struct.pack(">IBI", 5, 17, 1),                          # STAT with no path
        struct.pack(">IBII", 13, 17, 2, 0xFFFFFFF0) + b"x",    # string length past the end
        struct.pack(">IBI", 9, 3, 3) + struct.pack(">I", 0x7FFFFFF0),  # OPEN, huge name length
    ]
    for payload in cases:
        t, _ = sftp_client(port)
        ch = t.open_session()
        ch.settimeout(15)
        ch.invoke_subsystem("sftp")
        init = struct.pack(">IBI", 5, 1, 3)
        ch.sendall(init)
        try:
            ch.recv(4096)
            ch.sendall(payload)
            ch.recv(4096)
            S.case("sftp", True, "")
        except socket.timeout:
            # No answer to an incomplete packet is fine as long as the connection still works.
            S.case("sftp", t.is_active(), f"raw packet {payload[:16]!r} hung the session")
        except (EOFError, OSError):
            S.case("sftp", True, "")
        t.close()
    # A banner that never ends, and garbage after a proper banner.
    for junk in (b"SSH-2.0-" + b"A" * 100_000, b"SSH-2.0-x\r\n" + b"\xff" * 70_000):
        s = socket.create_connection(("127.0.0.1", port), timeout=15)
        try:
            s.recv(256)
            s.sendall(junk)
            s.recv(256)
        except OSError:
            pass
        s.close()
        S.case("sftp", True, "")


def ftp_login(port, user="acme", source="127.0.0.1"):
    f = ftplib.FTP(source_address=(source, 0))
    f.connect("127.0.0.1", port, timeout=30)
    f.login(user, "secret")
    return f


def ftp_expect_error(f, cmd, what):
    try:
        reply = f.sendcmd(cmd)
    except ftplib.error_perm:
        return True, f
    except ftplib.error_temp:
        return True, f
    except (EOFError, OSError, ftplib.error_reply, ftplib.error_proto):
        return True, None
    return reply[:1] in "123" and what == "may-succeed", f


def ftp_cases(port):
    f = ftp_login(port)
    for p in HOSTILE_PATHS:
        if "\n" in p or "\r" in p:
            continue  # a newline ends the command line; covered by the sequence cases below
        for verb in ("RETR", "SIZE", "MDTM", "DELE", "RMD", "MLST", "CWD", "MKD", "RNFR"):
            may = verb in ("CWD", "MLST", "MKD", "RNFR") and not p.startswith("escape")
            ok, f2 = ftp_expect_error(f, f"{verb} {p}", "may-succeed" if may else "")
            S.case("ftp", ok or may, f"{verb} {p!r}")
            if f2 is None:
                f = ftp_login(port)
            else:
                f = f2
            if verb == "CWD":
                try:
                    f.sendcmd("CWD /")
                except ftplib.all_errors:
                    f = ftp_login(port)
                # PWD never shows a path outside the home.
                pwd = f.pwd()
                S.case("ftp", pwd.startswith("/") and ".." not in pwd, f"PWD {pwd!r} after CWD {p!r}")
    # Out-of-order and malformed sequences, before and after login: each gets a 4xx/5xx reply
    # (or, for bytes that are not a command at all, a reply and a closed connection).
    def fresh():
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        cf = c.makefile("rb")
        cf.readline()
        return c, cf

    raw, rf = fresh()
    for line in (b"PASS x", b"RNTO y", b"RETR /etc/passwd", b"STOR x", b"LIST", b"PORT 127,0,0,1,0,22",
                 b"SITE SHA256 ../../etc/passwd", b"\xff\xfe\xfd", b"", b"USER", b"USER " + b"\x00" * 10,
                 b"NOOP"):
        try:
            raw.sendall(line + b"\r\n")
            reply = rf.readline()
        except OSError:
            reply = b""
        S.case("ftp", reply[:1] in (b"2", b"4", b"5", b"") or reply.startswith(b"331"), f"{line[:20]!r} -> {reply[:60]!r}")
        if not reply or reply.startswith(b"500 Invalid UTF8"):
            raw.close()
            raw, rf = fresh()
    raw.close()
    f = ftp_login(port)
    for cmd in ("REST 99999999999999999999", "REST -1", "PORT 127,0,0,1,0,22", "EPRT |1|127.0.0.1|22|",
                "RNTO nothing", "TYPE X", "TYPE E", "STRU R", "MODE B", "OPTS UTF8 MAYBE", "SIZE"):
        ok, f2 = ftp_expect_error(f, cmd, "")
        S.case("ftp", ok, cmd)
        f = f2 or ftp_login(port)
    # Many passive ports asked for and never used.
    for _ in range(40):
        try:
            f.sendcmd("PASV")
        except ftplib.all_errors:
            f = ftp_login(port)
    S.case("ftp", True, "")
    listing = f.nlst("big")
    S.case("ftp", len(listing) >= 1000, f"big listing gave {len(listing)}")
    f.close()


def http_request(port, method, target, headers=None, body=None, auth=("acme", "secret")):
    import base64

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = dict(headers or {})
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    try:
        c.putrequest(method, target, skip_accept_encoding=True)
        for k, v in h.items():
            c.putheader(k, v)
        c.endheaders(body)
        r = c.getresponse()
        LAST_BODY[0] = r.read()
        return r.status
    except (http.client.HTTPException, OSError):
        return 0
    finally:
        c.close()


LAST_BODY = [b""]


def http_cases(port):
    for p in HOSTILE_PATHS + [b.decode("latin-1") for b in HOSTILE_BYTES]:
        enc = urllib.parse.quote(p, safe="/")
        for method in ("GET", "PUT", "DELETE", "HEAD"):
            status = http_request(port, method, f"/v1/files/{enc}", body=b"x" if method == "PUT" else None)
            # Success is fine inside the home (`..` resolves to it); nothing outside may show.
            leaked = CANARY in LAST_BODY[0] or b"canary.txt" in LAST_BODY[0]
            ok = (status in (400, 403, 404, 405, 409, 414, 431) or status in (200, 201, 204)) and not leaked
            if p.startswith("escape") and status in (200, 201, 204):
                ok = False
            S.case("http", ok, f"{method} {p[:40]!r} -> {status}")
        # Raw path, as some clients send it (no client-side normalisation).
        status = http_request(port, "GET", "/v1/files/" + "".join(c if c.isascii() and c.isprintable() and c not in " #?" else "%%%02X" % ord(c) if ord(c) < 256 else "_" for c in p))
        S.case("http", status in (400, 403, 404, 200), f"raw GET {p[:40]!r} -> {status}")
    # Oversized heads: many headers, one huge header, a huge request line.
    S.case("http", http_request(port, "GET", "/v1/files/", {f"X-H{i}": "v" for i in range(2000)}) in (0, 400, 431), "2000 headers")
    S.case("http", http_request(port, "GET", "/v1/files/", {"X-Big": "v" * 100_000}) in (0, 400, 431), "100 KB header")
    S.case("http", http_request(port, "GET", "/v1/files/" + "a" * 100_000) in (0, 400, 414, 431), "100 KB path")
    S.case("http", http_request(port, "GET", "/v1/files/", auth=("x" * 40_000, "y")) in (401,), "40 KB user")
    # Framing errors: both Content-Length and chunked, bad chunk sizes, a bare LF request.
    for raw in (
        b"PUT /v1/files/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"PUT /v1/files/chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        b"GET /v1/files/ HTTP/9.9\r\n\r\n",
    ):
        s = socket.create_connection(("127.0.0.1", port), timeout=15)
        s.sendall(raw)
        try:
            reply = s.recv(200)
        except OSError:
            reply = b""
        s.close()
        S.case("http", reply == b"" or reply[9:10] in (b"4", b"5"), f"raw {raw[:30]!r} -> {reply[:40]!r}")
    status = http_request(port, "GET", "/v1/files/big/")
    S.case("http", status == 200, f"big listing {status}")


def slowloris(http_port, sftp_port, ftp_port):
    """One byte every 0.5 s on every listener: each must cut the connection within its deadline
    (login timeout / header timeout), which the test configures to a few seconds."""
    results = {}

    def drip(name, port, payload, limit):
        s = socket.create_connection(("127.0.0.1", port), timeout=limit)
        started = time.time()
        closed = False
        try:
            for b in payload:
                s.send(bytes([b]))
                time.sleep(0.5)
                if time.time() - started > limit:
                    break
        except OSError:
            closed = True
        if not closed:
            try:
                s.settimeout(max(1, limit - (time.time() - started)))
                while s.recv(4096):
                    pass
                closed = True
            except OSError:
                closed = True
        results[name] = (closed, round(time.time() - started, 1))
        s.close()

    threads = [
        threading.Thread(target=drip, args=("http", http_port, b"GET /v1/files/ HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200, 20)),
        threading.Thread(target=drip, args=("sftp", sftp_port, b"SSH-2.0-slow" + b"w" * 200, 20)),
        threading.Thread(target=drip, args=("ftp", ftp_port, b"USER " + b"s" * 200, 20)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, (closed, secs) in results.items():
        S.case(name, closed and secs < 19, f"slowloris on {name}: closed={closed} after {secs}s")
    return results


def good_client(http_port, sftp_port, ftp_port, stop):
    src = "127.0.0.9"
    while not stop.is_set():
        for door in ("sftp", "ftp", "http"):
            try:
                if door == "sftp":
                    t, s = sftp_client(sftp_port, "good", src)
                    with s.open("ok.txt", "w") as fh:
                        fh.write(b"fine")
                    assert s.open("ok.txt").read() == b"fine"
                    t.close()
                elif door == "ftp":
                    f = ftp_login(ftp_port, "good", src)
                    assert "ok.txt" in f.nlst()
                    f.quit()
                else:
                    c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30, source_address=(src, 0))
                    import base64

                    c.request("GET", "/v1/files/ok.txt", headers={"Authorization": "Basic " + base64.b64encode(b"good:secret").decode()})
                    r = c.getresponse()
                    body = r.read()
                    assert r.status in (200, 404), r.status
                    c.close()
                with S.lock:
                    S.good[door] += 1
            except Exception as e:  # noqa: BLE001 - any failure of the good client is reported
                with S.lock:
                    S.good_failures.append(f"{door}: {type(e).__name__}: {e}")
        time.sleep(0.2)


def main():
    http_port, sftp_port, ftp_port = (int(x) for x in sys.argv[1:4])
    stop = threading.Event()
    good = threading.Thread(target=good_client, args=(http_port, sftp_port, ftp_port, stop))
    good.start()
    started = time.time()
    try:
        sftp_cases(sftp_port)
        ftp_cases(ftp_port)
        http_cases(http_port)
        slow = slowloris(http_port, sftp_port, ftp_port)
    finally:
        stop.set()
        good.join()
    print(json.dumps({
        "cases": S.cases,
        "failures": S.failures,
        "good_ops": S.good,
        "good_failures": S.good_failures,
        "slowloris": slow,
        "seconds": round(time.time() - started, 1),
    }))
    if S.failures or S.good_failures or min(S.good.values()) == 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
