"""paramiko against the gateway's SFTP: stat, listdir, random-access reads, rename, errors,
chroot escapes, and (with --interrupt) an upload cut off mid-file.

usage: sftp_paramiko.py PORT USER PASSWORD [--interrupt PATH] [--s3]
Exits non-zero with a message on the first failed expectation.
"""
import errno
import hashlib
import os
import socket
import sys

import paramiko


def connect(port, user, password):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    t = paramiko.Transport(sock)
    t.connect(username=user, password=password)
    return t, paramiko.SFTPClient.from_transport(t)


def expect_ioerror(fn, code, what):
    try:
        fn()
    except IOError as e:
        if code is not None and e.errno != code:
            raise AssertionError(f"{what}: expected errno {code}, got {e.errno} ({e})")
        return
    raise AssertionError(f"{what}: expected an error")


def main():
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    args = sys.argv[4:]
    t, sftp = connect(port, user, password)

    if args and args[0] == "--interrupt":
        path = args[1]
        f = sftp.open(path, "wb")
        f.set_pipelined(True)
        chunk = os.urandom(32768)
        for _ in range(64):  # 2 MiB, then vanish without closing the file
            f.write(chunk)
        f.flush()
        t.sock.close()
        print("interrupted")
        return

    s3 = "--s3" in args
    # realpath and home
    assert sftp.normalize(".") == "/", sftp.normalize(".")
    # write, stat, listdir
    data = os.urandom(300_000)
    with sftp.open("inbox/data.bin", "wb") as f:
        f.set_pipelined(True)
        f.write(data)
    st = sftp.stat("inbox/data.bin")
    assert st.st_size == len(data), st
    assert "data.bin" in sftp.listdir("inbox"), sftp.listdir("inbox")
    attrs = {a.filename: a for a in sftp.listdir_attr("inbox")}
    assert attrs["data.bin"].st_size == len(data)

    # random-access reads
    with sftp.open("inbox/data.bin", "rb") as f:
        for off, n in [(0, 10), (299_990, 10), (150_000, 5000), (7, 1), (123_456, 70_000)]:
            f.seek(off)
            got = f.read(n)
            assert got == data[off:off + n], f"read at {off}"
        f.seek(0)
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
        f.seek(len(data))
        assert f.read(10) == b""
    # prefetching whole-file download
    with sftp.open("inbox/data.bin", "rb") as f:
        f.prefetch()
        assert f.read() == data

    # rename: v3 rename refuses an existing target; posix-rename replaces it
    with sftp.open("inbox/other.bin", "wb") as f:
        f.write(b"other")
    expect_ioerror(lambda: sftp.rename("inbox/data.bin", "inbox/other.bin"), None, "rename over existing")
    sftp.posix_rename("inbox/data.bin", "inbox/other.bin")
    with sftp.open("inbox/other.bin", "rb") as f:
        assert f.read() == data
    sftp.rename("inbox/other.bin", "inbox/renamed.bin")
    expect_ioerror(lambda: sftp.stat("inbox/other.bin"), errno.ENOENT, "old name gone")

    # errors: missing file, permission denied outside the writable area
    expect_ioerror(lambda: sftp.open("inbox/missing.bin", "rb"), errno.ENOENT, "missing file")
    expect_ioerror(lambda: sftp.open("readonly/x.bin", "wb"), errno.EACCES, "write where only read is allowed")
    expect_ioerror(lambda: sftp.remove("readonly/seed.txt"), errno.EACCES, "delete without permission")
    expect_ioerror(lambda: sftp.rmdir("inbox"), None, "rmdir non-empty")
    expect_ioerror(lambda: sftp.symlink("a", "inbox/link"), None, "symlink unsupported")

    # chroot: .. and absolute paths stay inside home
    assert sftp.normalize("../../..") == "/"
    assert sftp.normalize("/../../etc/passwd") == "/etc/passwd"
    expect_ioerror(lambda: sftp.open("../../../../etc/passwd", "rb"), errno.ENOENT, "escape via ..")
    expect_ioerror(lambda: sftp.open("/etc/passwd", "rb"), errno.ENOENT, "absolute path")
    expect_ioerror(lambda: sftp.stat("inbox/\x00evil"), None, "NUL in name")
    listing = sftp.listdir("/..")
    assert "inbox" in listing, listing

    # resume: local disk appends; object stores refuse clearly
    with sftp.open("inbox/log.txt", "wb") as f:
        f.write(b"hello ")
    if s3:
        expect_ioerror(lambda: append(sftp, "inbox/log.txt", b"world"), None, "append on S3")
        with sftp.open("inbox/log.txt", "rb") as f:
            assert f.read() == b"hello "
    else:
        append(sftp, "inbox/log.txt", b"world")
        with sftp.open("inbox/log.txt", "rb") as f:
            assert f.read() == b"hello world"
    # A non-sequential write: refused on S3 (uploads stream there) and nothing is left; on
    # local disk it lands where it was written (the hole reads as zeros).
    def holey():
        with sftp.open("inbox/holey.bin", "wb") as f:
            f.write(b"a" * 10)
            f.seek(100_000)
            f.write(b"b")
    if s3:
        expect_ioerror(holey, None, "non-sequential write")
        expect_ioerror(lambda: sftp.stat("inbox/holey.bin"), errno.ENOENT, "refused upload left nothing")
    else:
        holey()
        with sftp.open("inbox/holey.bin", "rb") as f:
            got = f.read()
        assert got == b"a" * 10 + b"\0" * (100_000 - 10) + b"b", len(got)
        sftp.remove("inbox/holey.bin")

    # mkdir / rmdir / remove
    sftp.mkdir("inbox/sub")
    expect_ioerror(lambda: sftp.mkdir("inbox/sub"), None, "mkdir existing")
    sftp.rmdir("inbox/sub")
    sftp.remove("inbox/renamed.bin")
    sftp.remove("inbox/log.txt")
    sftp.close()
    t.close()
    print("ok")


def append(sftp, path, data):
    with sftp.open(path, "ab") as f:
        f.write(data)


if __name__ == "__main__":
    main()
