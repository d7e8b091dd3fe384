"""Membership at scale: a members file the master watches and reloads without a restart, IPv6
members, and `peers.dns` resolved by the master (once for all workers) through a real DNS server
whose answer is too big for UDP, on a host that is named only by that answer (no advertiseIP)."""
import json, os, re, signal, textwrap
import pytest
from lib import netns, procs, registry as reglib
from lib.client import curl, sha
from lib.daemon import binary

SECRET = "e2e-members-secret-0123456789abcdef\n"


def small_blob(images, i):
    layout, _, blobs = images["small"]
    return blobs[i], os.path.getsize(reglib.blob_path(layout, blobs[i]))


def origin_delta(registry, blob, before, size):
    """The registry's bytes for `blob` since `before`, once its log has at least one more copy."""
    procs.wait_until(lambda: reglib.origin_bytes(registry.log(), blob) - before >= size, timeout=10, what="registry log")
    return reglib.origin_bytes(registry.log(), blob) - before


def members_seen(d, n):
    return any(l.get("msg") == "peer members changed" and l.get("members") == n for l in d.log_lines())


def test_a_members_file_is_watched_and_reloaded_without_a_restart(daemon_factory, registry, images, tmp_path):
    key = tmp_path / "peers.key"
    key.write_text(SECRET)
    ports = [procs.free_port(), procs.free_port()]
    files = [tmp_path / f"members-{i}" for i in range(2)]
    for f, p in zip(files, ports):
        f.write_text(f"# only itself\n127.0.0.1:{p}\n")
    hosts = [daemon_factory(name=f"m{i}", workers=2, peer_port=ports[i],
                            extra_yaml=f"peers:\n  membersFile: {files[i]}\n  secretFile: {key}\n",
                            proxy_yaml=f"registryMirror:\n  dynamic: true\n  url: http://{registry.addr}\n")
             for i in range(2)]
    pids = [d.pid for d in hosts]

    def pull_on_each(blob):
        for d in hosts:
            assert sha(curl(f"{d.url}/v2/test/img/blobs/{blob}").stdout) == blob

    # The control: each alone, each pays the registry.
    x, xsize = small_blob(images, 0)
    before = reglib.origin_bytes(registry.log(), x)
    pull_on_each(x)
    assert origin_delta(registry, x, before, 2 * xsize) == 2 * xsize

    # Both files now name both hosts: the masters see it within seconds, same pids.
    both = "".join(f"127.0.0.1:{p}\n" for p in ports)
    for f in files:
        tmp = f.with_suffix(".tmp")
        tmp.write_text(both)
        os.rename(tmp, f)
    for d in hosts:
        procs.wait_until(lambda: members_seen(d, 2), timeout=10, what=f"{d.name} reads its members file again")
    assert [d.pid for d in hosts] == pids, "no restart"
    y, ysize = small_blob(images, 1)
    before = reglib.origin_bytes(registry.log(), y)
    pull_on_each(y)
    assert origin_delta(registry, y, before, ysize) == ysize, "one copy for the two hosts"

    # A bad line is refused, logged with its line, and the members known before are kept.
    files[0].write_text(f"127.0.0.1:{ports[0]}\n127.0.0.1:notaport\n")
    procs.wait_until(lambda: any(l.get("msg", "").startswith("members file refused") and f"{files[0]}:2:" in l.get("error", "")
                                 for l in hosts[0].log_lines()), timeout=10, what="the bad members file refused")
    z, zsize = small_blob(images, 2)
    before = reglib.origin_bytes(registry.log(), z)
    pull_on_each(z)
    assert origin_delta(registry, z, before, zsize) == zsize, "still one cluster"
    assert all(d.proc.alive() for d in hosts)


def test_ipv6_members_exchange_pieces(daemon_factory, registry, images, tmp_path):
    key = tmp_path / "peers.key"
    key.write_text(SECRET)
    ports = [procs.free_port(), procs.free_port()]
    members = ", ".join(f'"[::1]:{p}"' for p in ports)
    hosts = [daemon_factory(name=f"v6-{i}", workers=1, peer_port=ports[i], upload_listen="::1",
                            extra_yaml=f"peers:\n  members: [{members}]\n  secretFile: {key}\n",
                            proxy_yaml=f"registryMirror:\n  dynamic: true\n  url: http://{registry.addr}\n")
             for i in range(2)]
    layout, _, blobs = images["big"]
    blob, size = blobs[0], os.path.getsize(reglib.blob_path(layout, blobs[0]))
    before = reglib.origin_bytes(registry.log(), blob)
    for d in hosts:
        assert sha(curl(f"{d.url}/v2/test/big/blobs/{blob}").stdout) == blob
    assert origin_delta(registry, blob, before, size) == size
    from_peers = [l for d in hosts for l in d.log_lines() if l.get("msg") == "task downloaded" and l.get("source") == "peers"]
    assert len(from_peers) == 1 and from_peers[0]["bytes"] == size, from_peers
    started = [l for l in hosts[0].log_lines() if l.get("msg") == "peer exchange on"]
    assert started and started[0]["me"] == f"[::1]:{ports[0]}", started


ns_run = netns.run


@pytest.fixture
def dns_ns(tmp_path):
    """A namespace whose resolv.conf points at a dnsmasq inside it; its loopback carries
    127.0.1.77, this host's address in the answer."""
    # No `options edns0`: a UDP answer stops at 512 bytes.
    lone = netns.Lone("dfget-dns", addrs=["127.0.1.77/32"],
                      etc={"resolv.conf": "nameserver 127.0.0.1\n", "hosts": "127.0.0.1 localhost\n"})
    ns = lone.name
    started = []
    try:
        records = tmp_path / "peers.hosts"
        write_records(records, range(1, 151))  # 150 A records: about 2.4 kB, so over TCP
        dns = procs.Proc("dnsmasq", ["ip", "netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                                     "--no-resolv", "--no-hosts", f"--addn-hosts={records}", "--listen-address=127.0.0.1",
                                     "--bind-interfaces", "--user=root", "--pid-file=", "--log-queries",
                                     f"--log-facility={tmp_path}/dnsmasq.log"], str(tmp_path))
        started.append(dns)
        yield ns, records, dns, tmp_path, started
    finally:
        for p in reversed(started):
            p.stop()
        lone.down()


def write_records(path, last_octets):
    path.write_text("".join(f"127.0.1.{i} peers.test\n" for i in last_octets))


def test_the_master_resolves_peers_dns_past_udp_and_the_host_finds_itself(dns_ns):
    ns, records, dns, tmp, started = dns_ns
    count = "import socket; print(len(socket.getaddrinfo('peers.test', 1, socket.AF_INET, socket.SOCK_STREAM)))"
    procs.wait_until(lambda: ns_run(ns, "python3", "-c", count).stdout == b"150\n", what="dnsmasq answers 150 records")
    key = tmp / "peers.key"
    key.write_text(SECRET)
    port, peer, ops = 65201, 65202, 65203  # inside the namespace nothing else listens
    cfg = tmp / "dfget.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        logDir: {tmp}/log
        dataDir: {tmp}/data
        workers: 2
        health:
          tcpListen: {{listen: 127.0.0.1, port: {ops}}}
        upload:
          tcpListen: {{listen: 0.0.0.0, port: {peer}}}
        peers:
          dns: peers.test
          refresh: 1s
          secretFile: {key}
        proxy:
          tcpListen: {{listen: 127.0.0.1, port: {port}}}
          registryMirror: {{dynamic: true}}
        """))
    d = procs.Proc("dfget-dns", ["ip", "netns", "exec", ns, binary(), "daemon", "--config", str(cfg)], str(tmp))
    started.append(d)

    def log():
        path = tmp / "log" / "daemon" / "core.log"
        return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []

    def metric(name):
        r = ns_run(ns, "curl", "-s", f"http://127.0.0.1:{ops}/metrics")
        for line in r.stdout.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    procs.wait_until(lambda: metric("dfget_peer_members") == 150, what="150 members from DNS")
    changed = [l for l in log() if l.get("msg") == "peer members changed"]
    assert changed and changed[-1]["fromDNS"] == 150 and changed[-1]["role"] == "master", changed
    procs.wait_until(lambda: any(l.get("msg") == "this host found itself among the members" and l.get("me") == f"127.0.1.77:{peer}"
                                 for l in log()), what="the host finds itself in the answer, without advertiseIP")

    # The answer shrinks (pods went away): the next refresh says so, without a restart.
    write_records(records, [5, 77, 140])
    dns.signal(signal.SIGHUP)
    procs.wait_until(lambda: metric("dfget_peer_members") == 3, what="3 members after the refresh")
    assert metric("dfget_peer_membership_errors_total") == 0
    # dnsmasq answers a TCP query in a child process: a query logged under another pid than the
    # server's came over TCP (a UDP answer without EDNS holds at most about 28 of these records).
    lines = (tmp / "dnsmasq.log").read_text().splitlines()
    server = next(re.search(r"dnsmasq\[(\d+)\]", l).group(1) for l in lines if "started, version" in l)
    assert any("query[A] peers.test" in l and f"dnsmasq[{server}]" not in l for l in lines), "asked again over TCP"
    assert d.alive()
