"""SSH/SFTP sessions as a hostile (or just greedy) client would open them, for the session caps.

usage: hostile_sftp.py PORT USER PASSWORD channels N
         one SSH connection, N SFTP sessions on it; prints "opened K of N"
       hostile_sftp.py PORT USER PASSWORD logins N [--ftp FTP_PORT]
         N SSH connections logged in at once; prints "sftp K ok, R refused"; with --ftp, an FTP
         login while they are open, then one connection closed and a login tried again
"""
import ftplib
import socket
import sys

import paramiko


def transport(port, user, password):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    t = paramiko.Transport(sock)
    t.banner_timeout = 30
    t.connect(username=user, password=password)
    return t


def main():
    port, user, password, mode, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    args = sys.argv[6:]
    if mode == "channels":
        t = transport(port, user, password)
        opened = []
        for _ in range(n):
            try:
                c = paramiko.SFTPClient.from_transport(t)
                c.listdir(".")
                opened.append(c)
            except Exception:
                pass
        print(f"opened {len(opened)} of {n}")
        t.close()
        return
    if mode == "logins":
        held, refused = [], 0
        for _ in range(n):
            try:
                held.append(transport(port, user, password))
            except paramiko.AuthenticationException:
                refused += 1
        print(f"sftp {len(held)} ok, {refused} refused")
        if "--ftp" in args:
            fport = int(args[args.index("--ftp") + 1])
            ftp = ftplib.FTP()
            ftp.connect("127.0.0.1", fport, timeout=30)
            try:
                ftp.login(user, password)
                print("ftp logged in while", len(held), "open")
            except ftplib.error_perm:
                print("ftp refused while", len(held), "open")
            ftp.close()
        held.pop().close()
        # The slot frees when the server sees the connection end.
        import time
        for _ in range(50):
            try:
                held.append(transport(port, user, password))
                print("after close: ok")
                break
            except paramiko.AuthenticationException:
                time.sleep(0.1)
        else:
            print("after close: still refused")
        for t in held:
            t.close()
        return
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
