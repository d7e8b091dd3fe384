#!/usr/bin/env python3
"""Pass-through benchmark: a 200 MiB blob through dfget's forward proxy, mirror and a CONNECT tunnel
(splice, and through the loop), against a direct download from docker-registry and against nginx
as a reverse proxy, in one run. Prints a table of
throughput (median of N runs), ratios, and the peak RSS of dfget's workers during the transfers.

    bash scripts/install-deps.sh --bench && swift build -c release && python3 bench/passthrough.py [--runs 5]
"""
import argparse, os, statistics, sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "Tests", "e2e"))
from lib.daemon import Daemon  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PeakRSS, curl_w, nginx_reverse_proxy, parse_args, registry_with_image, workspace  # noqa: E402


def curl_speed(args):
    out = curl_w("%{speed_download} %{size_download}", *args).split()
    return float(out[0]), int(out[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = parse_args(ap)
    with workspace("dfget-bench-") as (work, started):
        reg, layout, blobs, size = registry_with_image(work, started, "bench/big")
        blob = blobs[0]
        nginx, nport = nginx_reverse_proxy(work, reg.addr)
        started.append(nginx)
        # Pass-through: the cache is bypassed (`direct`), as it is for everything the rules do not send there.
        d = Daemon(work, workers=2, proxy_yaml=f"registryMirror:\n  url: http://{reg.addr}\n  direct: true\n"
                                               "proxies:\n  - regx: blobs/sha256.*\n    direct: true\n")
        started.append(d.proc)
        # CONNECT tunnels relayed through the loop, for comparison with splice (the default).
        loop = Daemon(work, workers=2, name="tunnel-loop", env={"DFGET_NO_SPLICE": "1"})
        started.append(loop.proc)
        path = f"/v2/bench/big/blobs/{blob}"
        cases = [
            ("direct from docker-registry", [f"http://{reg.addr}{path}"]),
            ("nginx reverse proxy", [f"http://127.0.0.1:{nport}{path}"]),
            ("dfget forward proxy", ["-x", d.url, f"http://{reg.addr}{path}"]),
            ("dfget mirror", [f"{d.url}{path}"]),
            ("dfget CONNECT, splice", ["-p", "-x", d.url, f"http://{reg.addr}{path}"]),
            ("dfget CONNECT, loop", ["-p", "-x", loop.url, f"http://{reg.addr}{path}"]),
        ]
        results = {}
        for name, args in cases:
            curl_speed(args)  # warm-up (page cache, pools)
        with PeakRSS(d.workers()) as rss:
            # Interleave the cases run by run so that drift on the machine hits all of them alike.
            for _ in range(a.runs):
                for name, args in cases:
                    speed, n = curl_speed(args)
                    assert n == size, f"{name}: got {n} bytes, want {size}"
                    results.setdefault(name, []).append(speed)
        med = {k: statistics.median(v) for k, v in results.items()}
        direct, nginx_s = med["direct from docker-registry"], med["nginx reverse proxy"]
        print(f"\n200 MiB blob ({size} bytes), median of {a.runs} runs, curl -o /dev/null, 2 dfget workers\n")
        print(f"| {'path':<28} | {'MB/s':>8} | {'vs direct':>9} | {'vs nginx':>8} |")
        print(f"|{'-' * 30}|{'-' * 10}|{'-' * 11}|{'-' * 10}|")
        for name, _ in cases:
            print(f"| {name:<28} | {med[name] / 1e6:8.0f} | {med[name] / direct:9.2f} | {med[name] / nginx_s:8.2f} |")
        print(f"\npeak dfget worker RSS during the transfers: {rss.mib:.1f} MiB (target < 64 MiB)")
        print("target: pass-through >= 0.8x direct (a blob is verified on its way: sha256-bound, see README)")


if __name__ == "__main__":
    main()
