#!/usr/bin/env python3
"""Measures a running fleetwire node from outside, as a browser sees it.

Opens one SSE stream (GET /v1/stream) for --seconds, and reports:
- SSE events/s received,
- record -> browser latency per event (receive time - the update's ingest_received_at)
  as p50/p95/p99/max,
- records accepted per second by ingest (from /metrics, before and after).

Standard library only; loopback only. Usage (the tokens `demo` prints):
  scripts/measure-demo.py --api http://127.0.0.1:8080 --admin http://127.0.0.1:9090 \
      --token <viewer token> --admin-token <admin token> --seconds 30
"""
import argparse
import datetime as dt
import http.client
import json
import sys
import time
import urllib.parse
import urllib.request


def accepted_total(admin, token):
    request = urllib.request.Request(f"{admin}/metrics", headers={"Authorization": f"Bearer {token}"})
    text = urllib.request.urlopen(request, timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith('fleetwire_ingest_records_total{result="accepted"}'):
            return float(line.split()[-1])
    return 0.0


def parse_ts(s):
    # Python's fromisoformat takes at most 6 fractional digits.
    s = s.replace("Z", "+00:00")
    if "." in s:
        head, rest = s.split(".", 1)
        frac, tz = rest[:rest.index("+")], rest[rest.index("+"):]
        s = f"{head}.{frac[:6]}{tz}"
    return dt.datetime.fromisoformat(s).timestamp()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", default="http://127.0.0.1:8080")
    ap.add_argument("--admin", default="http://127.0.0.1:9090")
    ap.add_argument("--token", required=True, help="a viewer token (demo prints one)")
    ap.add_argument("--admin-token", required=True, help="the admin listener's token")
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    url = urllib.parse.urlparse(args.api)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("measure-demo: loopback targets only")

    before, t0 = accepted_total(args.admin, args.admin_token), time.time()
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", "/v1/stream", headers={"Authorization": f"Bearer {args.token}"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    latencies, events, data, name = [], 0, None, None
    deadline = time.time() + args.seconds
    while time.time() < deadline:
        line = resp.fp.readline().decode().rstrip("\n")
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
        elif line == "" and data is not None and name != "vehicle":
            data, name = None, None  # fleet events and resets carry no ingest time
        elif line == "" and data is not None:
            now = time.time()
            update = json.loads(data)
            latencies.append((now - parse_ts(update["ingest_received_at"])) * 1000)
            events += 1
            data = None
    elapsed = time.time() - t0
    after = accepted_total(args.admin, args.admin_token)
    latencies.sort()

    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 1) if latencies else None

    print(json.dumps({
        "seconds": round(elapsed, 1),
        "ingest_records_per_sec": round((after - before) / elapsed, 1),
        "sse_events_per_sec": round(events / args.seconds, 1),
        "sse_latency_ms": {"p50": pct(50), "p95": pct(95), "p99": pct(99),
                            "max": round(latencies[-1], 1) if latencies else None},
        "events": events,
    }, indent=2))


if __name__ == "__main__":
    main()
