"""Runs moto's S3 server on 127.0.0.1:PORT until the process that started us exits.

The test binary cannot reliably kill children when it is interrupted, so the server watches
its parent instead: when the parent goes away (we are re-parented), it stops.
"""
import os
import sys
import time

from moto.server import ThreadedMotoServer


def main() -> None:
    port = int(sys.argv[1])
    parent = os.getppid()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print("ready", flush=True)
    try:
        while os.getppid() == parent:
            time.sleep(0.5)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
