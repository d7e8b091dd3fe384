"""The shared piece cache: one origin download per blob across all workers, verified, ranges, restart,
authorization, takeover when the downloading worker dies, garbage collection, containerd pulls."""
import http.server, os, shutil, signal, socket, subprocess, threading, time
import pytest
from lib.origin import serving
from lib import procs, registry as reglib
from lib.containerd import Containerd
from lib.client import curl, sha


@pytest.fixture
def cached(daemon_factory, registry):
    return daemon_factory(proxy_yaml=f"registryMirror:\n  url: http://{registry.addr}\n")


def big(images):
    layout, _, blobs = images["big"]
    return blobs[0], os.path.getsize(reglib.blob_path(layout, blobs[0]))


def test_eight_concurrent_clients_one_origin_download(cached, registry, images):
    blob, size = big(images)
    before = reglib.origin_bytes(registry.log(), blob)
    url = f"{cached.url}/v2/test/big/blobs/{blob}"
    ps = [subprocess.Popen(["curl", "-sS", "-D", "-", "-o", "-", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
          for _ in range(8)]
    outs = [p.communicate(timeout=180) for p in ps]
    for out, err in outs:
        head, body = out.split(b"\r\n\r\n", 1)
        assert b" 200 " in head.split(b"\r\n")[0], err
        assert sha(body) == blob and len(body) == size
        assert f"X-Dragonfly-Task: {blob[7:]}".encode() in head and f"Docker-Content-Digest: {blob}".encode() in head
        assert b"Accept-Ranges: bytes" in head and b"X-Dragonfly-Peer: " in head
    assert procs.wait_until(lambda: reglib.origin_bytes(registry.log(), blob) - before == size or None, timeout=10,
                            what="registry log") and reglib.origin_bytes(registry.log(), blob) - before == size, \
        "the registry served the blob exactly once"
    # Both workers served some of the eight: the download was shared across processes.
    pids = {l["pid"] for l in cached.access(mode="mirror", status=200, until=lambda ls: len(ls) >= 8)}
    assert len(pids) == 2
    logs = open(os.path.join(cached.logdir, "daemon", "core.log")).read()
    assert f"register peer task result:true[200] for taskId:{blob[7:]}" in logs


def test_hits_and_restart_cost_the_origin_nothing(cached, registry, images):
    blob, size = big(images)
    url = f"{cached.url}/v2/test/big/blobs/{blob}"
    assert sha(curl(url).stdout) == blob
    after_first = reglib.origin_bytes(registry.log(), blob)
    assert sha(curl(url).stdout) == blob
    cached.restart()
    assert sha(curl(url).stdout) == blob
    assert reglib.origin_bytes(registry.log(), blob) == after_first, "hits and a restart fetched no blob bytes"
    sources = [l.get("source") for l in cached.access(mode="mirror", status=200, until=lambda ls: len(ls) >= 3)]
    assert sources[-2:] == ["cache", "cache"]


def test_ranges_byte_exact(cached, registry, images):
    blob, size = big(images)
    data = open(reglib.blob_path(images["big"][0], blob), "rb").read()
    url = f"{cached.url}/v2/test/big/blobs/{blob}"
    # Uncached: the range starts the whole-blob download and is answered from it.
    r = curl("-i", "-H", "Range: bytes=100-199", url)
    head, body = r.stdout.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 206 ") and f"Content-Range: bytes 100-199/{size}".encode() in head
    assert body == data[100:200]
    for rng, want in [(f"bytes={size - 10}-", data[-10:]), ("bytes=-5", data[-5:]),
                      ("bytes=4194300-4194400", data[4194300:4194401]), ("bytes=0-0", data[:1])]:
        assert curl("-H", f"Range: {rng}", url).stdout == want, rng
    r = curl("-i", "-H", "Range: bytes=0-1,5-6", url)
    assert r.stdout.startswith(b"HTTP/1.1 416 ")
    r = curl("-i", "-H", f"Range: bytes={size}-", url)
    assert r.stdout.startswith(b"HTTP/1.1 416 ") and f"Content-Range: bytes */{size}".encode() in r.stdout
    h = curl("-sI", url).stdout
    assert h.startswith(b"HTTP/1.1 200 ") and f"Content-Length: {size}".encode() in h and b"X-Dragonfly-Task" in h


@pytest.fixture
def scratch_registry(workdir, images):
    r = reglib.Registry(workdir)
    r.push(images["small"][0], "test/img")
    yield r
    r.stop()


def test_corrupt_blob_never_served_as_good_and_never_cached(daemon_factory, scratch_registry, images):
    layout, _, blobs = images["small"]
    blob = max(blobs, key=lambda b: os.path.getsize(reglib.blob_path(layout, b)))  # the busybox layer
    path = os.path.join(scratch_registry.dir, "data", "docker", "registry", "v2", "blobs", "sha256", blob[7:9], blob[7:], "data")
    with open(path, "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    d = daemon_factory(proxy_yaml=f"registryMirror:\n  url: http://{scratch_registry.addr}\n")
    url = f"{d.url}/v2/test/img/blobs/{blob}"
    for attempt in range(3):
        r = curl("-i", url, check=False)
        assert_never_served_whole(r, blob)
        assert not [f for f in os.listdir(d.cache_dir) if f.startswith(blob[7:])], "nothing kept"
        assert reglib.origin_bytes(scratch_registry.log(), blob) == (attempt + 1) * os.path.getsize(path), \
            "the next request goes to the origin again"
    assert any(l["msg"] == "digest mismatch: not cached" for l in d.log_lines())
    # Pass-through is verified too (registryMirror.direct: nothing cached, every byte relayed).
    direct = daemon_factory(proxy_yaml=f"registryMirror:\n  url: http://{scratch_registry.addr}\n  direct: true\n")
    for _ in range(2):
        r = curl("-i", f"{direct.url}/v2/test/img/blobs/{blob}", check=False)
        assert_never_served_whole(r, blob)
    assert any(l["msg"] == "blob does not match its digest: response aborted" for l in direct.log_lines())


def assert_never_served_whole(r, blob):
    """Either a 502 naming the digest (found before the head) or a cut transfer: never a clean 200."""
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 502 "):
        assert blob.encode() in body, body
        return
    assert r.returncode != 0, "the client sees a broken transfer, not a clean end"
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    assert len(body) < length


def test_cached_blob_needs_the_registrys_yes(daemon_factory, htpasswd_registry, images):
    d = daemon_factory(proxy_yaml=f"registryMirror:\n  url: http://{htpasswd_registry.addr}\n")
    blob = images["small"][2][0]
    url = f"{d.url}/v2/test/img/blobs/{blob}"
    assert sha(curl("-u", "testuser:testpass", url).stdout) == blob
    before = reglib.origin_bytes(htpasswd_registry.log(), blob)
    r = curl("-i", url)
    assert r.stdout.startswith(b"HTTP/1.1 401 ") and b"www-authenticate: basic" in r.stdout.lower()
    assert blob.encode() not in r.stdout and len(r.stdout.split(b"\r\n\r\n", 1)[1]) == 0
    r = curl("-i", "-u", "testuser:wrong", url)
    assert r.stdout.startswith(b"HTTP/1.1 401 ")
    assert sha(curl("-u", "testuser:testpass", url).stdout) == blob
    assert reglib.origin_bytes(htpasswd_registry.log(), blob) == before, "served from the cache, only HEADs upstream"


class BlobOrigin(http.server.BaseHTTPRequestHandler):
    """A registry of one blob (`data`, named `digest`, set on the subclass); subclasses say how its
    bytes go out."""
    protocol_version = "HTTP/1.1"
    data = b""
    digest = ""

    def log_message(self, *a):
        pass

    def head(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(type(self).data)))
        self.send_header("Docker-Content-Digest", type(self).digest)
        self.end_headers()

    def do_HEAD(self):
        self.head()


class SlowOrigin(BlobOrigin):
    """Trickles the blob (about 40 MiB/s), so a download can be interrupted."""
    gets = 0

    def do_GET(self):
        SlowOrigin.gets += 1
        self.head()
        try:
            for i in range(0, len(SlowOrigin.data), 1 << 20):
                self.wfile.write(SlowOrigin.data[i:i + (1 << 20)])
                time.sleep(0.025)
        except (BrokenPipeError, ConnectionResetError):
            pass


def test_kill9_of_the_downloading_worker_mid_blob(daemon_factory, images):
    blob, size = big(images)
    SlowOrigin.data = open(reglib.blob_path(images["big"][0], blob), "rb").read()
    SlowOrigin.digest = blob
    SlowOrigin.gets = 0
    with serving(SlowOrigin) as port:
        d = daemon_factory(proxy_yaml=f"registryMirror:\n  url: http://127.0.0.1:{port}\n")
        url = f"{d.url}/v2/test/big/blobs/{blob}"
        first = socket.create_connection(("127.0.0.1", d.port))
        first.sendall(f"GET /v2/test/big/blobs/{blob} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert first.recv(100).startswith(b"HTTP/1.1 200")
        port = first.getsockname()[1]
        out = subprocess.run(["ss", "-Htnp", "state", "established", f"( dport = :{port} )"], capture_output=True, text=True).stdout
        downloader = next(w for w in d.workers() if f"pid={w}," in out)
        joiner = subprocess.Popen(["curl", "-sS", "-o", "-", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.wait_until(lambda: len(os.listdir(d.cache_dir)) >= 2 and SlowOrigin.gets == 1, what="download under way")
        time.sleep(0.3)  # let some pieces land before the kill (the assertion below does not depend on it)
        os.kill(downloader, signal.SIGKILL)
        body, err = joiner.communicate(timeout=120)
        assert joiner.returncode == 0 and sha(body) == blob, err
        assert SlowOrigin.gets == 2, "another worker took the download over"
        assert any(l["msg"] == "task downloader is gone: taking over" for l in d.log_lines())
        first.settimeout(10)
        got = b""
        try:
            while True:
                b = first.recv(1 << 20)
                if not b:
                    break
                got += b
        except (ConnectionResetError, TimeoutError):
            pass
        assert len(got) < size, "the dead worker's client never got a complete body"
        first.close()


class GatedOrigin(BlobOrigin):
    """Sends the first MiB of the blob, then waits for `gate` before the rest."""
    gate = threading.Event()

    def do_GET(self):
        self.head()
        try:
            self.wfile.write(GatedOrigin.data[:1 << 20])
            self.wfile.flush()
            GatedOrigin.gate.wait(60)
            self.wfile.write(GatedOrigin.data[1 << 20:])
        except (BrokenPipeError, ConnectionResetError):
            pass


def test_a_miss_streams_as_the_bytes_arrive_not_a_piece_at_a_time(daemon_factory, images):
    """The downloading worker's own client gets the bytes from the download's buffer as they come:
    a whole first MiB while the origin holds back the rest of the first 4 MiB piece."""
    blob, size = big(images)
    GatedOrigin.data = open(reglib.blob_path(images["big"][0], blob), "rb").read()
    GatedOrigin.digest = blob
    GatedOrigin.gate.clear()
    with serving(GatedOrigin) as port:
        d = daemon_factory(workers=1, proxy_yaml=f"registryMirror:\n  url: http://127.0.0.1:{port}\n")
        c = socket.create_connection(("127.0.0.1", d.port))
        c.sendall(f"GET /v2/test/big/blobs/{blob} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = bytearray()
        c.settimeout(0.2)

        def body_so_far():
            try:
                b = c.recv(1 << 20)
                got.extend(b)
            except TimeoutError:
                pass
            head_end = got.find(b"\r\n\r\n")
            return head_end >= 0 and len(got) - head_end - 4 >= 1 << 20

        try:
            procs.wait_until(body_so_far, timeout=15, what="the first MiB before the rest of its piece exists")
        finally:
            GatedOrigin.gate.set()
        c.settimeout(30)
        while True:
            b = c.recv(1 << 20)
            if not b:
                break
            got.extend(b)
            if len(got) >= got.find(b"\r\n\r\n") + 4 + size:
                break
        c.close()
        head_end = got.find(b"\r\n\r\n") + 4
        assert got.startswith(b"HTTP/1.1 200") and sha(bytes(got[head_end:])) == blob


def test_gc_by_expiry_and_by_threshold(daemon_factory, registry, images):
    blob, size = big(images)
    small = images["small"][2][0]
    d = daemon_factory(extra_yaml="gcInterval: 1s\nstorage:\n  taskExpireTime: 3s\n",
                       proxy_yaml=f"registryMirror:\n  url: http://{registry.addr}\n")
    curl("-o", "/dev/null", f"{d.url}/v2/test/img/blobs/{small}")
    assert os.path.exists(os.path.join(d.cache_dir, small[7:] + ".data"))
    procs.wait_until(lambda: not os.path.exists(os.path.join(d.cache_dir, small[7:] + ".meta")), timeout=15, what="expiry")
    t = daemon_factory(extra_yaml="gcInterval: 1s\nstorage:\n  diskGCThreshold: 100Mi\n",
                       proxy_yaml=f"registryMirror:\n  url: http://{registry.addr}\n")
    curl("-o", "/dev/null", f"{t.url}/v2/test/img/blobs/{small}")
    curl("-o", "/dev/null", f"{t.url}/v2/test/big/blobs/{blob}")
    # Over 100 MiB: least recently used first (the small blob), then the big one, until under.
    procs.wait_until(lambda: not os.path.exists(os.path.join(t.cache_dir, blob[7:] + ".meta")), timeout=15, what="threshold")
    # The worker logs the eviction after it removed the files: poll for the line too.
    procs.wait_until(lambda: any(l["msg"] == "cache gc" for l in t.log_lines()), timeout=15, what="cache gc log line")


def test_ctr_pulls_served_from_cache(daemon_factory, registry, images, workdir, etc_hosts):
    d = daemon_factory(proxy_yaml=f"registryMirror:\n  dynamic: true\n  url: http://{registry.addr}\nproxies:\n  - regx: blobs/sha256.*\n")
    _, _, blobs = images["small"]
    layer = blobs[0]
    for round in range(2):
        c = Containerd(workdir)
        try:
            host = c.mirror_with_dead_origin(d.url, f"http://{registry.addr}")
            before = reglib.origin_bytes(registry.log(), layer)
            c.ctr("image", "pull", "--hosts-dir", c.hosts_dir, f"{host}/test/img:1")
            # Through the forward proxy too: the same blobs, now hits.
            env = {"PATH": os.environ["PATH"], "HTTP_PROXY": d.url, "http_proxy": d.url}
            c.ctr("-n", "other", "image", "pull", "--plain-http", f"reg-plain.test:{registry.port}/test/img:1", env=env)
            if round == 1:
                assert reglib.origin_bytes(registry.log(), layer) == before, "the second round came from the cache"
        finally:
            c.stop()
    sources = {l.get("source") for l in d.access(status=200) if "/blobs/" in l["url"] and l["method"] == "GET"}
    assert "cache" in sources


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], check=True)
    yield str(mnt)
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_stops_caching_and_clients_still_get_everything(daemon_factory, registry, images, small_disk):
    blob, size = big(images)
    d = daemon_factory(data_dir=small_disk, proxy_yaml=f"registryMirror:\n  url: http://{registry.addr}\n")
    url = f"{d.url}/v2/test/big/blobs/{blob}"
    ps = [subprocess.Popen(["curl", "-sS", "-o", "-", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    for p in ps:
        body, err = p.communicate(timeout=180)
        assert p.returncode == 0 and len(body) == size and sha(body) == blob, err
    full = [l for l in d.log_lines() if l["msg"] == "disk full: not caching"]
    assert len(full) <= 2 and full, "logged once (per worker)"
    assert not [f for f in os.listdir(d.cache_dir) if f.startswith(blob[7:])], "nothing of the task is kept"


FLUSH_GATE_SHIM = r"""
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
/* fdatasync waits until the file named by DFGET_TEST_FLUSH_GATE exists. */
int fdatasync(int fd) {
    const char *gate = getenv("DFGET_TEST_FLUSH_GATE");
    while (gate && access(gate, F_OK) != 0) usleep(10000);
    return syscall(SYS_fdatasync, fd);
}
"""


def test_the_client_of_a_miss_gets_its_last_byte_once_verified_not_once_flushed(daemon_factory, registry, workdir, images):
    """The one flush that seals a task is for the cache's durability, not the client's: the client
    of a miss gets its whole verified body while that flush is still running (held here by an
    fdatasync that waits for a gate file), and the task counts as complete only after it."""
    blob, size = big(images)
    shim, gate = os.path.join(workdir, "flushgate.so"), os.path.join(workdir, "flush-gate-open")
    src = shim[:-3] + ".c"
    with open(src, "w") as f:
        f.write(FLUSH_GATE_SHIM)
    cc = shutil.which("cc") or shutil.which("clang")
    subprocess.run([cc, "-shared", "-fPIC", "-o", shim, src], check=True)
    d = daemon_factory(workers=1, proxy_yaml=f"registryMirror:\n  url: http://{registry.addr}\n",
                       env={"LD_PRELOAD": shim, "DFGET_TEST_FLUSH_GATE": gate})
    url = f"{d.url}/v2/test/big/blobs/{blob}"
    try:
        r = curl("--max-time", "30", "-o", "-", "-w", "%{http_code}", url)
        assert r.stdout[-3:] == b"200" and sha(r.stdout[:-3]) == blob and len(r.stdout) - 3 == size
        # The flush is still held: the task is not complete, so it was not downloaded yet.
        assert not [l for l in d.log_lines() if l["msg"] == "task downloaded"]
    finally:
        open(gate, "w").close()
    line = procs.wait_until(lambda: [l for l in d.log_lines() if l["msg"] == "task downloaded"] or None,
                            what="the task sealed once the flush ran")[0]
    assert "error" not in line
