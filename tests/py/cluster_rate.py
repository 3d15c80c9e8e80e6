"""Sends GET requests, each on a new connection (so a TCP load balancer spreads them over its
nodes), from one source address for a fixed time, and prints one JSON line with the status
counts and the time from the first request to the last answer.

usage: cluster_rate.py SOURCE PORT PATH SECONDS
"""
import http.client
import json
import sys
import time
from collections import Counter

source, port, path, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
codes = Counter()
first = time.monotonic()
last = first
admitted_times = []
while time.monotonic() - first < seconds:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        c.request("GET", path, headers={"Cache-Control": "no-cache", "Connection": "close"})
        r = c.getresponse()
        r.read()
        codes[r.status] += 1
        last = time.monotonic()
        if r.status == 200:
            admitted_times.append(last - first)
    except Exception as e:  # a failure is reported, not hidden: the test asserts on it
        codes["error:" + type(e).__name__] += 1
    finally:
        c.close()
print(json.dumps({"codes": codes, "elapsed": last - first}))
