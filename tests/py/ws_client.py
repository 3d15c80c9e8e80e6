"""WebSocket round trip through the gateway with websocket-client.

usage: ws_client.py URL API_KEY   (prints each echoed message)
"""
import sys

import websocket


def main():
    url, key = sys.argv[1], sys.argv[2]
    ws = websocket.create_connection(url, header=[f"X-Api-Key: {key}"], timeout=10)
    for msg in ["hello", "x" * 5000]:
        ws.send(msg)
        reply = ws.recv()
        assert reply.endswith(msg), reply[:50]
        print(reply[:20])
    ws.close()
    # Without the key the upgrade is refused.
    try:
        websocket.create_connection(url, timeout=10)
    except websocket.WebSocketBadStatusException as e:
        assert e.status_code == 401, e.status_code
    else:
        raise AssertionError("upgrade without credentials was accepted")
    print("ok")


if __name__ == "__main__":
    main()
