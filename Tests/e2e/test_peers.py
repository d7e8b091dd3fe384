"""Peer exchange on one machine: several daemons on 127.0.0.1, each its own member of the cluster.
A blob leaves the registry once for all of them, every copy is byte-exact, and the peer port
serves nobody without the shared secret."""
import hashlib, json, os, subprocess, threading
import pytest
from lib import procs, registry as reglib
from lib.client import curl, sha
from lib.containerd import Containerd

SECRET = "e2e-peer-secret-0123456789abcdef\n"


@pytest.fixture
def cluster(daemon_factory, registry, tmp_path):
    def make(n, workers=1, upload_yaml="", extra_yaml="", host_yaml=lambda i: ""):
        key = tmp_path / "peers.key"
        key.write_text(SECRET)
        ports = [procs.free_port() for _ in range(n)]
        members = ", ".join(f'"127.0.0.1:{p}"' for p in ports)
        return [daemon_factory(name=f"peer{i}", workers=workers, peer_port=port, upload_yaml=upload_yaml,
                               extra_yaml=extra_yaml + host_yaml(i) + f"peers:\n  members: [{members}]\n  secretFile: {key}\n",
                               proxy_yaml=f"registryMirror:\n  dynamic: true\n  url: http://{registry.addr}\n")
                for i, port in enumerate(ports)]
    return make


def big(images):
    layout, _, blobs = images["big"]
    return blobs[0], os.path.getsize(reglib.blob_path(layout, blobs[0]))


def test_concurrent_pulls_cost_the_registry_one_copy(cluster, registry, images):
    hosts = cluster(3)
    blob, size = big(images)
    before = reglib.origin_bytes(registry.log(), blob)
    results = {}

    def pull(d):
        r = subprocess.run(["curl", "-sS", "-o", "-", f"{d.url}/v2/test/big/blobs/{blob}"], capture_output=True, timeout=300)
        results[d.name] = (r.returncode, sha(r.stdout), len(r.stdout))

    threads = [threading.Thread(target=pull, args=(d,)) for d in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(v == (0, blob, size) for v in results.values()), results
    procs.wait_until(lambda: reglib.origin_bytes(registry.log(), blob) - before >= size, timeout=10, what="registry log")
    assert reglib.origin_bytes(registry.log(), blob) - before == size, "the registry served the blob once for the cluster"
    from_peers = [l for d in hosts for l in d.log_lines() if l.get("msg") == "task downloaded" and l.get("source") == "peers"]
    assert len(from_peers) == 2, from_peers
    assert all(l["bytes"] == size and l["fromPeers"] for l in from_peers)
    # A late request on any host costs the registry nothing.
    for d in hosts:
        assert sha(curl(f"{d.url}/v2/test/big/blobs/{blob}").stdout) == blob
    assert reglib.origin_bytes(registry.log(), blob) - before == size


def test_the_peer_port_needs_the_token(cluster, images):
    hosts = cluster(2)
    blob = images["small"][2][0][7:]
    for path in ["/healthy", f"/peer/v1/tasks/{blob}", f"/peer/v1/tasks/{blob}/pieces/0", "/anything"]:
        r = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{hosts[0].peer_port}{path}", check=False)
        assert r.stdout == b"401", (path, r.stdout)
    r = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Dfget-Peer-Token: 1.00",
             f"http://127.0.0.1:{hosts[0].peer_port}/peer/v1/tasks/{blob}", check=False)
    assert r.stdout == b"401"


def owner(task, hosts):
    return max(hosts, key=lambda d: int.from_bytes(hashlib.sha256(f"{task}|127.0.0.1:{d.peer_port}".encode()).digest()[:8], "big"))


def test_ctr_pull_through_a_hosts_mirror_served_by_its_peers(cluster, registry, images, workdir, etc_hosts):
    hosts = cluster(2)
    _, _, blobs = images["small"]
    # b is the host that owns the fewest layers: the other owns at least two of the three.
    b = min(hosts, key=lambda d: sum(owner(blob[7:], hosts) is d for blob in blobs))
    a = next(d for d in hosts if d is not b)
    for blob in blobs:  # host a has every layer
        assert sha(curl(f"{a.url}/v2/test/img/blobs/{blob}").stdout) == blob
    before = {blob: reglib.origin_bytes(registry.log(), blob) for blob in blobs}
    c = Containerd(workdir)
    try:
        host = c.mirror_with_dead_origin(b.url, f"http://{registry.addr}")
        c.ctr("image", "pull", "--hosts-dir", c.hosts_dir, f"{host}/test/img:1")
    finally:
        c.stop()
    from_peers = {l["taskId"] for l in b.log_lines() if l.get("msg") == "task downloaded" and l.get("source") == "peers"}
    for blob in blobs:
        if owner(blob[7:], [a, b]) is a:
            assert blob[7:] in from_peers, f"{blob} came from the peer that owns it"
            assert reglib.origin_bytes(registry.log(), blob) == before[blob], f"{blob} did not leave the registry again"
    assert from_peers, "at least one layer came from the peers"


@pytest.mark.parametrize("limit", ["upload.rateLimit", "download.perPeerRateLimit"])
def test_peer_rate_limits_slow_the_transfer_and_never_fail_it(cluster, images, limit):
    hosts = (cluster(2, upload_yaml="rateLimit: 32Mi\n") if limit == "upload.rateLimit"
             else cluster(2, extra_yaml="download:\n  perPeerRateLimit: 32Mi\n"))
    blob, size = big(images)
    first = owner(blob[7:], hosts)
    second = next(d for d in hosts if d is not first)
    assert sha(curl(f"{first.url}/v2/test/big/blobs/{blob}").stdout) == blob
    import time
    t0 = time.monotonic()
    assert sha(curl(f"{second.url}/v2/test/big/blobs/{blob}").stdout) == blob
    took = time.monotonic() - t0
    # 200 MiB at 32 MiB/s from the only holder: at least 6 s, twice what it takes unlimited here
    # (a lower bound: no load can break it).
    assert took >= (size - (4 << 20)) / (32 << 20) * 0.95, f"{took:.2f} s"
    assert any(l.get("msg") == "task downloaded" and l.get("source") == "peers" for l in second.log_lines())


def test_a_busy_uploader_says_503_and_the_member_asks_again(cluster, images):
    """Admission on the peer port: past `upload.concurrentLimit` a piece request gets 503 with
    Retry-After, which the asking host takes as "ask another source (or this one later)", not as
    a failure: the pull completes from the peers, byte-exact."""
    # The rate limit keeps each upload going long enough that the next requests find the slot taken.
    hosts = cluster(2, upload_yaml="concurrentLimit: 1\nrateLimit: 100Mi\n")
    blob, size = big(images)
    first = owner(blob[7:], hosts)
    second = next(d for d in hosts if d is not first)
    assert sha(curl(f"{first.url}/v2/test/big/blobs/{blob}").stdout) == blob
    assert sha(curl(f"{second.url}/v2/test/big/blobs/{blob}").stdout) == blob
    pieces = [l for l in first.log_lines() if l.get("msg") == "access" and l.get("mode") == "peer" and "/pieces/" in l.get("url", "")]
    assert any(l["status"] == 503 for l in pieces), "six pieces at once against a bound of one"
    assert sum(l["status"] == 200 for l in pieces) >= size // (4 << 20), "every piece was served in the end"
    done = [l for l in second.log_lines() if l.get("msg") == "task downloaded" and l.get("source") == "peers"]
    assert done and done[0]["bytes"] == size
    assert not any(l.get("msg") == "peers could not fill the task: from the origin" for l in second.log_lines())


def test_a_piece_still_arriving_at_the_owner_is_cut_through_to_the_follower(cluster, registry, images):
    """The origin is slow (32 MiB/s on both hosts): the follower asks the owner for the piece the
    owner is receiving, and gets it as it lands there (no digest in its head; the follower checks
    it against the digest the owner's next news brings). Every copy is byte-exact and the registry
    serves the blob once."""
    hosts = cluster(2, extra_yaml="download:\n  totalRateLimit: 32Mi\n")
    blob, size = big(images)
    first = owner(blob[7:], hosts)
    second = next(d for d in hosts if d is not first)
    before = reglib.origin_bytes(registry.log(), blob)
    results = {}

    def pull(d):
        r = subprocess.run(["curl", "-sS", "-o", "-", f"{d.url}/v2/test/big/blobs/{blob}"], capture_output=True, timeout=300)
        results[d.name] = (r.returncode, sha(r.stdout), len(r.stdout))

    threads = [threading.Thread(target=pull, args=(d,)) for d in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(v == (0, blob, size) for v in results.values()), results
    pieces = [l for l in first.log_lines() if l.get("msg") == "access" and l.get("mode") == "peer" and "/pieces/" in l.get("url", "")]
    cut = [l for l in pieces if l.get("cutThrough") and l["status"] == 200]
    assert cut, f"no piece was cut through: {[(l['url'][-10:], l['status']) for l in pieces]}"
    done = [l for l in second.log_lines() if l.get("msg") == "task downloaded" and l.get("source") == "peers"]
    assert done and done[0]["bytes"] == size and "fallback" not in done[0], done
    procs.wait_until(lambda: reglib.origin_bytes(registry.log(), blob) - before >= size, timeout=10, what="registry log")
    assert reglib.origin_bytes(registry.log(), blob) - before == size


class LoopbackCapture:
    """Every TCP payload on the loopback interface to or from `port` (AF_PACKET: root), kept
    while the capture runs."""

    def __init__(self, port):
        import socket, struct
        self.port, self.payload, self.stop = port, bytearray(), threading.Event()
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.struct = struct
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import socket
        while not self.stop.is_set():
            try:
                frame, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            if addr[2] == socket.PACKET_OUTGOING:
                continue  # each loopback packet shows twice: keep it once
            ip = frame[14:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
                continue
            ihl = (ip[0] & 0x0F) * 4
            tcp = ip[ihl:]
            sport, dport = self.struct.unpack("!HH", tcp[:4])
            if self.port in (sport, dport):
                self.payload += tcp[(tcp[12] >> 4) * 4:]

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()
        return bytes(self.payload)


def test_the_clients_credentials_never_cross_the_peer_port_in_clear(cluster, registry, images):
    """A follower asks the owner to fetch with the client's Authorization: that request's body is
    sealed with the cluster's secret. Captured on the owner's peer port, the credential is not
    there, while the request line is (the capture sees the traffic) and the pull comes from the peers."""
    hosts = cluster(2)
    blob, size = big(images)
    first = owner(blob[7:], hosts)
    second = next(d for d in hosts if d is not first)
    credential = "Bearer sealed-e2e-" + hashlib.sha256(os.urandom(16)).hexdigest()
    cap = LoopbackCapture(first.peer_port)
    try:
        r = subprocess.run(["curl", "-sS", "-o", "-", "-H", f"Authorization: {credential}", f"{second.url}/v2/test/big/blobs/{blob}"],
                           capture_output=True, timeout=300)
    finally:
        seen = cap.close()
    assert r.returncode == 0 and sha(r.stdout) == blob
    assert f"/peer/v1/tasks/{blob[7:]}/origin".encode() in seen, "the capture saw the request to the owner"
    assert credential.encode() not in seen and b"sealed-e2e-" not in seen, "the credential crossed in clear"
    assert b"application/vnd.dfget.sealed" in seen
    done = [l for l in second.log_lines() if l.get("msg") == "task downloaded" and l.get("source") == "peers"]
    assert done and done[0]["bytes"] == size


def test_debug_tasks_shows_where_each_fills_bytes_came_from(cluster, images):
    """`GET /debug/tasks/<digest>` on the health listener after a pull from the peers: the fill's
    bytes by source add up to the blob, with the owner named; the owner's shows the origin."""
    health = [procs.free_port() for _ in range(2)]
    hosts = cluster(2, host_yaml=lambda i: f"health:\n  tcpListen:\n    listen: 127.0.0.1\n    port: {health[i]}\n")
    blob, size = big(images)
    first = owner(blob[7:], hosts)
    second = next(d for d in hosts if d is not first)
    assert sha(curl(f"{first.url}/v2/test/big/blobs/{blob}").stdout) == blob
    assert sha(curl(f"{second.url}/v2/test/big/blobs/{blob}").stdout) == blob
    port = {d.name: health[i] for i, d in enumerate(hosts)}

    def task(d):
        r = curl("-s", f"http://127.0.0.1:{port[d.name]}/debug/tasks/{blob}", check=False)
        return json.loads(r.stdout) if r.stdout.startswith(b"{") else None

    mine = task(second)
    assert mine and mine["digest"] == blob, mine
    fill = mine["fills"][-1]
    assert fill["state"] == "complete" and fill["source"] == "peers" and fill["size"] == size, fill
    assert fill["bytes"]["origin"] + sum(fill["bytes"]["peers"].values()) == size, fill
    assert fill["owner"] == f"127.0.0.1:{first.peer_port}" and fill["bytes"]["peers"].get(fill["owner"], 0) > 0, fill
    theirs = task(first)["fills"][-1]
    assert theirs["source"] == "origin" and theirs["bytes"] == {"origin": size, "peers": {}}, theirs
    listing = json.loads(curl("-s", f"http://127.0.0.1:{port[second.name]}/debug/tasks").stdout)
    assert listing["filling"] == [] and any(r["digest"] == blob for r in listing["recent"])
    r = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port[second.name]}/debug/tasks/sha256:{'0' * 64}", check=False)
    assert r.stdout == b"404"
    # The same in a terminal, found through the daemon's config.
    from lib.daemon import binary
    out = subprocess.run([binary(), "status", "--config", second.config], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and f"{blob[:19]}  complete from peers" in out.stdout and f"owner 127.0.0.1:{first.peer_port}" in out.stdout, out
    one = subprocess.run([binary(), "status", "--config", second.config, blob], capture_output=True, text=True, timeout=30)
    assert one.returncode == 0 and json.loads(one.stdout)["fills"][-1]["source"] == "peers", one
