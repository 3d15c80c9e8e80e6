"""Python ftplib against the gateway's FTP/FTPS: TLS with PROT P, MLSD/SIZE/MDTM, REST
downloads, resumed uploads (disk) or their refusal (S3), SITE SHA256, and the reply codes of
refusals. With --interrupt PATH it starts a STOR and drops the data connection mid-file.

usage: ftp_ftplib.py PORT USER PASSWORD [--tls] [--s3] [--interrupt PATH]
"""
import ftplib
import hashlib
import io
import os
import ssl
import socket
import sys
import time


def connect(port, user, password, tls):
    if tls:
        ftp = ftplib.FTP_TLS()
        ftp.connect("127.0.0.1", port, timeout=30)
        ftp.auth()
        ftp.login(user, password)
        ftp.prot_p()
    else:
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", port, timeout=30)
        ftp.login(user, password)
    return ftp


def stor(ftp, cmd, data, rest=None):
    """storbinary that tolerates one known gap: libunftp hands the upload data socket to the
    storage as a plain reader and closes it without a TLS close_notify, which FTP_TLS's unwrap()
    insists on. The transfer itself must still end with 226."""
    conn = ftp.transfercmd(cmd, rest)
    try:
        conn.sendall(data.getvalue() if hasattr(data, "getvalue") else data)
        if isinstance(conn, ssl.SSLSocket):
            conn.unwrap()
    except (ssl.SSLError, OSError):
        # A refused upload resets the data connection; the control reply says why.
        pass
    finally:
        conn.close()
    return ftp.voidresp()


def expect_code(fn, code, what):
    try:
        fn()
    except ftplib.all_errors as e:
        text = str(e)
        if not text.startswith(code):
            raise AssertionError(f"{what}: expected {code}, got {text!r}")
        return text
    raise AssertionError(f"{what}: expected an error {code}")


def main():
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    args = sys.argv[4:]
    tls, s3 = "--tls" in args, "--s3" in args

    if "--auth-storm" in args:
        # Many clients that start the TLS handshake the moment they read 234: each must get a
        # working TLS control channel (libunftp raced this; see vendor/README.md).
        from concurrent.futures import ThreadPoolExecutor

        def one(_):
            ftp = ftplib.FTP_TLS()
            ftp.connect("127.0.0.1", port, timeout=30)
            ftp.auth()
            reply = ftp.sendcmd("NOOP")
            ftp.quit()
            return reply

        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(one, range(int(args[args.index("--auth-storm") + 1]))))
        assert all(r.startswith("200") for r in replies), replies
        print(f"{len(replies)} TLS control channels")
        return

    if "--interrupt" in args:
        path = args[args.index("--interrupt") + 1]
        ftp = connect(port, user, password, tls)
        conn = ftp.transfercmd(f"STOR {path}")
        chunk = os.urandom(65536)
        for _ in range(32):
            conn.sendall(chunk)
        # Let the server get into the transfer, so this is a cut mid-file and not a connection
        # that died before the server looked at it.
        time.sleep(0.5)
        # Vanish: reset the data connection and the control connection without a goodbye.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()
        ftp.sock.close()
        print("interrupted")
        return

    # Wrong password: 530.
    bad = ftplib.FTP_TLS() if tls else ftplib.FTP()
    bad.connect("127.0.0.1", port, timeout=30)
    if tls:
        bad.auth()
    expect_code(lambda: bad.login(user, "wrong-password"), "530", "wrong password")
    bad.close()

    ftp = connect(port, user, password, tls)
    assert ftp.pwd() == "/", ftp.pwd()
    feats = ftp.sendcmd("FEAT")
    assert "REST STREAM" in feats and "MLST" in feats, feats

    data = os.urandom(1_000_003)
    ftp.cwd("inbox")
    assert ftp.pwd() == "/inbox"
    stor(ftp, "STOR data.bin", io.BytesIO(data))
    assert ftp.size("data.bin") == len(data)
    mdtm = ftp.sendcmd("MDTM data.bin")
    assert mdtm.startswith("213 "), mdtm
    names = [n for n, _ in ftp.mlsd()]
    assert "data.bin" in names, names
    facts = dict(ftp.mlsd())["data.bin"]
    assert facts["type"] == "file" and int(facts["size"]) == len(data), facts
    assert "data.bin" in ftp.nlst()
    lines = []
    ftp.retrlines("LIST", lines.append)
    assert any(l.endswith(" data.bin") for l in lines), lines

    # Download, whole and resumed (REST) on every backend.
    buf = io.BytesIO()
    ftp.retrbinary("RETR data.bin", buf.write)
    assert buf.getvalue() == data
    buf = io.BytesIO()
    ftp.retrbinary("RETR data.bin", buf.write, rest=600_000)
    assert buf.getvalue() == data[600_000:]

    # SHA-256 from the core.
    reply = ftp.sendcmd("SITE SHA256 /inbox/data.bin")
    assert reply.startswith("213 ") and hashlib.sha256(data).hexdigest() in reply, reply

    # Resumed upload: REST+STOR and APPE on disk; refused with 502 on S3.
    stor(ftp, "STOR log.txt", io.BytesIO(b"hello "))
    if s3:
        expect_code(lambda: stor(ftp, "APPE log.txt", io.BytesIO(b"world")), "502", "APPE on S3")
        expect_code(lambda: stor(ftp, "STOR log.txt", io.BytesIO(b"world"), rest=6), "502", "REST+STOR on S3")
        # libunftp keeps a REST offset after a failed transfer (it resets it only on success),
        # so clear it before the next download, as a careful client does.
        ftp.sendcmd("REST 0")
        buf = io.BytesIO()
        ftp.retrbinary("RETR log.txt", buf.write)
        assert buf.getvalue() == b"hello ", buf.getvalue()
    else:
        stor(ftp, "APPE log.txt", io.BytesIO(b"world"))
        stor(ftp, "STOR log.txt", io.BytesIO(b"!!"), rest=11)
        buf = io.BytesIO()
        ftp.retrbinary("RETR log.txt", buf.write)
        assert buf.getvalue() == b"hello world!!", buf.getvalue()

    # Directories and renames.
    ftp.mkd("sub")
    ftp.rename("data.bin", "sub/moved.bin")
    assert ftp.size("sub/moved.bin") == len(data)
    expect_code(lambda: ftp.rmd("sub"), "550", "rmdir non-empty")
    ftp.delete("sub/moved.bin")
    ftp.rmd("sub")

    # Refusals: 550 missing or denied; 553 for a name that cannot exist.
    expect_code(lambda: ftp.size("missing.bin"), "550", "SIZE missing")
    expect_code(lambda: ftp.retrbinary("RETR missing.bin", lambda b: None), "550", "RETR missing")
    ftp.cwd("/")
    expect_code(lambda: stor(ftp, "STOR readonly.bin", io.BytesIO(b"x")), "550", "STOR without permission")
    expect_code(lambda: ftp.delete("/readonly/seed.txt"), "550", "DELE without permission")
    expect_code(lambda: stor(ftp, "STOR inbox/bad\\name.bin", io.BytesIO(b"x")), "553", "backslash in name")

    # Chroot: .. cannot leave home. (libunftp keeps the working directory as typed, so PWD may
    # read /../../..; every path is still resolved inside home.)
    ftp.cwd("../../..")
    assert "inbox" in ftp.nlst(), ftp.nlst()
    assert ftp.size("inbox/log.txt") > 0
    expect_code(lambda: ftp.retrbinary("RETR ../../../etc/passwd", lambda b: None), "550", "escape")
    ftp.quit()
    print("ok")


if __name__ == "__main__":
    main()
