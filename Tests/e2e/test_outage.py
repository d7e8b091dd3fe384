"""Pulls that survive a registry that is down or rate-limiting (proxy.manifests): tags answered from
the cache and revalidated with HEAD, one upstream request per tag, stale-if-error for tags and
cached blobs on the credential's last grant, fail fast, a cut blob resumed by Range. A fault proxy
of the test's own sits between the daemon and Debian's docker-registry."""
import concurrent.futures, json, os, re, subprocess, urllib.parse
import pytest
from lib import procs, registry as reglib
from lib.client import curl, sha
from lib.containerd import Containerd
from lib.daemon import binary
from lib.faultproxy import FaultProxy

OCI = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ("application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, "
          "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*")


@pytest.fixture
def fault(registry):
    f = FaultProxy(registry.port)
    yield f
    f.stop()


def mirror_daemon(daemon_factory, port, manifests="", workers=2):
    """A daemon whose mirror is the fault proxy; `manifests`: more `proxy.manifests` keys, one line."""
    return daemon_factory(workers=workers, proxy_yaml=f"""
        registryMirror:
          url: http://127.0.0.1:{port}
        manifests:
          upstreamTimeout: 2s
          {manifests}
        """)


def tag_requests(fault, repo, tag, method=None):
    return fault.count(lambda r: r["path"].split("?")[0] == f"/v2/{repo}/manifests/{tag}" and (method is None or r["method"] == method))


def get(d, path, *extra):
    """(status, headers, body) of a GET through the mirror."""
    r = subprocess.run(["curl", "-s", "-D", "-", "-o", "-", "-H", f"Accept: {ACCEPT}", *extra, f"{d.url}{path}"],
                       capture_output=True, timeout=60)
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def test_fifty_concurrent_tag_gets_on_two_workers_cost_one_upstream_get_then_a_head(daemon_factory, fault, images):
    d = mirror_daemon(daemon_factory, fault.port, manifests="revalidateAfter: 1h")
    _, mdig, _ = images["small"]
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: get(d, "/v2/test/img/manifests/1"), range(50)))
    assert all(a[0] == 200 for a in answers), [a[0] for a in answers]
    assert {a[1]["docker-content-digest"] for a in answers} == {mdig}
    assert all(sha(a[2]) == mdig for a in answers), "the manifest's exact bytes"
    assert {a[1]["content-type"] for a in answers} == {OCI}
    assert tag_requests(fault, "test/img", "1") == 1, fault.requests
    # A client's HEAD of a fresh tag never reaches the registry.
    r = subprocess.run(["curl", "-sI", "-H", f"Accept: {ACCEPT}", f"{d.url}/v2/test/img/manifests/1"], capture_output=True, text=True)
    assert " 200" in r.stdout.splitlines()[0] and mdig in r.stdout
    assert tag_requests(fault, "test/img", "1") == 1

    # Stale now: revalidated with a HEAD, not fetched again.
    d2 = mirror_daemon(daemon_factory, fault.port, manifests="revalidateAfter: 0s")
    assert get(d2, "/v2/test/img/manifests/1")[0] == 200
    fault.clear()
    s, h, body = get(d2, "/v2/test/img/manifests/1")
    assert s == 200 and sha(body) == mdig
    assert tag_requests(fault, "test/img", "1", "HEAD") == 1 and tag_requests(fault, "test/img", "1", "GET") == 0, fault.requests
    line = d2.access(mode="mirror", until=lambda ls: any(l.get("tag") == "revalidated" for l in ls))
    assert any(l.get("tag") == "revalidated" for l in line)


def test_a_retagged_image_is_served_after_revalidation_and_never_for_another_accept_set(daemon_factory, fault, registry, images, workdir):
    other = os.path.join(workdir, "oci-retag")
    odig, _ = reglib.build_image(other, "--small", "--add-file", "/bin/true:bin/true")
    _, mdig, _ = images["small"]
    assert odig != mdig
    registry.push(images["small"][0], "test/retag")
    d = mirror_daemon(daemon_factory, fault.port, manifests="revalidateAfter: 2s")
    assert get(d, "/v2/test/retag/manifests/1")[1]["docker-content-digest"] == mdig
    registry.push(other, "test/retag")
    fault.clear()
    # Until revalidateAfter passes the cached tag answers, then the new digest (a HEAD said it moved).
    seen = []
    procs.wait_until(lambda: seen.append(get(d, "/v2/test/retag/manifests/1")) or seen[-1][1].get("docker-content-digest") == odig,
                     timeout=20, what="the new digest")
    assert sha(seen[-1][2]) == odig
    assert tag_requests(fault, "test/retag", "1", "HEAD") >= 1 and tag_requests(fault, "test/retag", "1", "GET") == 1, fault.requests
    # Another Accept set is another record: its own upstream request, never the other set's answer.
    before = tag_requests(fault, "test/retag", "1")
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Accept: {OCI}",
                        f"{d.url}/v2/test/retag/manifests/1"], capture_output=True, text=True)
    assert r.stdout == "200"
    assert tag_requests(fault, "test/retag", "1") == before + 1


@pytest.mark.parametrize("mode", ["refuse", "hang", "503", "429"])
def test_ctr_pull_of_an_image_pulled_before_succeeds_while_the_registry_fails(daemon_factory, fault, images, workdir, etc_hosts, mode):
    d = mirror_daemon(daemon_factory, fault.port, manifests="revalidateAfter: 0s")
    host = f"reg-origin.test:{procs.free_port()}"
    ref = f"{host}/test/img:1"
    first = Containerd(workdir)
    try:
        first.write_hosts_toml(host, server=f"http://{host}", mirror=d.url, header_registry=f"http://127.0.0.1:{fault.port}")
        first.ctr("image", "pull", "--hosts-dir", first.hosts_dir, ref)
    finally:
        first.stop()
    fault.set_mode(mode, retry_after=30)
    fault.clear()
    fresh = Containerd(workdir)  # a fresh content store: every byte comes from the daemon
    try:
        fresh.write_hosts_toml(host, server=f"http://{host}", mirror=d.url, header_registry=f"http://127.0.0.1:{fault.port}")
        fresh.ctr("image", "pull", "--hosts-dir", fresh.hosts_dir, ref, timeout=60)
        assert ref in fresh.ctr("image", "ls", "-q").stdout
        fresh.ctr("image", "check")
    finally:
        fresh.stop()
    lines = d.access(mode="mirror", until=lambda ls: any(l.get("tag") == "stale" for l in ls))
    assert any(l.get("tag") == "stale" for l in lines), lines
    # Failing fast: the first failure marks the registry down for every worker; the pull's other
    # requests (tag, manifest, config, layers) do not each go and wait for it.
    if mode != "refuse":
        assert fault.count() <= 2, fault.requests
    if mode == "429":
        # Retry-After: 30 holds: nothing more goes upstream, the answers come from the cache.
        s, h, _ = get(d, "/v2/test/img/manifests/1")
        assert s == 200 and h.get("warning", "").startswith("110")
        assert fault.count() <= 1, fault.requests


def test_a_private_repository_during_an_outage_goes_only_to_a_credential_granted_before(daemon_factory, token_registry, images):
    fault = FaultProxy(token_registry.port)
    try:
        d = mirror_daemon(daemon_factory, fault.port, manifests="revalidateAfter: 0s")
        _, mdig, blobs = images["small"]
        s, h, _ = get(d, "/v2/test/img/manifests/1")
        assert s == 401, "the token registry wants a token"
        m = re.search(r'realm="([^"]+)",service="([^"]+)"', h["www-authenticate"])
        realm, service = m.group(1), m.group(2)

        def token():
            q = urllib.parse.urlencode({"service": service, "scope": "repository:test/img:pull"})
            r = curl("-s", "-u", "testuser:testpass", f"{realm}?{q}")
            return json.loads(r.stdout)["token"]

        granted = token()
        auth = ["-H", f"Authorization: Bearer {granted}"]
        s, _, body = get(d, "/v2/test/img/manifests/1", *auth)
        assert s == 200 and sha(body) == mdig
        s, _, blob = get(d, f"/v2/test/img/blobs/{blobs[0]}", *auth)
        assert s == 200 and sha(blob) == blobs[0]

        fault.set_mode("503", retry_after=0)
        s, h, body = get(d, "/v2/test/img/manifests/1", *auth)
        assert s == 200 and sha(body) == mdig and h["warning"].startswith("110"), (s, h)
        s, _, blob = get(d, f"/v2/test/img/blobs/{blobs[0]}", *auth)
        assert s == 200 and sha(blob) == blobs[0]
        # Never granted: no credential, or a token the registry never saw accepted here.
        s, h, body = get(d, "/v2/test/img/manifests/1")
        assert s == 401 and "www-authenticate" in h and mdig.encode() not in body
        s, _, _ = get(d, f"/v2/test/img/blobs/{blobs[0]}")
        assert s == 401
        s, _, _ = get(d, "/v2/test/img/manifests/1", "-H", f"Authorization: Bearer {token()}")
        assert s == 401
        assert any(l.get("msg") == "registry unavailable: serving a stale tag" for l in d.log_lines())
    finally:
        fault.stop()


def test_a_blob_cut_at_half_by_the_registry_resumes_by_range_and_costs_the_origin_one_copy(daemon_factory, fault, registry, workdir):
    layout = os.path.join(workdir, "oci-cut")
    _, blobs = reglib.build_image(layout, "--big-mib", "24", "--gzip-level", "1")
    registry.push(layout, "test/cut")
    layer = blobs[0]
    size = os.path.getsize(reglib.blob_path(layout, layer))
    d = mirror_daemon(daemon_factory, fault.port)
    fault.cut_next_blob(0.5)
    s, _, body = get(d, f"/v2/test/cut/blobs/{layer}")
    assert s == 200 and len(body) == size and sha(body) == layer
    mine = [r for r in fault.requests if layer in r["path"]]
    assert any(r["status"] == "cut" for r in mine), mine
    assert any(r["range"] for r in mine), "resumed with a Range request"
    sent = sum(r["bytes"] for r in mine)
    assert sent <= size * 1.1, f"the origin sent {sent / size:.2f}x the blob"
    assert any(l.get("msg") == "origin cut the download: resuming from the last whole piece" for l in d.log_lines())


def test_a_manifest_by_digest_is_cached_verified_and_purge_drops_a_tag(daemon_factory, fault, images):
    d = mirror_daemon(daemon_factory, fault.port, manifests="revalidateAfter: 1h")
    _, mdig, _ = images["small"]
    for _ in range(3):
        s, h, body = get(d, f"/v2/test/img/manifests/{mdig}")
        assert s == 200 and sha(body) == mdig and h["content-type"] == OCI
    assert fault.count(lambda r: r["method"] == "GET" and mdig in r["path"]) == 1, fault.requests
    assert get(d, "/v2/test/img/manifests/1")[0] == 200
    assert tag_requests(fault, "test/img", "1") == 1
    r = subprocess.run([binary(), "purge", "--config", d.config, f"127.0.0.1:{fault.port}/test/img:1"], capture_output=True, text=True)
    assert r.returncode == 0 and "1" in r.stdout, (r.stdout, r.stderr)
    assert get(d, "/v2/test/img/manifests/1")[0] == 200
    assert tag_requests(fault, "test/img", "1") == 2, "after a purge the tag is asked again"


def test_manifests_enable_false_passes_every_tag_request_through(daemon_factory, fault):
    d = mirror_daemon(daemon_factory, fault.port, manifests="enable: false")
    for _ in range(3):
        assert get(d, "/v2/test/img/manifests/1")[0] == 200
    assert tag_requests(fault, "test/img", "1") == 3
    fault.set_mode("503")
    assert get(d, "/v2/test/img/manifests/1")[0] == 503


@pytest.mark.parametrize("mode", ["hang", "429"])
def test_skopeo_copy_through_the_mirror_succeeds_while_the_registry_fails(daemon_factory, fault, images, workdir, etc_hosts, mode):
    """skopeo (registries.conf with the daemon as mirror) pings /v2/ and GETs the tag: both answer
    from the cache while the registry hangs or answers 429."""
    d = mirror_daemon(daemon_factory, fault.port, manifests="revalidateAfter: 0s")
    host = f"reg-origin.test:{procs.free_port()}"  # nothing listens there: only the mirror can serve
    conf = os.path.join(d.dir, "registries.conf")
    with open(conf, "w") as f:
        f.write(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n[[registry.mirror]]\nlocation = "127.0.0.1:{d.port}"\ninsecure = true\n')
    _, mdig, blobs = images["small"]

    def copy(n):
        out = os.path.join(d.dir, f"copy-{n}")
        r = subprocess.run(["skopeo", "--registries-conf", conf, "copy", "--src-tls-verify=false", f"docker://{host}/test/img:1",
                            f"oci:{out}:1"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return {os.path.basename(p) for p in os.listdir(os.path.join(out, "blobs", "sha256"))}

    copy(1)
    fault.set_mode(mode, retry_after=30)
    fault.clear()
    got = copy(2)
    assert {b[7:] for b in blobs} <= got and mdig[7:] in got, got
    assert fault.count() <= 2, fault.requests
    assert any(l.get("tag") == "stale" for l in d.access(mode="mirror", until=lambda ls: any(l.get("tag") == "stale" for l in ls)))
