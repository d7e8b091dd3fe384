"""Peer exchange at cluster scale (a benchmark, not a test): 8 hosts in network namespaces, every
link capped by tbf at 200 mbit, pull one uncached 200 MiB layer at once, with and without `peers`.
Prints origin egress (x the layer, counted on the registry's interface), p50/p99 completion and
fan-out efficiency = (layer / link rate) / p50. Needs root; everything stays in its namespaces."""
import hashlib, os, statistics, sys, tempfile, threading

sys.path.insert(0, os.path.dirname(__file__))
from common import ROOT, registry_with_image  # noqa: E402
from lib.cluster import Cluster  # noqa: E402
from lib.netns import Star  # noqa: E402

HOSTS = int(os.environ.get("HOSTS", "8"))
RATE_MBIT = int(os.environ.get("RATE_MBIT", "200"))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def run(mode, reg, blob, size, work):
    star = Star(hosts=HOSTS, rate=f"{RATE_MBIT}mbit")
    cluster = None
    try:
        cluster = Cluster(star, reg.dir, os.path.join(work, mode), peers=(mode == "peers"))
        before = star.tx_bytes(star.origin)
        done, times = {}, {}

        def one(h):
            rc, n, total = cluster.pull_timed(h, blob)
            done[h] = (rc, n)
            times[h] = total

        threads = [threading.Thread(target=one, args=(h,)) for h in star.hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Every client got every byte, and every host's cached copy is the blob (each host verified
        # its sha256 before completing; this checks the file again).
        bad = [h for h, v in done.items() if v != (0, size) or sha256_file(cluster.data_file(h, blob)) != blob]
        egress = (star.tx_bytes(star.origin) - before) / size
        ts = sorted(times.values())
        p50 = statistics.median(ts)
        p99 = ts[-1] if len(ts) < 100 else ts[int(len(ts) * 0.99)]
        ideal = size * 8 / (RATE_MBIT * 1e6)
        return {"mode": mode, "egress": egress, "p50": p50, "p99": p99, "eff": ideal / p50, "ideal": ideal, "bad": bad}
    finally:
        if cluster:
            cluster.stop()
        star.down()


def main():
    os.makedirs(os.path.join(ROOT, ".build"), exist_ok=True)
    keep = os.environ.get("KEEP") == "1"
    with (tempfile.TemporaryDirectory(prefix="dfget-bench-peers-") if not keep else open(os.devnull)) as tmp:
        work = tmp if not keep else tempfile.mkdtemp(prefix="dfget-bench-peers-")
        started = []
        try:
            reg, layout, blobs, size = registry_with_image(work, started, "test/big")
            rows = [run(mode, reg, blobs[0], size, work) for mode in os.environ.get("MODES", "alone,peers").split(",")]
        finally:
            for p in started:
                p.stop()
    print(f"\n{HOSTS} hosts pull one {size / 2**20:.0f} MiB layer at once, links {RATE_MBIT} mbit (ideal {rows[0]['ideal']:.1f} s)")
    print("| mode | origin egress (x layer) | p50 s | p99 s | fan-out efficiency | failed |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['egress']:.2f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['eff']:.2f} | {len(r['bad'])} |")


if __name__ == "__main__":
    main()
