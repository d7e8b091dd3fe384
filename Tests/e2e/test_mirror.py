"""Registry mirror: origin-form requests to the upstream from X-Dragonfly-Registry or registryMirror.url."""
import hashlib
from lib import procs
from lib.client import curl


def test_blob_via_header_is_byte_exact_and_ns_not_forwarded(daemon, registry, images):
    blob = images["big"][2][0]
    r = curl("-H", f"X-Dragonfly-Registry: http://{registry.addr}", "-o", "-",
             f"{daemon.url}/v2/test/big/blobs/{blob}?ns={registry.addr}")
    assert r.returncode == 0 and "sha256:" + hashlib.sha256(r.stdout).hexdigest() == blob
    line = daemon.access(mode="mirror", status=200)[-1]
    assert line["decision"] == "cache" and line["upstream"] == registry.addr and line["bytes"] == len(r.stdout)
    # The registry saw the path without ?ns= and without the X-Dragonfly header.
    seen = [l for l in registry.log().splitlines() if f"/v2/test/big/blobs/{blob}" in l]
    assert seen and not any("ns=" in l for l in seen)


def test_manifest_and_head_via_config_url(daemon, registry, images):
    _, mdig, _ = images["small"]
    accept = "application/vnd.oci.image.manifest.v1+json"
    r = curl("-i", "-H", f"Accept: {accept}", f"{daemon.url}/v2/test/img/manifests/1")
    head, body = r.stdout.split(b"\r\n\r\n", 1)
    assert b" 200 " in head.split(b"\r\n")[0] and f"Content-Type: {accept}".encode() in head
    assert "sha256:" + hashlib.sha256(body).hexdigest() == mdig
    r = curl("-sI", "-H", f"Accept: {accept}", f"{daemon.url}/v2/test/img/manifests/1")
    assert b" 200 " in r.stdout.split(b"\r\n")[0]
    assert f"Content-Length: {len(body)}".encode() in r.stdout and f"Docker-Content-Digest: {mdig}".encode() in r.stdout
    line = daemon.access(mode="mirror", method="HEAD")[-1]
    assert line["decision"] == "direct"


def test_upstream_404_passes_through(daemon):
    r = curl("-i", f"{daemon.url}/v2/test/nope/manifests/1")
    assert r.stdout.startswith(b"HTTP/1.1 404 ") and b"MANIFEST_UNKNOWN" in r.stdout


def test_no_url_and_no_header_is_404_disabled(daemon_factory):
    d = daemon_factory(proxy_yaml="registryMirror:\n  dynamic: true\n")
    r = curl("-i", f"{d.url}/v2/")
    assert r.stdout.startswith(b"HTTP/1.1 404 ") and b"registry mirror feature is disabled" in r.stdout


def test_header_ignored_unless_dynamic(daemon_factory, registry):
    dead = procs.free_port()
    d = daemon_factory(proxy_yaml=f"registryMirror:\n  url: http://{registry.addr}\n")
    r = curl("-i", "-H", f"X-Dragonfly-Registry: http://127.0.0.1:{dead}", f"{d.url}/v2/")
    assert r.stdout.startswith(b"HTTP/1.1 200 ")
    assert d.access(url="/v2/")[-1]["upstream"] == registry.addr


def test_malformed_registry_header_is_400(daemon):
    r = curl("-i", "-H", "X-Dragonfly-Registry: not a url", f"{daemon.url}/v2/")
    assert r.stdout.startswith(b"HTTP/1.1 400 ") and b"X-Dragonfly-Registry" in r.stdout


def test_mirror_direct_and_use_proxies(daemon_factory, registry, images):
    blob = images["small"][2][0]
    d = daemon_factory(proxy_yaml=f"registryMirror:\n  url: http://{registry.addr}\n  direct: true\n")
    assert curl("-o", "/dev/null", f"{d.url}/v2/test/img/blobs/{blob}").returncode == 0
    assert d.access(mode="mirror")[-1]["decision"] == "direct"
    d2 = daemon_factory(proxy_yaml=f"registryMirror:\n  url: http://{registry.addr}\n  useProxies: true\n"
                                   "proxies:\n  - regx: blobs/sha256.*\n    direct: true\n")
    assert curl("-o", "/dev/null", f"{d2.url}/v2/test/img/blobs/{blob}").returncode == 0
    line = d2.access(mode="mirror")[-1]
    assert line["decision"] == "direct" and line["rule"] == "blobs/sha256.*"
