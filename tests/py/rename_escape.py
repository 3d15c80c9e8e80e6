"""Directory renames that would carry files out from under (or into) a stricter rule, over SFTP
(paramiko) and FTP (ftplib), as user lee/secret: each must be refused with the door's own error.

usage: rename_escape.py SFTP_PORT FTP_PORT
"""
import ftplib
import sys

import paramiko


def main():
    sftp_port, ftp_port = int(sys.argv[1]), int(sys.argv[2])
    t = paramiko.Transport(("127.0.0.1", sftp_port))
    t.connect(username="lee", password="secret")
    sftp = paramiko.SFTPClient.from_transport(t)
    for src, dst in [("/projects", "/p2"), ("/stage", "/drop")]:
        for how in (sftp.rename, sftp.posix_rename):
            try:
                how(src, dst)
            except PermissionError:
                continue
            raise AssertionError(f"sftp {how.__name__} {src} -> {dst} was allowed")
    t.close()

    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", ftp_port, timeout=30)
    ftp.login("lee", "secret")
    for src, dst in [("projects", "p2"), ("stage", "drop")]:
        try:
            ftp.rename(src, dst)
        except ftplib.error_perm as e:
            assert str(e).startswith("550"), e
            continue
        raise AssertionError(f"ftp rename {src} -> {dst} was allowed")
    ftp.quit()
    print("all refused")


if __name__ == "__main__":
    main()
