"""Starts a PUT that promises 10 MiB, sends 1 MiB, then drops the connection.

usage: http_abort.py PORT PATH USER:PASSWORD
"""
import base64
import socket
import sys
import time


def main() -> None:
    port, path, creds = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    auth = base64.b64encode(creds.encode()).decode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
    )
    s.sendall(head.encode())
    chunk = b"x" * 65536
    for _ in range(16):
        s.sendall(chunk)
    time.sleep(0.3)
    s.close()


if __name__ == "__main__":
    main()
