"""A webhook receiver for the events tests: verifies every delivery with the Standard Webhooks
reference verifier (PyPI `standardwebhooks`) and appends one JSON line per request to LOG:
{"id", "status", "verified", "type", "subject", "data", "received"}. Answers 204, or the
status written to the file MODE (e.g. "500"), read on every request, so a test can make it fail
and recover. Prints "ready" once listening.

usage: webhook_receiver.py PORT SECRET LOG MODE
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT, SECRET, LOG, MODE = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
HOOK = Webhook(SECRET)


def status():
    try:
        with open(MODE) as f:
            return int(f.read().strip() or "204")
    except (OSError, ValueError):
        return 204


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        code = status()
        row = {"id": self.headers.get("webhook-id"), "status": code, "received": time.time(),
               "content_type": self.headers.get("content-type")}
        try:
            ev = HOOK.verify(body, dict(self.headers.items()))
            row.update(verified=True, type=ev.get("type"), subject=ev.get("subject"),
                       specversion=ev.get("specversion"), ce_id=ev.get("id"), time=ev.get("time"),
                       data=ev.get("data"))
        except WebhookVerificationError as e:
            row.update(verified=False, error=str(e))
        with open(LOG, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.send_response(code)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()
