"""Resource bounds an attacker cannot talk the daemon out of: a pipelining client that never reads,
a slowloris head, a reader that stalls, an idle tunnel, more requests than maxConcurrency, and an
SNI the hijack rule does not accept. Each holds by construction; no wall-clock bound is asserted."""
import http.server, socket, ssl, threading, time
from lib.origin import serving
from lib import procs
from lib.client import connect_tunnel, curl, sha
from test_tls import hijack_yaml


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def test_a_pipeliner_that_never_reads_cannot_grow_a_worker(daemon_factory):
    d = daemon_factory(workers=1, proxy_yaml="")
    worker = d.workers()[0]
    before = rss_kib(worker)
    s = socket.create_connection(("127.0.0.1", d.port))
    s.settimeout(3)
    batch = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
    sent = 0
    stopped_reading = False
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            s.sendall(batch)
            sent += len(batch)
    except socket.timeout:
        stopped_reading = True  # the daemon no longer reads: the kernel buffers filled up
    grown = rss_kib(worker) - before
    s.close()
    assert stopped_reading, f"the daemon kept reading {sent} bytes of requests whose answers nobody took"
    assert grown < 48 * 1024, f"worker grew by {grown} KiB"
    assert d.workers() == [worker]
    assert curl("-s", "-o", "/dev/null", "-w", "%{http_code}", f"{d.url}/v2/", check=False).stdout == b"404"


def test_slowloris_is_cut_within_the_header_deadline(daemon_factory):
    d = daemon_factory(extra_yaml="headerTimeout: 2s\n", proxy_yaml="")
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"GET /v2/ HTTP/1.1\r\n")
    drips, got = 0, b""
    s.settimeout(0.5)
    # One byte every half second: each is "progress", and the deadline must not move for it.
    while drips < 40 and not got:
        try:
            s.sendall(b"X")
            drips += 1
            got = s.recv(1000)
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    s.close()
    assert got.startswith(b"HTTP/1.1 408 "), (drips, got)
    assert drips < 40, "cut while still dripping: the deadline runs from the first byte"


def test_a_stalled_reader_is_cut_by_the_write_timeout(daemon_factory, registry, images):
    d = daemon_factory(extra_yaml="writeTimeout: 2s\n", proxy_yaml=f"registryMirror:\n  url: http://{registry.addr}\n")
    blob = images["big"][2][0]
    s = socket.create_connection(("127.0.0.1", d.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(f"GET /v2/test/big/blobs/{blob} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    procs.wait_until(lambda: any(l.get("msg") == "client write timeout" for l in d.log_lines()), timeout=60,
                     what="the write timeout")
    s.settimeout(10)
    total = 0
    try:
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            total += len(b)
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    assert total < 200 * 1024 * 1024, "the stalled client never got the whole blob"


def test_an_idle_tunnel_is_closed(daemon_factory, registry):
    d = daemon_factory(extra_yaml="tunnelIdleTimeout: 2s\n", proxy_yaml="")
    s, got = connect_tunnel(d.port, registry.addr, timeout=60)
    assert got.startswith(b"HTTP/1.1 200 ")
    assert s.recv(1000) == b"", "the tunnel ended by itself"
    s.close()
    line = d.access(mode="tunnel")[-1]
    assert line.get("closed") == "idle"


class Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    release = threading.Event()

    def log_message(self, *a):
        pass

    def do_GET(self):
        Slow.release.wait(30)
        body = b"slow\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_max_concurrency_answers_503_and_never_hangs(daemon_factory):
    Slow.release.clear()
    with serving(Slow) as port:
        try:
            d = daemon_factory(proxy_yaml=f"maxConcurrency: 2\nregistryMirror:\n  url: http://127.0.0.1:{port}\n")
            results = []

            def get():
                r = curl("-s", "-o", "/dev/null", "-D", "-", "--max-time", "60", f"{d.url}/v2/slow", check=False)
                results.append(r.stdout)

            threads = [threading.Thread(target=get) for _ in range(6)]
            for t in threads:
                t.start()
            # Refusals come at once; the admitted requests wait for the origin until released.
            procs.wait_until(lambda: sum(r.startswith(b"HTTP/1.1 503 ") for r in results) >= 4, timeout=30, what="503s")
            Slow.release.set()
            for t in threads:
                t.join()
            refused = [r for r in results if r.startswith(b"HTTP/1.1 503 ")]
            served = [r for r in results if r.startswith(b"HTTP/1.1 200 ")]
            assert len(results) == 6 and len(refused) + len(served) == 6, results
            assert len(served) == 2 and all(b"Retry-After: 1" in r for r in refused), results
            assert any(l.get("msg") == "over maxConcurrency: 503" for l in d.log_lines())
        finally:
            Slow.release.set()


def test_no_leaf_for_an_sni_the_hijack_rule_does_not_accept(daemon_factory, pki, tls_registry, etc_hosts):
    d = daemon_factory(proxy_yaml=hijack_yaml(f"{pki}/ca.crt", f"{pki}/ca.key", regx="'^registry\\.test:'",
                                              host_opts=f"certs: [{pki}/test-ca.crt]"))
    ctx = ssl.create_default_context(cafile=f"{pki}/ca.crt")

    def handshake(sni):
        s, got = connect_tunnel(d.port, f"registry.test:{tls_registry.port}")
        assert got.startswith(b"HTTP/1.1 200 ")
        try:
            with ctx.wrap_socket(s, server_hostname=sni) as t:
                return t.getpeercert()["subjectAltName"]
        except ssl.SSLError as e:
            return e

    assert handshake("registry.test") == (("DNS", "registry.test"),)
    refused = handshake("bank.test")
    assert isinstance(refused, ssl.SSLError), refused
    assert any(l.get("sni") == "bank.test" for l in d.log_lines())


def test_readers_poll_without_inotify(daemon_factory, registry, images):
    """Eight concurrent clients of one blob, with inotify off: joiners still follow the download."""
    d = daemon_factory(env={"DFGET_NO_INOTIFY": "1"}, proxy_yaml=f"registryMirror:\n  url: http://{registry.addr}\n")
    blob = images["big"][2][0]
    results = []

    def get():
        results.append(sha(curl(f"{d.url}/v2/test/big/blobs/{blob}").stdout))

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [blob] * 8
    sources = [l.get("source") for l in d.access(until=lambda ls: len(ls) >= 8)]
    assert sources.count("origin") == 1, sources


def test_drain_closes_quiet_tunnels(daemon_factory, registry):
    d = daemon_factory(proxy_yaml="")
    s, got = connect_tunnel(d.port, registry.addr)
    assert got.startswith(b"HTTP/1.1 200 ")
    d.terminate()
    # Held open by the tunnel, the exit would take the whole drainTimeout (20 s).
    procs.wait_until(lambda: not d.proc.alive(), timeout=10, what="master exit")
    s.settimeout(5)
    assert s.recv(1000) == b""
    s.close()
    assert d.access(mode="tunnel")[-1].get("closed") == "drain"


class Downgrader(http.server.BaseHTTPRequestHandler):
    """An HTTPS registry that redirects its blobs to plain HTTP."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send_response(307)
        self.send_header("Location", "http://127.0.0.1:9/bucket/blob")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_redirect_from_https_to_http_is_refused(daemon_factory, pki, etc_hosts):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{pki}/registry.test.crt", f"{pki}/registry.test.key")
    with serving(Downgrader, tls=ctx) as port:
        d = daemon_factory(proxy_yaml=f"registryMirror:\n  url: https://registry.test:{port}\n"
                                      f"  certs: [{pki}/test-ca.crt]\n")
        r = curl("-i", f"{d.url}/v2/x/manifests/latest", check=False)
        assert r.stdout.startswith(b"HTTP/1.1 403 ") and b"redirect from https to http" in r.stdout, r.stdout[:300]
