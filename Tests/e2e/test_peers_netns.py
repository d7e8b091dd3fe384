"""A cluster on a network: four hosts and a registry, each in a network namespace of its own, joined
by a bridge. Concurrent cold pulls cost the registry one copy (counted on its interface), a late
host costs it nothing, a member killed mid-transfer does not stop the others, and a tampered piece
is rejected. Only addresses inside these namespaces are used; they are removed afterwards."""
import hashlib, os, signal, subprocess, textwrap, threading
import pytest
from lib import procs, registry as reglib
from lib.daemon import binary
from lib.netns import Star

PEER_PORT, PROXY_PORT = 65002, 65001


@pytest.fixture
def star(request, registry, images, tmp_path):
    s = Star(hosts=4, rate=getattr(request, "param", None))
    started = []
    try:
        # The session registry's storage, served again inside the origin namespace.
        cfg = tmp_path / "origin-registry.yml"
        cfg.write_text(textwrap.dedent(f"""\
            version: 0.1
            log:
              level: info
              accesslog:
                disabled: false
            storage:
              filesystem:
                rootdirectory: {registry.dir}/data
            http:
              addr: {s.ip(s.origin)}:5000
            """))
        started.append(procs.Proc("origin-registry", ["ip", "netns", "exec", s.origin, "docker-registry", "serve", str(cfg)], str(tmp_path)))
        procs.wait_until(lambda: s.run(s.origin, "curl", "-sf", f"http://{s.ip(s.origin)}:5000/v2/").returncode == 0, what="origin registry")
        key = tmp_path / "peers.key"
        key.write_text("netns-peer-secret-0123456789abcdef\n")
        s.daemons = {}
        members = ", ".join(f'"{s.ip(h)}"' for h in s.hosts)
        for h in s.hosts:
            d = tmp_path / h
            d.mkdir()
            (d / "dfget.yaml").write_text(textwrap.dedent(f"""\
                logDir: {d}/log
                dataDir: {d}/data
                workers: 2
                host:
                  advertiseIP: {s.ip(h)}
                upload:
                  tcpListen: {{listen: {s.ip(h)}, port: {PEER_PORT}}}
                peers:
                  members: [{members}]
                  secretFile: {key}
                proxy:
                  tcpListen: {{listen: 127.0.0.1, port: {PROXY_PORT}}}
                  registryMirror: {{url: "http://{s.ip(s.origin)}:5000"}}
                """))
            p = procs.Proc(f"dfget-{h}", ["ip", "netns", "exec", h, binary(), "daemon", "--config", str(d / "dfget.yaml")], str(d))
            started.append(p)
            s.daemons[h] = (p, d)
        for h in s.hosts:
            procs.wait_until(lambda: s.run(h, "curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{PROXY_PORT}/").returncode == 0,
                             what=f"daemon in {h}")
        yield s
    finally:
        for p in started:
            p.stop()
        s.down()


def owner_of(s, task, hosts):
    """The rendezvous owner, computed as every member computes it."""
    def weight(h):
        return int.from_bytes(hashlib.sha256(f"{task}|{s.ip(h)}:{PEER_PORT}".encode()).digest()[:8], "big")
    return max(hosts, key=weight)


def pull(s, h, blob, out):
    r = s.run(h, "curl", "-sS", "-o", "-", f"http://127.0.0.1:{PROXY_PORT}/v2/test/big/blobs/{blob}", timeout=300)
    out[h] = (r.returncode, "sha256:" + hashlib.sha256(r.stdout).hexdigest())


def logs(s, h):
    import json
    path = s.daemons[h][1] / "log" / "daemon" / "core.log"
    return [json.loads(l) for l in open(path)] if path.exists() else []


def test_cluster_pulls_cost_the_registry_one_copy(star, images):
    s = star
    layout, _, blobs = images["big"]
    blob, size = blobs[0], os.path.getsize(reglib.blob_path(layout, blobs[0]))
    first, late = s.hosts[:3], s.hosts[3]
    before = s.tx_bytes(s.origin)
    got = {}
    threads = [threading.Thread(target=pull, args=(s, h, blob, got)) for h in first]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(v == (0, blob) for v in got.values()), got
    cost = (s.tx_bytes(s.origin) - before) / size
    assert cost <= 1.1, f"the registry sent {cost:.2f}x the blob"
    owner = owner_of(s, blob[7:], s.hosts)
    for h in first:
        if h != owner:
            assert any(l.get("msg") == "task downloaded" and l.get("source") == "peers" for l in logs(s, h)), h
    # A late host: from the peers, the registry sends nothing more of the blob.
    mid = s.tx_bytes(s.origin)
    pull(s, late, blob, got)
    assert got[late] == (0, blob)
    assert s.tx_bytes(s.origin) - mid < size / 100, "a late host costs the origin nothing"


@pytest.mark.parametrize("star", ["200mbit"], indirect=True)
def test_kill9_of_the_owner_mid_transfer_the_others_finish(star, images):
    s = star
    blob = images["big"][2][0]
    owner = owner_of(s, blob[7:], s.hosts)
    others = [h for h in s.hosts if h != owner][:2]
    got = {}
    threads = [threading.Thread(target=pull, args=(s, h, blob, got)) for h in [owner] + others]
    for t in threads:
        t.start()

    def fetched(h):
        f = s.daemons[h][1] / "data" / "cache" / f"{blob[7:]}.data"
        # The data file is sparse until the pieces land: allocated blocks are what arrived.
        return f.exists() and f.stat().st_blocks * 512 > 40 << 20

    # Links at 200 mbit: the owner has part of the blob, the others are following it.
    procs.wait_until(lambda: fetched(owner), timeout=60, what="the owner mid-download")
    p = s.daemons[owner][0]
    os.killpg(p.pid, signal.SIGKILL)
    for t in threads:
        t.join()
    for h in others:
        assert got[h] == (0, blob), (h, got)
    assert any(l.get("msg") == "peer owner failed: trying the next" for h in others for l in logs(s, h))


def test_a_tampered_piece_is_rejected_and_the_blob_still_completes(star, images):
    s = star
    blob = images["big"][2][0]
    owner = owner_of(s, blob[7:], s.hosts)
    other = next(h for h in s.hosts if h != owner)
    got = {}
    pull(s, owner, blob, got)
    assert got[owner] == (0, blob)
    data = s.daemons[owner][1] / "data" / "cache" / f"{blob[7:]}.data"
    with open(data, "r+b") as f:  # the owner's disk rots under piece 0
        f.seek(10)
        b = f.read(1)
        f.seek(10)
        f.write(bytes([b[0] ^ 0xFF]))
    pull(s, other, blob, got)
    assert got[other] == (0, blob), "byte-exact all the same"
    warnings = [l for l in logs(s, other) if l.get("msg") == "peer sent a piece that does not match its digest: avoided"]
    assert warnings and warnings[0]["piece"] == 0
