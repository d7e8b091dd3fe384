#!/usr/bin/env python3
"""Manifest-heavy mirror benchmark: many small requests (an image manifest, with containerd's Accept
header) through dfget's mirror against nginx as a reverse proxy to the same registry, and direct,
in one run. wrk, keep-alive connections, prints requests/s and p50/p99 latency.

    bash scripts/install-deps.sh --bench && swift build -c release && python3 bench/manifests.py
"""
import argparse, os, sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "Tests", "e2e"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib.daemon import Daemon  # noqa: E402
from common import nginx_reverse_proxy, parse_args, registry_with_image, workspace, wrk  # noqa: E402

ACCEPT_HEADER = ["Accept: application/vnd.oci.image.manifest.v1+json"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=8)
    a = parse_args(ap)
    with workspace("dfget-bench-manifests-") as (work, started):
        reg, layout, _, _ = registry_with_image(work, started, "bench/img", small=True)
        nginx, nport = nginx_reverse_proxy(work, reg.addr)
        started.append(nginx)
        d = Daemon(work, workers=2, proxy_yaml=f"registryMirror:\n  url: http://{reg.addr}\n")
        started.append(d.proc)
        # The access log is part of the daemon's work: keep it on, as users run it.
        path = "/v2/bench/img/manifests/1"
        cases = [("direct from docker-registry", f"http://{reg.addr}{path}"),
                 ("nginx reverse proxy", f"http://127.0.0.1:{nport}{path}"),
                 ("dfget mirror", f"{d.url}{path}")]
        res = {}
        for name, url in cases:
            wrk(url, a.conns, 1, headers=ACCEPT_HEADER)  # warm-up
            res[name] = wrk(url, a.conns, a.seconds, headers=ACCEPT_HEADER)
        ng = res["nginx reverse proxy"][0]
        print(f"\nManifest GETs (~700 B), wrk 2 threads x {a.conns} keep-alive connections, {a.seconds} s each\n")
        print(f"| {'path':<28} | {'req/s':>8} | {'vs nginx':>8} | {'p50 ms':>7} | {'p99 ms':>7} |")
        print(f"|{'-' * 30}|{'-' * 10}|{'-' * 10}|{'-' * 9}|{'-' * 9}|")
        for name, _ in cases:
            rps, p50, p99 = res[name]
            print(f"| {name:<28} | {rps:8.0f} | {rps / ng:8.2f} | {p50:7.2f} | {p99:7.2f} |")
        print("\ntarget: dfget mirror >= 1x nginx")


if __name__ == "__main__":
    main()
