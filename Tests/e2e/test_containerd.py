"""containerd pulls through the daemon: as its HTTP proxy, and as a registry mirror (hosts.toml)."""
import os
import pytest
from lib.containerd import Containerd


@pytest.fixture
def containerd(workdir):
    c = Containerd(workdir)
    yield c
    c.stop()


def test_ctr_pull_through_http_proxy(containerd, daemon, registry, images, etc_hosts):
    ref = f"reg-plain.test:{registry.port}/test/img:1"
    env = {"PATH": os.environ["PATH"], "HTTP_PROXY": daemon.url, "http_proxy": daemon.url}
    containerd.ctr("image", "pull", "--plain-http", ref, env=env)
    assert ref in containerd.ctr("image", "ls", "-q").stdout
    # Every blob of the image went through the proxy, byte for byte (containerd verifies digests).
    _, mdig, blobs = images["small"]
    lines = daemon.access(mode="proxy", status=200,
                          until=lambda ls: set(blobs) <= {l["url"].rsplit("/", 1)[1] for l in ls})
    assert set(blobs) <= {l["url"].rsplit("/", 1)[1] for l in lines}, (blobs, lines)
    layer_lines = [l for l in daemon.access(mode="proxy") if "/blobs/" in l["url"] and l["method"] == "GET"]
    assert layer_lines and all(l["decision"] == "cache" for l in layer_lines)


def test_ctr_pull_through_mirror_with_dead_origin(containerd, daemon, registry, images, etc_hosts):
    """The origin in hosts.toml is unreachable: the pull can only have been served by the mirror."""
    host = containerd.mirror_with_dead_origin(daemon.url, f"http://{registry.addr}")
    ref = f"{host}/test/img:1"
    containerd.ctr("image", "pull", "--hosts-dir", containerd.hosts_dir, ref)
    assert ref in containerd.ctr("image", "ls", "-q").stdout
    _, mdig, blobs = images["small"]
    served = lambda ls: {l["url"].split("?")[0].rsplit("/", 1)[1] for l in ls}
    mirror = daemon.access(mode="mirror", status=200, until=lambda ls: served(ls) >= set(blobs))
    assert served(mirror) >= set(blobs)
    assert all("ns=" in l["url"] for l in mirror), "containerd sends ?ns=; the daemon strips it upstream"
    assert all(l["upstream"] == registry.addr for l in mirror)
    # And containerd can unpack and run what it pulled: the busybox layer is intact.
    containerd.ctr("image", "check")


def test_ctr_pull_big_layer_through_mirror(containerd, daemon, registry, images, etc_hosts):
    host = containerd.mirror_with_dead_origin(daemon.url, f"http://{registry.addr}")
    ref = f"{host}/test/big:1"
    containerd.ctr("image", "pull", "--hosts-dir", containerd.hosts_dir, ref)
    big_blob = images["big"][2][0]
    lines = [l for l in daemon.access(mode="mirror", status=200, until=lambda ls: any(big_blob in l["url"] for l in ls))
             if big_blob in l["url"]]
    assert lines and lines[-1]["bytes"] == os.path.getsize(os.path.join(images["big"][0], "blobs", "sha256", big_blob[7:]))
