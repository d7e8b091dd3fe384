#!/usr/bin/env python3
"""Small cached objects: a cached config blob (well under 1 KiB) through dfget's mirror against
nginx proxy_cache serving the same object from its cache, in one run. wrk, 50 keep-alive
connections; prints requests/s and p50/p99 latency, and the log bytes dfget wrote per request.

    bash scripts/install-deps.sh --bench && swift build -c release && python3 bench/hits.py
"""
import argparse, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import nginx_proxy_cache, parse_args, registry_with_image, workspace, wrk  # noqa: E402
from lib import registry as reglib  # noqa: E402
from lib.daemon import Daemon  # noqa: E402


def measure(work, started, conns=50, seconds=8):
    """{name: (req/s, p50 ms, p99 ms)} for the smallest blob of the small image, plus its size and
    dfget's log bytes per request."""
    reg, layout, blobs, _ = registry_with_image(work, started, "bench/small", small=True)
    blob = min(blobs, key=lambda b: os.path.getsize(reglib.blob_path(layout, b)))
    size = os.path.getsize(reglib.blob_path(layout, blob))
    ng, nport = nginx_proxy_cache(work, reg.addr)
    started.append(ng)
    d = Daemon(work, workers=2, proxy_yaml=f"registryMirror:\n  url: http://{reg.addr}\n")
    started.append(d.proc)
    path = f"/v2/bench/small/blobs/{blob}"
    cases = {"nginx proxy_cache hit": f"http://127.0.0.1:{nport}{path}", "dfget hit": f"{d.url}{path}"}
    res = {}
    log = os.path.join(d.logdir, "daemon", "core.log")
    for name, url in cases.items():
        wrk(url, conns, 1)  # fills the cache, warms up
        before = os.path.getsize(log)
        res[name] = wrk(url, conns, seconds)
        if name.startswith("dfget"):
            grown = os.path.getsize(log) - before
    requests = res["dfget hit"][0] * seconds
    return res, size, grown / max(1, requests)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=8)
    a = parse_args(ap)
    with workspace("dfget-bench-hits-") as (work, started):
        res, size, log_per_req = measure(work, started, a.conns, a.seconds)
        ng = res["nginx proxy_cache hit"][0]
        print(f"\nA cached {size}-byte blob, wrk 2 threads x {a.conns} keep-alive connections, {a.seconds} s each\n")
        print(f"| {'server':<24} | {'req/s':>8} | {'vs nginx':>8} | {'p50 ms':>7} | {'p99 ms':>7} |")
        print(f"|{'-' * 26}|{'-' * 10}|{'-' * 10}|{'-' * 9}|{'-' * 9}|")
        for name, (rps, p50, p99) in res.items():
            print(f"| {name:<24} | {rps:8.0f} | {rps / ng:8.2f} | {p50:7.2f} | {p99:7.2f} |")
        print(f"\ndfget log: {log_per_req:.0f} bytes per request; target: dfget >= 1x nginx proxy_cache")


if __name__ == "__main__":
    main()
