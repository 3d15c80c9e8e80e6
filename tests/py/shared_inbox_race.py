"""A shared inbox race on every door: `writer` (may create files, never replace them) starts an
upload, `peer` uploads the same name completely over HTTP, then writer finishes. Writer's upload
must fail with its door's error and the peer's file must stay as it is.

usage: shared_inbox_race.py HTTP_PORT SFTP_PORT FTP_PORT
"""
import base64
import ftplib
import socket
import sys

import paramiko
import requests


def peer_put(http_port, name):
    r = requests.put(
        f"http://127.0.0.1:{http_port}/v1/files/inbox/{name}",
        data=f"peer's {name.split('.')[0]} file".encode(),
        auth=("peer", "secret"),
        timeout=30,
    )
    assert r.status_code == 201, (r.status_code, r.text)


def http_race(port):
    # Raw HTTP/1.1 with Expect: 100-continue: the gateway answers 100 once it has opened the
    # upload and starts reading the body, so the peer's file lands strictly in between.
    auth = base64.b64encode(b"writer:secret").decode()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(
        (
            "PUT /v1/files/inbox/http.csv HTTP/1.1\r\nHost: gw\r\n"
            f"Authorization: Basic {auth}\r\nTransfer-Encoding: chunked\r\n"
            "Expect: 100-continue\r\n\r\n"
        ).encode()
    )
    head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 100"), head
    peer_put(port, "http.csv")
    s.sendall(b"d\r\nwriter's data\r\n0\r\n\r\n")
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(4096)
        if not chunk:
            break
        resp += chunk
    assert resp.startswith(b"HTTP/1.1 409"), resp
    s.close()


def sftp_race(port, http_port):
    t = paramiko.Transport(("127.0.0.1", port))
    t.connect(username="writer", password="secret")
    s = paramiko.SFTPClient.from_transport(t)
    f = s.open("/inbox/sftp.csv", "w")
    f.write(b"writer's data")
    f.flush()
    peer_put(http_port, "sftp.csv")
    # paramiko's SFTPFile.close() swallows the server's error status, so send CLOSE directly
    # (OpenSSH's sftp reports it as "Couldn't close file").
    f._closed = True
    try:
        s._request(paramiko.sftp.CMD_CLOSE, f.handle)
    except IOError:
        pass
    else:
        raise AssertionError("sftp: the writer's close succeeded over the peer's file")
    t.close()


def ftp_race(port, http_port):
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=30)
    ftp.login("writer", "secret")
    conn = ftp.transfercmd("STOR inbox/ftp.csv")
    conn.sendall(b"writer's data")
    peer_put(http_port, "ftp.csv")
    conn.close()
    try:
        ftp.voidresp()
    except ftplib.error_perm as e:
        assert str(e).startswith("550"), e
    else:
        raise AssertionError("ftp: the writer's STOR succeeded over the peer's file")
    ftp.quit()


def main():
    http_port, sftp_port, ftp_port = (int(x) for x in sys.argv[1:4])
    http_race(http_port)
    sftp_race(sftp_port, http_port)
    ftp_race(ftp_port, http_port)
    print("writer lost every race")


if __name__ == "__main__":
    main()
