"""An attacker on the daemon's network: crafted requests kill no worker, the mirror is pull-only,
the daemon is no relay to itself or to targets the whiteList leaves out, and basicAuth guards
every request form."""
import http.server, os
import pytest
from lib.origin import serving
from lib import registry as reglib
from lib.client import curl, raw, sha




class Counting(http.server.BaseHTTPRequestHandler):
    """An origin that counts what reaches it; blob GETs get an absurd Content-Length."""
    protocol_version = "HTTP/1.1"
    seen = []

    def log_message(self, *a):
        pass

    def answer(self):
        Counting.seen.append((self.command, self.path))
        if "/blobs/" in self.path and self.command == "GET":
            self.send_response(200)
            self.send_header("Content-Length", "9999999999999999999")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            return
        body = b"origin\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = answer


@pytest.fixture
def origin():
    Counting.seen = []
    with serving(Counting) as port:
        yield port


def test_crafted_requests_kill_no_worker(daemon_factory, registry, images, origin):
    d = daemon_factory(extra_yaml="upstreamTimeout: 2s\n", proxy_yaml=f"registryMirror:\n  dynamic: true\n  url: http://{registry.addr}\n")
    workers = sorted(d.workers())
    _, _, blobs = images["small"]
    blob = blobs[0]
    url = f"{d.url}/v2/test/img/blobs/{blob}"
    body = curl(url).stdout
    assert sha(body) == blob
    for _ in range(2):  # twice: both workers see each case
        r = curl("-i", "-H", "Range: bytes=0-9223372036854775807", url)
        assert r.stdout.startswith(b"HTTP/1.1 206 ") and r.stdout.endswith(body)
        r = curl("-i", f"{d.url}/v2/blobs/{blob}", check=False)
        assert r.returncode == 0 and r.stdout.startswith(b"HTTP/1.1 ")
        # An origin announcing more bytes than fit in an Int64-sized task: refused, not trapped on.
        r = curl("-i", "-H", f"X-Dragonfly-Registry: http://127.0.0.1:{origin}", "--max-time", "20",
                 f"{d.url}/v2/x/blobs/sha256:{'ab' * 32}", check=False)
        assert b"HTTP/1.1 200 " not in r.stdout.split(b"\r\n")[0] or r.returncode != 0
    assert sorted(d.workers()) == workers, "no worker died"
    assert any(l.get("error", "").startswith("origin announced 9999999999999999999 bytes") for l in d.log_lines())


def test_mirror_is_pull_only(daemon_factory, origin):
    d = daemon_factory(proxy_yaml=f"registryMirror:\n  dynamic: true\n  url: http://127.0.0.1:{origin}\n")
    for method in ["PUT", "POST", "DELETE", "PATCH"]:
        r = curl("-i", "-X", method, "--data-binary", "x", f"{d.url}/v2/test/img/blobs/uploads/", check=False)
        assert r.stdout.startswith(b"HTTP/1.1 405 ") and b"Allow: GET, HEAD" in r.stdout, (method, r.stdout[:200])
    for path in ["/small.txt", "/v2/../small.txt", "/latest/meta-data/"]:
        r = raw(d.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Dragonfly-Registry: http://127.0.0.1:{origin}\r\nConnection: close\r\n\r\n".encode())
        assert r.startswith(b"HTTP/1.1 404 "), (path, r[:200])
    r = curl("-i", "-H", f"X-Dragonfly-Registry: http://127.0.0.1:{origin}/path", f"{d.url}/v2/", check=False)
    assert r.stdout.startswith(b"HTTP/1.1 400 ")
    r = curl("-i", "-H", f"X-Dragonfly-Registry: http://user@127.0.0.1:{origin}", f"{d.url}/v2/", check=False)
    assert r.stdout.startswith(b"HTTP/1.1 400 ")
    assert Counting.seen == [], "nothing refused reached the origin"
    r = curl("-i", f"{d.url}/v2/?ns=127.0.0.1:{origin}")
    assert r.stdout.startswith(b"HTTP/1.1 200 "), "ns naming the configured plain-HTTP registry keeps http"
    assert Counting.seen == [("GET", "/v2/")]


def test_the_daemon_never_proxies_to_itself(daemon_factory):
    d = daemon_factory(proxy_yaml="registryMirror:\n  dynamic: true\n")
    for target in [f"127.0.0.1:{d.port}", f"localhost:{d.peer_port}", f"127.0.0.2:{d.port}"]:
        r = raw(d.port, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        assert r.startswith(b"HTTP/1.1 403 ") and b"is this daemon" in r, (target, r[:200])
        r = curl("-i", "-x", d.url, f"http://{target}/v2/", check=False)
        assert r.stdout.startswith(b"HTTP/1.1 403 "), (target, r.stdout[:200])
        r = curl("-i", "-H", f"X-Dragonfly-Registry: http://{target}", f"{d.url}/v2/", check=False)
        assert r.stdout.startswith(b"HTTP/1.1 403 "), (target, r.stdout[:200])
    access = d.access(until=lambda lines: len(lines) >= 9)
    assert len(access) == 9, "each refused request was answered once, nothing nested"


def test_white_list_for_connect_and_absolute_uris(daemon_factory, registry, origin):
    d = daemon_factory(proxy_yaml=f"whiteList:\n  - host: 127.0.0.1\n    ports: ['{registry.port}']\n")
    r = curl("-i", "-x", d.url, f"http://{registry.addr}/v2/")
    assert r.stdout.startswith(b"HTTP/1.1 200 ")
    r = curl("-i", "-x", d.url, f"http://127.0.0.1:{origin}/v2/", check=False)
    assert r.stdout.startswith(b"HTTP/1.1 403 ") and b"not in proxy.whiteList" in r.stdout
    r = raw(d.port, f"CONNECT 127.0.0.1:{origin} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert r.startswith(b"HTTP/1.1 403 ")
    r = raw(d.port, f"CONNECT localhost:{registry.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert r.startswith(b"HTTP/1.1 403 "), "the host must match, not only the port"
    assert Counting.seen == []
    assert not any("open to anyone" in (l.get("warning") or "") for l in d.log_lines())


def test_basic_auth_guards_every_request_form(daemon_factory, registry):
    d = daemon_factory(proxy_yaml=f"basicAuth:\n  username: u\n  password: p\nregistryMirror:\n  url: http://{registry.addr}\n")
    for args in [[f"{d.url}/v2/"], ["-x", d.url, f"http://{registry.addr}/v2/"]]:
        r = curl("-i", *args, check=False)
        assert r.stdout.startswith(b"HTTP/1.1 407 "), (args, r.stdout[:200])
        r = curl("-i", "-H", "Proxy-Authorization: Basic dTpw", *args)
        assert r.stdout.startswith(b"HTTP/1.1 200 "), (args, r.stdout[:200])
    r = raw(d.port, f"CONNECT {registry.addr} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert r.startswith(b"HTTP/1.1 407 ")


class FakeRegistry(http.server.BaseHTTPRequestHandler):
    """Says yes to everything and has nothing: it only knows a digest."""
    protocol_version = "HTTP/1.1"
    seen = []

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        FakeRegistry.seen.append(("HEAD", self.path, self.headers.get("Range")))
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()

    def do_GET(self):
        FakeRegistry.seen.append(("GET", self.path, self.headers.get("Range")))
        body = b"\0" * 64
        self.send_response(206)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_cached_private_layer_needs_proof_of_possession(daemon_factory, registry, images, etc_hosts):
    FakeRegistry.seen = []
    with serving(FakeRegistry) as port:
        d = daemon_factory(proxy_yaml=f"registryMirror:\n  dynamic: true\n  url: http://{registry.addr}\n")
        layout, _, blobs = images["small"]
        # The largest layer: a million offsets to pick from, so two probes (almost) never coincide.
        blob = max(blobs, key=lambda b: os.path.getsize(reglib.blob_path(layout, b)))
        assert sha(curl(f"{d.url}/v2/test/img/blobs/{blob}").stdout) == blob
        for _ in range(2):
            r = curl("-i", "-H", f"X-Dragonfly-Registry: http://127.0.0.1:{port}",
                     f"{d.url}/v2/anything/blobs/{blob}", check=False)
            assert r.stdout.startswith(b"HTTP/1.1 403 ") and b"did not prove it holds" in r.stdout, r.stdout[:300]
        assert all(m == "GET" and rng and rng.startswith("bytes=") for m, _, rng in FakeRegistry.seen), FakeRegistry.seen
        offsets = {rng for _, _, rng in FakeRegistry.seen}
        assert len(offsets) == 2, "a fresh random offset each time"
        # The same registry under another name really holds the blob: proven, then served from the cache.
        r = curl("-i", "-H", f"X-Dragonfly-Registry: http://reg-plain.test:{registry.port}", f"{d.url}/v2/test/img/blobs/{blob}")
        assert r.stdout.startswith(b"HTTP/1.1 200 ") and sha(r.stdout.partition(b"\r\n\r\n")[2]) == blob
        line = d.access(until=lambda ls: any(l.get("authorization") == "possession proven" for l in ls))
        assert any(l.get("authorization") == "possession proven" and l.get("source") == "cache" for l in line), line
