"""Peer exchange on one machine: several daemons on 127.0.0.1, each its own member of the cluster.
A blob leaves the registry once for all of them, every copy is byte-exact, and the peer port
serves nobody without the shared secret."""
import os, subprocess, threading
import pytest
from lib import procs, registry as reglib
from lib.client import curl, sha

SECRET = "e2e-peer-secret-0123456789abcdef\n"


@pytest.fixture
def cluster(daemon_factory, registry, tmp_path):
    def make(n, workers=1):
        key = tmp_path / "peers.key"
        key.write_text(SECRET)
        ports = [procs.free_port() for _ in range(n)]
        members = ", ".join(f'"127.0.0.1:{p}"' for p in ports)
        return [daemon_factory(name=f"peer{i}", workers=workers, peer_port=port,
                               extra_yaml=f"peers:\n  members: [{members}]\n  secretFile: {key}\n",
                               proxy_yaml=f"registryMirror:\n  url: http://{registry.addr}\n")
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
