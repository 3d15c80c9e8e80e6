"""Holds one SFTP session open for the console browser test: logs in with paramiko, uploads
REMOTE slowly (CHUNKS x 64 KiB, PAUSE s apart, so the transfer is visible in flight), closes the
file, then stays connected until the server ends the session (an operator's "End session").

    hold_session.py PORT USER PASSWORD REMOTE [CHUNKS] [PAUSE]

Prints one line per step: "uploading", "uploaded", and "ended" when the server closed the
connection (exit 0); exits 1 if that does not happen within 120 s.
"""
import sys
import time

import paramiko


def main():
    port, user, password, remote = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    chunks = int(sys.argv[5]) if len(sys.argv) > 5 else 40
    pause = float(sys.argv[6]) if len(sys.argv) > 6 else 0.15
    t = paramiko.Transport(("127.0.0.1", port))
    t.connect(username=user, password=password)
    s = paramiko.SFTPClient.from_transport(t)
    print("uploading", flush=True)
    with s.open(remote, "wb") as f:
        for _ in range(chunks):
            f.write(b"g" * 65536)
            f.flush()
            time.sleep(pause)
    print("uploaded", flush=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            s.stat(".")
        except (OSError, EOFError, paramiko.SSHException):
            print("ended", flush=True)
            return 0
        if not t.is_active():
            print("ended", flush=True)
            return 0
        time.sleep(0.2)
    print("still connected after 120 s", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
