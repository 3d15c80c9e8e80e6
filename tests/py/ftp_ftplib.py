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
    """Stock ftplib: storbinary() waits for the server's TLS close_notify (FTP_TLS unwrap) and
    then reads the 226. No tolerance: any failure of the stock client fails the test."""
    return ftp.storbinary(cmd, data, rest=rest)


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
    assert "REST STREAM" in feats and "MLST type*;size*;modify*;" in feats, feats
    # RFC details partners' tools check.
    reply = ftp.sendcmd("PWD")
    assert reply == '257 "/" is the current directory', reply
    for cmd, code in [("TYPE I", "200"), ("TYPE A", "200"), ("TYPE L 8", "200"), ("STRU f", "200"),
                      ("MODE s", "200"), ("OPTS MLST type;size;", "200")]:
        reply = ftp.sendcmd(cmd)
        assert reply.startswith(code), (cmd, reply)
    assert ftp.sendcmd("OPTS MLST type;size;") == "200 MLST OPTS type;size;"
    for cmd, code in [("TYPE E", "504"), ("TYPE X", "501"), ("STRU R", "504"), ("MODE B", "504"),
                      ("REST abc", "501"), ("SIZE", "501"), ("STOR", "501"), ("OPTS BOGUS", "501"),
                      ("EPSV 2", "522"), ("EPSV 9", "522")]:
        expect_code(lambda: ftp.sendcmd(cmd), code, cmd)
    # Every 501 above kept the session.
    assert ftp.sendcmd("NOOP").startswith("200")
    expect_code(lambda: ftp.size("/"), "550", "SIZE of a directory")
    expect_code(lambda: ftp.sendcmd("MDTM /"), "550", "MDTM of a directory")
    # CDUP at the root stays at the root; PWD never shows /..
    ftp.sendcmd("CDUP")
    ftp.cwd("../..")
    assert ftp.pwd() == "/", ftp.pwd()

    data = os.urandom(1_000_003)
    ftp.cwd("inbox")
    assert ftp.pwd() == "/inbox"
    reply = ftp.sendcmd("MKD made")
    assert reply == '257 "/inbox/made" created', reply
    ftp.rmd("made")
    # XRMD (RFC 775) as RMD; RNTO without RNFR is a sequence error; STAT describes the session
    # without the server's internals; PBSZ/PROT only after AUTH TLS.
    ftp.sendcmd("XMKD made2")
    assert ftp.sendcmd("XRMD made2").startswith("250")
    expect_code(lambda: ftp.sendcmd("RNTO x"), "503", "RNTO without RNFR")
    stat = ftp.sendcmd("STAT")
    assert stat.startswith("211") and "Storage" not in stat and "::" not in stat, stat
    if tls:
        clear = ftplib.FTP()
        clear.connect("127.0.0.1", port, timeout=30)
        expect_code(lambda: clear.sendcmd("PBSZ 0"), "503", "PBSZ before AUTH TLS")
        expect_code(lambda: clear.sendcmd("PROT P"), "503", "PROT before AUTH TLS")
        clear.close()
        # AUTH again on a secured channel is a sequence error, and the session goes on.
        expect_code(lambda: ftp.sendcmd("AUTH TLS"), "503", "AUTH TLS twice")
        assert ftp.sendcmd("NOOP").startswith("200")
    else:
        expect_code(lambda: ftp.sendcmd("PROT P"), "502", "PROT without TLS configured")
    # LIST/NLST/MLSD of a missing path: 550 before any 150 (ftplib raises at the reply).
    for cmd in ("LIST missing-dir", "NLST missing-dir", "MLSD missing-dir"):
        expect_code(lambda: ftp.retrlines(cmd, lambda _l: None), "550", cmd)
    stor(ftp, "STOR data.bin", io.BytesIO(data))
    # LIST, NLST and STAT of a file describe that file.
    lines = []
    ftp.retrlines("LIST data.bin", lines.append)
    assert len(lines) == 1 and lines[0].endswith(" data.bin") and str(len(data)) in lines[0], lines
    assert ftp.nlst("data.bin") == ["data.bin"], ftp.nlst("data.bin")
    stat = ftp.sendcmd("STAT data.bin")
    assert "data.bin" in stat, stat
    assert ftp.size("data.bin") == len(data)
    mdtm = ftp.sendcmd("MDTM data.bin")
    assert mdtm.startswith("213 "), mdtm
    # MFMT (what rclone, FileZilla and WinSCP send after an upload): kept on disk, accepted and
    # ignored on S3 (the object's time is its upload's); a bad time is 501, a missing file 550.
    assert "MFMT" in feats, feats
    reply = ftp.sendcmd("MFMT 20200102030405 data.bin")
    assert reply == "213 Modify=20200102030405; data.bin", reply
    if not s3:
        assert ftp.sendcmd("MDTM data.bin") == "213 20200102030405"
    expect_code(lambda: ftp.sendcmd("MFMT 2020 data.bin"), "501", "MFMT with a bad time")
    expect_code(lambda: ftp.sendcmd("MFMT 20200102030405 missing.bin"), "550", "MFMT of a missing file")
    names = [n for n, _ in ftp.mlsd()]
    assert "data.bin" in names, names
    # MLSD of a file is 501 (RFC 3659 7.2), before any 150; a missing file's 550 says why.
    expect_code(lambda: list(ftp.mlsd("data.bin")), "501", "MLSD of a file")
    text = expect_code(lambda: ftp.size("missing.bin"), "550", "SIZE of a missing file")
    assert text == "550 No such file or directory", text
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

    # Resumed upload: REST+STOR and APPE on disk; refused with 502 on S3, before any 150.
    stor(ftp, "STOR log.txt", io.BytesIO(b"hello "))
    if s3:
        expect_code(lambda: stor(ftp, "APPE log.txt", io.BytesIO(b"world")), "502", "APPE on S3")
        expect_code(lambda: stor(ftp, "STOR log.txt", io.BytesIO(b"world"), rest=6), "502", "REST+STOR on S3")
        # The refused transfer cleared the REST offset: the next download is whole.
        buf = io.BytesIO()
        ftp.retrbinary("RETR log.txt", buf.write)
        assert buf.getvalue() == b"hello ", buf.getvalue()
    else:
        stor(ftp, "APPE log.txt", io.BytesIO(b"world"))
        stor(ftp, "STOR log.txt", io.BytesIO(b"!!"), rest=11)
        buf = io.BytesIO()
        ftp.retrbinary("RETR log.txt", buf.write)
        assert buf.getvalue() == b"hello world!!", buf.getvalue()

    # ABOR during a download: 426 for the transfer, then 226 for the ABOR (RFC 959).
    big = os.urandom(8 * 1024 * 1024)
    stor(ftp, "STOR big.bin", io.BytesIO(big))
    conn = ftp.transfercmd("RETR big.bin")
    got = 0
    while got < 65536:
        got += len(conn.recv(8192))
    ftp.putcmd("ABOR")
    first = ftp.getline()
    assert first[:3] == "426", first
    assert ftp.voidresp()[:3] == "226"
    conn.close()
    assert ftp.sendcmd("NOOP").startswith("200")
    # ABOR with nothing running is fine too, also as ftplib.abort() sends it (urgent data).
    assert ftp.sendcmd("ABOR")[:3] in ("225", "226")
    assert ftp.abort()[:3] in ("225", "226")
    # QUIT during an upload is answered at once, and the upload still finishes: its 226
    # follows the 221, then the server closes.
    q = connect(port, user, password, tls)
    q.cwd("inbox")
    conn = q.transfercmd("STOR quit.bin")
    conn.sendall(big[:1_000_000])
    q.putcmd("QUIT")
    conn.sendall(big[1_000_000:2_000_000])
    if isinstance(conn, ssl.SSLSocket):
        conn.unwrap()
    conn.close()
    assert q.getline()[:3] == "221"
    assert q.getline()[:3] == "226"
    assert q.file.readline() == ""  # closed
    q.close()
    assert ftp.size("quit.bin") == 2_000_000
    # The same with QUIT sent right behind the STOR (before the server's data task has the
    # command), and a command after the QUIT: the 226 still comes, the MKD never runs.
    for i in range(10):
        q = connect(port, user, password, tls)
        q.cwd("inbox")
        conn = q.transfercmd("STOR quit-race.bin")
        q.putcmd("QUIT")
        q.putcmd("MKD after-quit")
        conn.sendall(big[:100_000])
        if isinstance(conn, ssl.SSLSocket):
            conn.unwrap()
        conn.close()
        replies = [q.getline()[:3] for _ in range(3)]
        assert replies == ["221", "503", "226"], (i, replies)
        assert q.file.readline() == ""  # closed
        q.close()
        assert ftp.size("quit-race.bin") == 100_000
        assert "after-quit" not in ftp.nlst()

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

    # Chroot: .. cannot leave home, and PWD says so.
    ftp.cwd("../../..")
    assert ftp.pwd() == "/", ftp.pwd()
    assert "inbox" in ftp.nlst(), ftp.nlst()
    assert ftp.size("inbox/log.txt") > 0
    expect_code(lambda: ftp.retrbinary("RETR ../../../etc/passwd", lambda b: None), "550", "escape")
    ftp.quit()
    print("ok")


if __name__ == "__main__":
    main()
