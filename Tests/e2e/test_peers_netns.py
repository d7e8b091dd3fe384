"""A cluster on a network: four hosts and a registry, each in a network namespace of its own, joined
by a bridge. Concurrent cold pulls cost the registry one copy (counted on its interface), a late
host costs it nothing, a member killed mid-transfer does not stop the others, and a tampered piece
is rejected. Only addresses inside these namespaces are used; they are removed afterwards."""
import os, re, signal, threading
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
    """Whether host h holds 40 MiB of the blob."""
    return c.holds(h, blob, (40 << 20) + 1)


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


def next_seed(c, blob):
    """The member that takes over when the owner dies: the next in the task's rendezvous order."""
    owner = c.owner_of(blob[7:])
    return owner, c.owner_of(blob[7:], [h for h in c.star.hosts if h != owner])


def fill_line(c, h):
    """Host h's line for the end of its fill from the peers."""
    return next((l for l in c.logs(h) if l.get("msg") in ("task downloaded", "task from peers stopped") and l.get("source") == "peers"), None)


@pytest.mark.parametrize("cluster", ["200mbit"], indirect=True)
def test_kill9_of_the_owner_mid_transfer_the_next_keeps_its_pieces(cluster, images):
    c, s = cluster, cluster.star
    layout, _, blobs = images["big"]
    blob, size = blobs[0], os.path.getsize(reglib.blob_path(layout, blobs[0]))
    owner, nxt = next_seed(c, blob)
    others = [h for h in s.hosts if h != owner]
    before = s.tx_bytes(s.origin)
    got = {}
    threads = start_pulls(c, s.hosts, blob, got)
    # Links at 200 mbit: the owner has part of the blob, the others are following it.
    procs.wait_until(lambda: mid_download(c, owner, blob), timeout=60, what="the owner mid-download")
    os.killpg(c.daemons[owner][0].pid, signal.SIGKILL)
    for t in threads:
        t.join()
    for h in others:
        assert got[h] == (0, blob), (h, got)
    assert any(l.get("msg") == "peer owner failed: trying the next" for h in others for l in c.logs(h))
    # The next in order had no one left above it: it kept its pieces and took only the rest from
    # the origin, by range; it did not start over.
    line = fill_line(c, nxt)
    assert line and line["msg"] == "task downloaded" and line.get("fallback", "").startswith("range"), line
    assert 0 < line["originBytes"] < size, line
    assert not any(l.get("msg") == "peers could not fill the task: from the origin" for l in c.logs(nxt))
    # The client's access line says so too (access lines are flushed within 100 ms).
    procs.wait_until(lambda: any(l.get("msg") == "access" and l.get("mode") == "mirror" and l.get("fallback", "").startswith("range")
                                 and l.get("originBytes", 0) > 0 for l in c.logs(nxt)), timeout=10, what="the access line's fallback")
    cost = (s.tx_bytes(s.origin) - before) / size
    print(f"origin cost {cost:.2f}x; next seed took {line['originBytes'] / size:.2f} of the blob from the origin")
    # The owner's part, and the next seed's missing part: less than two copies by what it kept.
    assert cost < 2 - (size - line["originBytes"]) / size + 0.15, cost


def owner_and_registry_gone(c, blob, hosts):
    """Pulls on `hosts` (the owner among them); mid-transfer the registry and then the owner are killed."""
    owner, _ = next_seed(c, blob)
    got = {}
    threads = start_pulls(c, hosts, blob, got)
    procs.wait_until(lambda: mid_download(c, owner, blob), timeout=60, what="the owner mid-download")
    c.kill_registry()
    os.killpg(c.daemons[owner][0].pid, signal.SIGKILL)
    return got, threads


@pytest.mark.parametrize("cluster", ["200mbit"], indirect=True)
def test_the_registry_back_within_the_clients_patience_the_pull_completes(cluster, images):
    """A 200 is a promise: with the owner dead and the registry down for a moment, the next in order
    asks the origin's ranges again with backoff, and the client gets the whole blob."""
    c = cluster
    blob = images["big"][2][0]
    owner, nxt = next_seed(c, blob)
    got, threads = owner_and_registry_gone(c, blob, [owner, nxt])
    procs.wait_until(lambda: any(l.get("msg") == "origin failed a piece: asking again" for l in c.logs(nxt)),
                     timeout=60, what="the next seed asking the origin again")
    c.start_registry()
    for t in threads:
        t.join()
    assert got[nxt] == (0, blob), got
    line = fill_line(c, nxt)
    assert line and line.get("fallback", "").startswith("range"), line


@pytest.mark.parametrize("cluster", ["200mbit"], indirect=True)
def test_no_source_left_the_client_gets_a_reset_not_a_short_200(cluster, images):
    """The owner dead and the registry gone for good: past the retries the connection is reset, so
    curl reports a receive failure (56), not a clean end of a short body (18)."""
    c = cluster
    blob = images["big"][2][0]
    owner, nxt = next_seed(c, blob)
    got, threads = owner_and_registry_gone(c, blob, [owner, nxt])
    for t in threads:
        t.join()
    assert got[nxt][0] == 56, got
    logs = c.logs(nxt)
    assert any(l.get("msg") == "origin failed a piece: asking again" for l in logs)
    procs.wait_until(lambda: any(l.get("msg") == "access" and l.get("mode") == "mirror" and "mid-stream" in l.get("error", "")
                                 for l in c.logs(nxt)), timeout=10, what="the access line's error")


def rot(c, h, blob):
    """Host h's disk rots under piece 0 of the blob."""
    with open(c.data_file(h, blob), "r+b") as f:
        f.seek(10)
        b = f.read(1)
        f.seek(10)
        f.write(bytes([b[0] ^ 0xFF]))


def test_a_tampered_piece_is_rejected_and_the_blob_still_completes(cluster, images):
    """The owner recorded its pieces' digests (a member followed its download); then its disk rots
    under piece 0 and the follower is gone. The next host rejects the owner's piece 0, avoids it,
    and still gets the blob byte-exact (the rest from the origin by range)."""
    c, s = cluster, cluster.star
    blob = images["big"][2][0]
    owner = c.owner_of(blob[7:])
    first, other = [h for h in s.hosts if h != owner][:2]
    got = {}
    threads = start_pulls(c, [owner, first], blob, got)
    for t in threads:
        t.join()
    assert got[owner] == (0, blob) and got[first] == (0, blob), got
    os.killpg(c.daemons[first][0].pid, signal.SIGKILL)
    c.daemons[first][0].p.wait(10)
    rot(c, owner, blob)
    c.pull(other, blob, got)
    assert got[other] == (0, blob), "byte-exact all the same"
    warnings = [l for l in c.logs(other) if l.get("msg") == "peer sent a piece that does not match its digest: avoided"]
    assert warnings and warnings[0]["piece"] == 0


def test_a_blob_that_rotted_before_any_member_asked_is_evicted_not_offered(cluster, images):
    """The owner pulled alone, so it recorded no piece digests; its disk then rots. When a member
    asks, the digests are taken from the file in a pass that checks the whole blob: it no longer
    matches, so the owner evicts it instead of vouching for rotten pieces, and the member gets the
    blob byte-exact anyway."""
    c, s = cluster, cluster.star
    blob = images["big"][2][0]
    owner = c.owner_of(blob[7:])
    other = next(h for h in s.hosts if h != owner)
    got = {}
    c.pull(owner, blob, got)
    assert got[owner] == (0, blob)
    rot(c, owner, blob)
    c.pull(other, blob, got)
    assert got[other] == (0, blob), "byte-exact all the same"
    assert any(l.get("msg") == "cached blob no longer matches its digest: evicted" for l in c.logs(owner))
    # The owner's own next request fetches it again, byte-exact.
    c.pull(owner, blob, got)
    assert got[owner] == (0, blob)


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


@pytest.mark.parametrize("cluster", ["200mbit"], indirect=True)
def test_a_live_owner_one_host_cannot_reach_is_followed_through_a_member_that_can(cluster, images):
    """The owner drops every new connection from the next member in order (its SYNs, as a seed
    whose links are full drops them): that member must not take the owner for dead and go to the
    origin after its idle time. It asks the members that follow the owner and follows one of
    them instead; the registry still sends one copy."""
    c, s = cluster, cluster.star
    layout, _, blobs = images["big"]
    blob, size = blobs[0], os.path.getsize(reglib.blob_path(layout, blobs[0]))
    owner, nxt = next_seed(c, blob)
    s.run(owner, "iptables", "-I", "INPUT", "-p", "tcp", "--syn", "-s", s.ip(nxt), "--dport", "65002", "-j", "DROP", check=True)
    before = s.tx_bytes(s.origin)
    got = {}
    threads = start_pulls(c, s.hosts, blob, got)
    for t in threads:
        t.join()
    assert all(v == (0, blob) for v in got.values()), got
    logs = c.logs(nxt)
    assert any(l.get("msg") == "peer owner unreachable: following a member that has the task" for l in logs), \
        [l.get("msg") for l in logs if l.get("level") != "info" or "peer" in l.get("msg", "")]
    assert not any(l.get("msg") == "peers could not fill the task: from the origin" for l in logs)
    line = fill_line(c, nxt)
    assert line and line["msg"] == "task downloaded" and "fallback" not in line, line
    cost = (s.tx_bytes(s.origin) - before) / size
    assert cost <= 1.1, f"the registry sent {cost:.2f}x the blob"


def test_four_simultaneous_tag_pulls_cost_the_registry_one_manifest_request(cluster, images):
    """A tag is asked of the member that owns it (rendezvous on registry + repository + tag): the
    other hosts pass their clients' requests to it, and it asks the registry once."""
    c, s = cluster, cluster.star
    _, mdig, _ = images["small"]
    accept = "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"
    got = {}

    def pull(h):
        r = s.run(h, "curl", "-sS", "-D", "/dev/stderr", "-H", accept, f"http://127.0.0.1:65001/v2/test/img/manifests/1", timeout=60)
        got[h] = (r.returncode, "sha256:" + __import__("hashlib").sha256(r.stdout).hexdigest())

    threads = [threading.Thread(target=pull, args=(h,)) for h in s.hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(v == (0, mdig) for v in got.values()), got

    def manifest_requests():
        # docker-registry's access lines: `"GET /v2/test/img/manifests/1 HTTP/1.1" 200 ...`.
        return [l for l in c.registry.output().splitlines() if re.search(r'"(GET|HEAD) /v2/test/img/manifests/1[ ?]', l)]
    assert len(manifest_requests()) == 1, manifest_requests()
    owner = c.owner_of(f"tag|{s.ip(s.origin)}:5000|test/img|1")

    def forwarded():
        return {h: [l for l in c.logs(h) if l.get("msg") == "access" and l.get("forwardedTag")] for h in s.hosts}
    # The owner's access lines follow its answers' last bytes: waited for, not slept for.
    procs.wait_until(lambda: sum(map(len, forwarded().values())) >= 3, timeout=10, what="the owner's access lines")
    f = forwarded()
    assert len(f[owner]) == 3 and sum(map(len, f.values())) == 3, ({h: len(v) for h, v in f.items()}, owner)
