"""An origin that stops sending: the daemon gives up after upstreamTimeout, never hangs its clients."""
import http.server, time
import pytest
from lib.origin import serving
from lib.client import curl

BLOB = "sha256:" + "ab" * 32


class Staller(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path.startswith("/v2/silent"):
            time.sleep(6)  # no head at all
            return
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"x" * 10)
        self.wfile.flush()
        time.sleep(6)  # then silence mid-body

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()


@pytest.fixture
def staller():
    with serving(Staller) as port:
        yield port


@pytest.mark.parametrize("path", ["/v2/silent/manifests/1", "/v2/slow/manifests/1", f"/v2/slow/blobs/{BLOB}"])
def test_stalled_origin_is_given_up(path, staller, daemon_factory):
    d = daemon_factory(extra_yaml="upstreamTimeout: 1s\n", proxy_yaml=f"registryMirror:\n  url: http://127.0.0.1:{staller}\n")
    # curl's own limit is far beyond the daemon's 1 s and the origin's 6 s stalls: if it fires (exit
    # 28), the daemon did not give up by itself. No wall-clock assertion, so load cannot break it.
    r = curl("-i", "--max-time", "30", f"{d.url}{path}", check=False)
    assert r.returncode != 28, "the daemon gave up on its own, before curl's limit"
    if "silent" in path or "manifests" in path:
        # A tag is collected whole before it is answered (proxy.manifests): a stall mid-body is a 502 too.
        assert r.stdout.startswith(b"HTTP/1.1 502 ") and b"no data for 1 s" in r.stdout
    else:
        assert r.returncode != 0, "a body cut short is an error at the client, never a clean end"
        assert r.returncode != 28, "not curl's timeout"


class Trickler(http.server.BaseHTTPRequestHandler):
    """A byte every 0.2 s: always in time for the idle timeout, never getting anywhere."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(300):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass


def test_a_trickling_origin_is_given_up_by_the_cache(daemon_factory):
    with serving(Trickler) as port:
        d = daemon_factory(extra_yaml="upstreamTimeout: 2s\n", proxy_yaml=f"registryMirror:\n  url: http://127.0.0.1:{port}\n")
        r = curl("-i", "--max-time", "50", f"{d.url}/v2/slow/blobs/{BLOB}", check=False)
        assert r.returncode not in (0, 28), "cut short by the daemon, not by curl's limit"
        assert any(l.get("error", "").startswith("origin stalled") for l in d.log_lines())
