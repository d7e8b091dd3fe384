#!/usr/bin/env python3
"""Piece-cache benchmark, in one run: a cached 200 MiB blob to curl against nginx sendfile of the same
file; 8 concurrent misses (origin bytes, total time against one direct download); time to first
byte of a hit; peak worker RSS.

    bash scripts/install-deps.sh --bench && swift build -c release && python3 bench/cache.py
"""
import argparse, os, shutil, statistics, subprocess, sys, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "Tests", "e2e"))
from lib import procs, registry as reglib  # noqa: E402
from lib.daemon import Daemon  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PeakRSS, curl_w, nginx_static, parse_args, registry_with_image, workspace  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = parse_args(ap)
    with workspace("dfget-bench-cache-") as (work, started):
        reg, layout, blobs, size = registry_with_image(work, started, "bench/big")
        blob = blobs[0]
        www = os.path.join(work, "www")
        os.makedirs(www)
        shutil.copy(reglib.blob_path(layout, blob), os.path.join(www, "big.bin"))
        ng, nport = nginx_static(work, www)
        started.append(ng)
        d = Daemon(work, workers=2, proxy_yaml=f"registryMirror:\n  url: http://{reg.addr}\n")
        started.append(d.proc)
        rss = PeakRSS(d.workers()).__enter__()
        url = f"{d.url}/v2/bench/big/blobs/{blob}"
        direct = f"http://{reg.addr}/v2/bench/big/blobs/{blob}"
        # 8 concurrent misses.
        before = reglib.origin_bytes(reg.log(), blob)
        t0 = time.monotonic()
        ps = [subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", url], stdout=subprocess.PIPE, text=True)
              for _ in range(8)]
        sizes = [int(p.communicate()[0]) for p in ps]
        miss_time = time.monotonic() - t0
        assert sizes == [size] * 8, sizes
        origin = procs.wait_until(lambda: reglib.origin_bytes(reg.log(), blob) - before or None, what="registry log")
        t0 = time.monotonic()
        curl_w("%{size_download}", direct)
        direct_time = time.monotonic() - t0
        t0 = time.monotonic()
        ps = [subprocess.Popen(["curl", "-sS", "-o", "/dev/null", direct]) for _ in range(8)]
        [p.wait() for p in ps]
        direct8_time = time.monotonic() - t0
        download_ms = [l["costMs"] for l in d.log_lines() if l["msg"] == "task downloaded"][0]
        # Hits against nginx sendfile, interleaved.
        hits, nginx = [], []
        for _ in range(a.runs):
            hits.append(float(curl_w("%{speed_download}", url)))
            nginx.append(float(curl_w("%{speed_download}", f"http://127.0.0.1:{nport}/big.bin")))
        ttfb = statistics.median(float(curl_w("%{time_starttransfer}", url)) for _ in range(5))
        rss.__exit__()
        h, n = statistics.median(hits), statistics.median(nginx)
        print(f"\nPiece cache, 200 MiB blob ({size} bytes), 2 dfget workers, median of {a.runs}\n")
        print("| measure                                   | value        | reference             |")
        print("|-------------------------------------------|--------------|-----------------------|")
        print(f"| cached blob to curl (dfget)               | {h / 1e6:7.0f} MB/s | nginx sendfile {n / 1e6:5.0f} MB/s ({h / n:.2f}x) |")
        print(f"| 8 concurrent misses: bytes from origin    | {origin / size:7.2f} x    | 1 = one download      |")
        print(f"| 8 concurrent misses: total time           | {miss_time:7.2f} s    | one direct download {direct_time:.2f} s ({miss_time / direct_time:.2f}x); 8 concurrent direct {direct8_time:.2f} s ({miss_time / direct8_time:.2f}x) |")
        print(f"| 8 concurrent misses: the origin download  | {download_ms / 1000:7.2f} s    | (all 8 clients served from its pieces) |")
        print(f"| time to first byte of a hit               | {ttfb * 1000:7.2f} ms   |                       |")
        print(f"| peak worker RSS                           | {rss.mib:7.1f} MiB  |                       |")


if __name__ == "__main__":
    main()
