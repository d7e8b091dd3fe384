"""A cluster on a network: four hosts and a registry, each in a network namespace of its own, joined
by a bridge. Concurrent cold pulls cost the registry one copy (counted on its interface), a late
host costs it nothing, a member killed mid-transfer does not stop the others, and a tampered piece
is rejected. Only addresses inside these namespaces are used; they are removed afterwards."""
import os, signal, threading
import pytest
from lib import procs, registry as reglib
from lib.cluster import Cluster
from lib.netns import Star


@pytest.fixture
def cluster(request, registry, images, tmp_path):
    star = Star(hosts=4, rate=getattr(request, "param", None))
    c = None
    try:
        c = Cluster(star, registry.dir, str(tmp_path))
        yield c
    finally:
        if c:
            c.stop()
        star.down()


def mid_download(c, h, blob):
    """Whether host h holds 40 MiB of the blob: its data file is sparse until pieces land."""
    f = c.data_file(h, blob)
    return os.path.exists(f) and os.stat(f).st_blocks * 512 > 40 << 20


def start_pulls(c, hosts, blob, got):
    threads = [threading.Thread(target=c.pull, args=(h, blob, got)) for h in hosts]
    for t in threads:
        t.start()
    return threads


def test_cluster_pulls_cost_the_registry_one_copy(cluster, images):
    c, s = cluster, cluster.star
    layout, _, blobs = images["big"]
    blob, size = blobs[0], os.path.getsize(reglib.blob_path(layout, blobs[0]))
    first, late = s.hosts[:3], s.hosts[3]
    before = s.tx_bytes(s.origin)
    got = {}
    threads = start_pulls(c, first, blob, got)
    for t in threads:
        t.join()
    assert all(v == (0, blob) for v in got.values()), got
    cost = (s.tx_bytes(s.origin) - before) / size
    assert cost <= 1.1, f"the registry sent {cost:.2f}x the blob"
    owner = c.owner_of(blob[7:])
    for h in first:
        if h != owner:
            assert any(l.get("msg") == "task downloaded" and l.get("source") == "peers" for l in c.logs(h)), h
    # A late host: from the peers, the registry sends nothing more of the blob.
    mid = s.tx_bytes(s.origin)
    c.pull(late, blob, got)
    assert got[late] == (0, blob)
    assert s.tx_bytes(s.origin) - mid < size / 100, "a late host costs the origin nothing"


@pytest.mark.parametrize("cluster", ["200mbit"], indirect=True)
def test_kill9_of_the_owner_mid_transfer_the_others_finish(cluster, images):
    c, s = cluster, cluster.star
    blob = images["big"][2][0]
    owner = c.owner_of(blob[7:])
    others = [h for h in s.hosts if h != owner][:2]
    got = {}
    threads = start_pulls(c, [owner] + others, blob, got)
    # Links at 200 mbit: the owner has part of the blob, the others are following it.
    procs.wait_until(lambda: mid_download(c, owner, blob), timeout=60, what="the owner mid-download")
    p = c.daemons[owner][0]
    os.killpg(p.pid, signal.SIGKILL)
    for t in threads:
        t.join()
    for h in others:
        assert got[h] == (0, blob), (h, got)
    assert any(l.get("msg") == "peer owner failed: trying the next" for h in others for l in c.logs(h))


def test_a_tampered_piece_is_rejected_and_the_blob_still_completes(cluster, images):
    c, s = cluster, cluster.star
    blob = images["big"][2][0]
    owner = c.owner_of(blob[7:])
    other = next(h for h in s.hosts if h != owner)
    got = {}
    c.pull(owner, blob, got)
    assert got[owner] == (0, blob)
    data = c.data_file(owner, blob)
    with open(data, "r+b") as f:  # the owner's disk rots under piece 0
        f.seek(10)
        b = f.read(1)
        f.seek(10)
        f.write(bytes([b[0] ^ 0xFF]))
    c.pull(other, blob, got)
    assert got[other] == (0, blob), "byte-exact all the same"
    warnings = [l for l in c.logs(other) if l.get("msg") == "peer sent a piece that does not match its digest: avoided"]
    assert warnings and warnings[0]["piece"] == 0


@pytest.mark.parametrize("cluster", ["200mbit"], indirect=True)
def test_kill9_of_a_follower_mid_transfer_the_others_finish(cluster, images):
    c, s = cluster, cluster.star
    blob = images["big"][2][0]
    owner = c.owner_of(blob[7:])
    followers = [h for h in s.hosts if h != owner]
    victim, others = followers[0], followers[1:]
    got = {}
    threads = start_pulls(c, s.hosts, blob, got)
    # The victim holds pieces the others may be fetching from it when it dies.
    procs.wait_until(lambda: mid_download(c, victim, blob), timeout=60, what="the follower mid-download")
    os.killpg(c.daemons[victim][0].pid, signal.SIGKILL)
    for t in threads:
        t.join()
    for h in [owner] + others:
        assert got[h] == (0, blob), (h, got)
