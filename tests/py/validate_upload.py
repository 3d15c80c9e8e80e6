"""Uploads one local file with a stock client and prints one JSON line with what the client saw:
{"ok": bool, "error": "<the client's exception text>", "status": "<server message>"}.

  sftp: paramiko `put` (which confirms with a stat afterwards), then the same file again with
        open/write and an explicit CLOSE request, whose status message paramiko's own close()
        discards (it ignores close errors), so the test can read the gateway's detail.
  ftp:  ftplib `storbinary`; the error is the server's reply (553 ..., 552 ...).

usage: validate_upload.py sftp|ftp PORT USER PASSWORD LOCAL REMOTE
"""
import ftplib
import json
import sys

import paramiko


def sftp(port, user, password, local, remote):
    t = paramiko.Transport(("127.0.0.1", port))
    t.connect(username=user, password=password)
    s = paramiko.SFTPClient.from_transport(t)
    out = {"ok": True, "error": None, "status": None}
    try:
        s.put(local, remote)
    except (IOError, OSError) as e:
        out.update(ok=False, error=str(e))
    f = s.open(remote, "w")
    with open(local, "rb") as src:
        f.write(src.read())
    f.flush()
    f._closed = True
    try:
        s._request(paramiko.sftp.CMD_CLOSE, f.handle)
    except (IOError, OSError) as e:
        out["status"] = str(e)
    t.close()
    return out


def ftp(port, user, password, local, remote):
    c = ftplib.FTP()
    c.connect("127.0.0.1", port, timeout=60)
    c.login(user, password)
    out = {"ok": True, "error": None, "status": None}
    try:
        with open(local, "rb") as src:
            out["status"] = c.storbinary("STOR " + remote, src)
    except ftplib.Error as e:
        out.update(ok=False, error=str(e))
    except OSError as e:
        # The server stopped reading (a file over its size limit) and cut the data connection:
        # its reply is on the control connection, where curl and lftp read it too.
        out.update(ok=False, error="data connection: %s" % e)
        try:
            c.voidresp()
        except ftplib.Error as reply:
            out["error"] = str(reply)
    c.quit()
    return out


kind, port, user, password, local, remote = sys.argv[1:7]
print(json.dumps({"sftp": sftp, "ftp": ftp}[kind](int(port), user, password, local, remote)))
