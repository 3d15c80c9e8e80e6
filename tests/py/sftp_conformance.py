"""SFTP details stock clients and their test suites rely on, with paramiko: OpenSSH's status
wording, read-write opens and random writes (local disk; a clear refusal on object stores), and
a file edited in place reading back its own writes. User acme/secret, home with a writable
/inbox.

usage: sftp_conformance.py PORT [--s3]
"""
import errno
import hashlib
import sys

import paramiko


def main():
    port = int(sys.argv[1])
    s3 = "--s3" in sys.argv
    t = paramiko.Transport(("127.0.0.1", port))
    t.connect(username="acme", password="secret")
    sftp = paramiko.SFTPClient.from_transport(t)

    # OpenSSH's wording (sftp-server status_to_message).
    try:
        sftp.stat("inbox/missing.bin")
        raise AssertionError("stat of a missing file succeeded")
    except IOError as e:
        assert e.errno == errno.ENOENT and e.strerror == "No such file", (e.errno, e.strerror)
    try:
        sftp.open("readonly/new.bin", "w").write(b"x")
        raise AssertionError("write outside the writable area succeeded")
    except IOError as e:
        assert e.errno == errno.EACCES and e.strerror == "Permission denied", (e.errno, e.strerror)

    with sftp.open("inbox/base.bin", "w") as f:
        f.write(b"0123456789" * 100)

    if s3:
        # Object stores cannot edit in place: refused clearly, nothing changes.
        try:
            sftp.open("inbox/base.bin", "r+")
            raise AssertionError("read-write open succeeded on S3")
        except IOError as e:
            assert "not supported" in str(e), e
        f = sftp.open("inbox/rand.bin", "w")
        f.write(b"a" * 10)
        f.seek(100)
        try:
            f.write(b"b")
            f.close()
            raise AssertionError("a non-sequential write succeeded on S3")
        except IOError as e:
            assert "non-sequential" in str(e) or "not supported" in str(e), e
        print("ok s3")
        return

    # A read-write handle reports the file's size before any write; a truncation through it is
    # refused (not answered OK while the bytes stay), and the file is unchanged.
    with sftp.open("inbox/base.bin", "r+") as f:
        assert f.stat().st_size == 1000, f.stat()
        try:
            f.truncate(100)
            raise AssertionError("ftruncate answered OK")
        except IOError as e:
            assert "truncating files is not supported" in str(e), e
    assert sftp.stat("inbox/base.bin").st_size == 1000

    # Read-write open: writes land in place, reads see them, the rest of the file stays.
    with sftp.open("inbox/base.bin", "r+") as f:
        f.seek(10)
        f.write(b"ABCDEFGHIJ")
        f.seek(0)
        head = f.read(30)
        assert head == b"0123456789ABCDEFGHIJ0123456789", head
    want = bytearray(b"0123456789" * 100)
    want[10:20] = b"ABCDEFGHIJ"
    with sftp.open("inbox/base.bin", "r") as f:
        assert f.read() == bytes(want)

    # Random writes on a new file (out of order, with a hole), as parallel/segmented clients do.
    f = sftp.open("inbox/rand.bin", "w")
    f.seek(5000)
    f.write(b"tail")
    f.seek(0)
    f.write(b"head")
    f.close()
    with sftp.open("inbox/rand.bin", "r") as f:
        data = f.read()
    assert data[:4] == b"head" and data[5000:] == b"tail" and len(data) == 5004, len(data)
    assert data[4:5000] == b"\0" * 4996
    print("sha256 rand.bin", hashlib.sha256(data).hexdigest())
    print("ok disk")
    t.close()


if __name__ == "__main__":
    main()
