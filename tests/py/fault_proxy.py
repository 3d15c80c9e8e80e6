"""A TCP proxy in front of an S3-compatible server that can fail on demand, for the fault tests.
Modes, set by a line on the control port ("MODE [N]\n", answered "ok\n"):

  pass        forward everything (default)
  down        refuse: cut every open connection, close new ones at once
  fail N      cut every open connection; answer the next N new connections (default: all)
              with "HTTP/1.1 503 Slow Down", then pass again
  stall       cut every open connection; accept new ones and never answer

usage: fault_proxy.py LISTEN_PORT CONTROL_PORT TARGET_PORT
"""
import socket
import sys
import threading

STATE = {"mode": "pass", "left": None}
LOCK = threading.Lock()
OPEN = set()


def cut_all():
    with LOCK:
        conns = list(OPEN)
        OPEN.clear()
    for c in conns:
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        c.close()


def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(client, target_port):
    with LOCK:
        mode = STATE["mode"]
        if mode == "fail" and STATE["left"] is not None:
            STATE["left"] -= 1
            if STATE["left"] < 0:
                STATE["mode"], STATE["left"] = "pass", None
                mode = "pass"
    if mode == "down":
        client.close()
        return
    if mode == "stall":
        with LOCK:
            OPEN.add(client)
        return
    if mode == "fail":
        try:
            client.settimeout(10)
            client.recv(65536)
            body = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
            client.sendall(
                b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
        except OSError:
            pass
        client.close()
        return
    try:
        upstream = socket.create_connection(("127.0.0.1", target_port), timeout=10)
        upstream.settimeout(None)
    except OSError:
        client.close()
        return
    with LOCK:
        OPEN.add(client)
        OPEN.add(upstream)
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()


def control(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    while True:
        c, _ = srv.accept()
        line = c.makefile().readline().split()
        mode = line[0] if line else "pass"
        left = int(line[1]) if len(line) > 1 else None
        if mode in ("down", "fail", "stall"):
            cut_all()
        with LOCK:
            STATE["mode"], STATE["left"] = mode, left
        c.sendall(b"ok\n")
        c.close()


def main():
    listen_port, control_port, target_port = (int(x) for x in sys.argv[1:4])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port))
    srv.listen(128)
    threading.Thread(target=control, args=(control_port,), daemon=True).start()
    print("ready", flush=True)
    import os

    parent = os.getppid()

    def watch():
        import time

        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c, target_port), daemon=True).start()


if __name__ == "__main__":
    main()
