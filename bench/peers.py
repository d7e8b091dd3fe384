#!/usr/bin/env python3
"""Peer exchange at cluster scale (a benchmark, not a test): N hosts in network namespaces on one
bridge, every link capped by tbf, all pull one uncached layer at once through their own mirror,
with and without `peers`. Prints failed pulls, origin egress (x the layer, counted on the
registry's interface), p50/p99 completion, fan-out efficiency = (layer / link rate) / p50, and the
peak RSS of any worker (the owner's among them). Needs root; everything stays in its namespaces.

    bench/peers.py [--hosts 8] [--rate 200] [--size 200] [--workers 2] [--modes alone,peers] [--sim]
                   [--kill-seed-at F] [--slow-hosts K --slow-mbit M]

Faults: `--kill-seed-at 0.3` SIGKILLs the task's owner once it holds 30% of the layer (its own
pull is left out of the figures); `--slow-hosts K --slow-mbit M` caps K members other than the
owner at M mbit both ways, and the p50 of the others is printed beside the slow ones'. More than
99 hosts go on a /16.
"""
import argparse, hashlib, json, os, signal, statistics, subprocess, sys, tempfile, threading

sys.path.insert(0, os.path.dirname(__file__))
from common import ROOT, PeakRSS, children, cpu_seconds, parse_args, registry_with_image  # noqa: E402
from lib import procs  # noqa: E402
from lib.cluster import Cluster  # noqa: E402
from lib.netns import Star  # noqa: E402


def machine_cpu():
    """(busy, total) jiffies of all cores so far, from /proc/stat."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


def simulate(a, size):
    """The simulator (bench/swarm-sim, the daemon's own decisions over a modelled network) with the
    same hosts, layer, links and workers: its p50 and origin copies beside the real run's."""
    sim = os.path.join(ROOT, ".build", "release", "swarm-sim")
    faults = (["--kill-seed-at", str(a.kill_seed_at)] if a.kill_seed_at else []) + \
        (["--slow-hosts", str(a.slow_hosts), "--slow-mbit", str(a.slow_mbit)] if a.slow_hosts else [])
    out = subprocess.run([sim, "--hosts", str(a.hosts), "--size", str(size), "--link-mbit", str(a.rate), "--workers", str(a.workers), "--json"] + faults,
                         capture_output=True, text=True, check=False)
    return json.loads(out.stdout) if out.stdout.strip() else None


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def run(a, mode, reg, blob, size, work):
    star = Star(hosts=a.hosts, rate=f"{a.rate}mbit")
    cluster = None
    try:
        cluster = Cluster(star, reg.dir, os.path.join(work, mode), peers=(mode == "peers"), workers=a.workers)
        for p, _ in cluster.daemons.values():
            procs.wait_until(lambda: len(children(p.pid)) >= a.workers, what=f"{a.workers} workers of {p.name}")
        workers = [w for p, _ in cluster.daemons.values() for w in children(p.pid)]
        owner = cluster.owner_of(blob[7:])
        owner_workers = children(cluster.daemons[owner][0].pid)
        slow = [h for h in reversed(star.hosts) if h != owner][:a.slow_hosts] if mode == "peers" else []
        for h in slow:
            star.set_rate(h, f"{a.slow_mbit}mbit")
        killed = []
        before = star.tx_bytes(star.origin)
        done, times = {}, {}

        def one(h):
            rc, n, total = cluster.pull_timed(h, blob)
            done[h] = (rc, n)
            times[h] = total

        threads = [threading.Thread(target=one, args=(h,)) for h in star.hosts]

        def kill_seed():
            procs.wait_until(lambda: cluster.holds(owner, blob, a.kill_seed_at * size), timeout=600,
                             what="the owner mid-download", interval=0.005)
            os.killpg(cluster.daemons[owner][0].pid, signal.SIGKILL)
            killed.append(owner)

        if a.kill_seed_at and mode == "peers":
            threads.append(threading.Thread(target=kill_seed))
        cpu0, daemons0 = machine_cpu(), cpu_seconds(workers)
        # 48 hosts sampled every 10 ms took a tenth of the machine's CPU from the run it measured.
        with PeakRSS(workers, interval=0.01 * max(1, len(workers) // 4)) as rss:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        cpu1, daemons1 = machine_cpu(), cpu_seconds(workers)
        busy = (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1])
        # Every client got every byte, and every host's cached copy is the blob (each host verified
        # its sha256 before completing; this checks the file again).
        bad = [h for h, v in done.items() if h not in killed and (v != (0, size) or sha256_file(cluster.data_file(h, blob)) != blob)]
        egress = (star.tx_bytes(star.origin) - before) / size
        ts = sorted(times[h] for h in star.hosts if h not in bad and h not in killed and h not in slow) or [float("nan")]
        slow_ts = sorted(times[h] for h in slow if h not in bad)
        p50 = statistics.median(ts)
        p99 = ts[-1] if len(ts) < 100 else ts[int(len(ts) * 0.99)]
        ideal = size * 8 / (a.rate * 1e6)
        return {"mode": mode, "egress": egress, "p50": p50, "p99": p99, "eff": ideal / p50, "ideal": ideal, "bad": bad,
                "slow": slow, "slow_p50": statistics.median(slow_ts) if slow_ts else None, "killed": killed,
                "rss": rss.mib, "cpu": busy, "daemon_cpu": daemons1 - daemons0, "owner_rss": max(rss.peak_by_pid[w] for w in owner_workers) / 1024, "anon": rss.anon / 1024}
    finally:
        if cluster:
            cluster.stop()
        star.down()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=int(os.environ.get("HOSTS", "8")))
    ap.add_argument("--rate", type=int, default=int(os.environ.get("RATE_MBIT", "200")), help="every link's cap, mbit")
    ap.add_argument("--size", type=int, default=200, help="the layer, MiB")
    ap.add_argument("--workers", type=int, default=2, help="workers per daemon")
    ap.add_argument("--modes", default=os.environ.get("MODES", "alone,peers"))
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs) afterwards")
    ap.add_argument("--kill-seed-at", type=float, default=0, help="SIGKILL the owner once it holds this fraction of the layer")
    ap.add_argument("--slow-hosts", type=int, default=0, help="members (not the owner) capped at --slow-mbit")
    ap.add_argument("--slow-mbit", type=int, default=10)
    ap.add_argument("--sim", action="store_true", help="also run bench/swarm-sim with the same parameters (swift build -c release first)")
    a = parse_args(ap)
    os.makedirs(os.path.join(ROOT, ".build"), exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix="dfget-bench-peers-") if not a.keep else open(os.devnull)) as tmp:
        work = tmp if not a.keep else tempfile.mkdtemp(prefix="dfget-bench-peers-")
        started = []
        try:
            reg, layout, blobs, size = registry_with_image(work, started, "test/big", mib=a.size)
            rows = [run(a, mode, reg, blobs[0], size, work) for mode in a.modes.split(",")]
        finally:
            for p in started:
                p.stop()
        if a.keep:
            print(f"work dir kept: {work}")
    print(f"\n{a.hosts} hosts pull one {size / 2**20:.0f} MiB layer at once, links {a.rate} mbit, "
          f"{a.workers} workers each (ideal {rows[0]['ideal']:.1f} s)")
    print("| mode | failed pulls | origin egress (x layer) | p50 s | p99 s | fan-out efficiency | peak worker RSS MiB: owner / any (anon) | CPU busy (all cores) | daemons' CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {len(r['bad'])} | {r['egress']:.2f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['eff']:.2f} | "
              f"{r['owner_rss']:.0f} / {r['rss']:.0f} ({r['anon']:.0f}) | {r['cpu'] * 100:.0f}% | {r['daemon_cpu']:.1f} |")
    for r in rows:
        if r["killed"]:
            print(f"{r['mode']}: the owner was killed at {a.kill_seed_at:.0%} of the layer; figures are the other {a.hosts - 1} hosts'")
        if r["slow"]:
            print(f"{r['mode']}: {len(r['slow'])} hosts at {a.slow_mbit} mbit (p50 {r['slow_p50'] or float('nan'):.1f} s); "
                  f"p50 and p99 above are the other {a.hosts - len(r['slow'])} hosts'")
    if a.sim and (s := simulate(a, size)):
        print(f"| simulated (bench/swarm-sim) | {s['failed']} | {s['origin_copies']:.2f} | {s['p50_s']:.1f} | {s['p99_s']:.1f} | "
              f"{s['ideal_s'] / s['p50_s']:.2f} | | | |")


if __name__ == "__main__":
    main()
