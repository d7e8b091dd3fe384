"""The process model: a worker killed mid-download is replaced and other downloads finish; SIGTERM drains."""
import hashlib, json, os, signal, socket, subprocess, time
from lib import procs


class SlowDownload:
    """A blob download over a raw socket that we read at our own pace, to keep it in flight."""

    def __init__(self, port, path):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            assert chunk, "connection closed before the response head"
            self.buf += chunk
        head, self.body_start = self.buf.split(b"\r\n\r\n", 1)
        self.head = head.decode()
        self.h = hashlib.sha256(self.body_start)
        self.n = len(self.body_start)

    def read_rest(self):
        """Reads to EOF; returns (bytes of body, sha256, clean_eof)."""
        clean = True
        try:
            while True:
                b = self.s.recv(1 << 20)
                if not b:
                    break
                self.h.update(b)
                self.n += len(b)
        except (ConnectionResetError, TimeoutError):
            clean = False
        self.s.close()
        return self.n, "sha256:" + self.h.hexdigest(), clean


def test_kill9_worker_mid_download(daemon, registry, images):
    blob = images["big"][2][0]
    size = os.path.getsize(os.path.join(images["big"][0], "blobs", "sha256", blob.split(":")[1]))
    path = f"/v2/test/big/blobs/{blob}"
    workers = set(daemon.workers())
    assert len(workers) == 2
    # Round robin: two consecutive connections land on different workers.
    a = SlowDownload(daemon.port, path)
    b = SlowDownload(daemon.port, path)
    assert " 200 " in a.head and " 200 " in b.head
    # Which worker serves `a`? The one whose socket table holds its client port.
    a_port = a.s.getsockname()[1]

    def owner():
        out = subprocess.run(["ss", "-Htnp", "state", "established", f"( dport = :{a_port} )"],
                             capture_output=True, text=True).stdout
        return next((w for w in workers if f"pid={w}," in out), None)

    victim = procs.wait_until(owner, what="the worker serving the first download")
    os.kill(victim, signal.SIGKILL)
    n_a, _, _ = a.read_rest()
    assert n_a < size, "the killed worker's client must not get a complete body"
    n_b, digest_b, clean_b = b.read_rest()
    assert (n_b, digest_b, clean_b) == (size, blob, True), "the other worker's download completes"
    # The dead worker is replaced and the service goes on.
    procs.wait_until(lambda: len(daemon.workers()) == 2 and victim not in daemon.workers(), what="replacement worker")
    for _ in range(4):
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"{daemon.url}/v2/"], capture_output=True, text=True)
        assert r.stdout == "200"
    assert any(l["msg"] == "worker died: restarting" and l["signal"] == 9 for l in daemon.log_lines())


def test_sigterm_drains_inflight_then_exits_0(daemon_factory, registry, images):
    d = daemon_factory(proxy_yaml=f"registryMirror:\n  url: http://{registry.addr}\n")
    blob = images["big"][2][0]
    size = os.path.getsize(os.path.join(images["big"][0], "blobs", "sha256", blob.split(":")[1]))
    dl = SlowDownload(d.port, f"/v2/test/big/blobs/{blob}")
    assert dl.n < size, "the download is still in flight"
    d.terminate()
    # The listener closes: new connections are refused while the download goes on.
    procs.wait_until(lambda: not procs.port_open(d.port), what="listener closed")
    assert d.proc.alive()
    n, digest, clean = dl.read_rest()
    assert (n, digest, clean) == (size, blob, True)
    assert procs.wait_until(lambda: not d.proc.alive(), what="master exit") is True
    assert d.proc.p.returncode == 0
    msgs = [l["msg"] for l in d.log_lines()]
    assert "draining: stopped accepting" in msgs and msgs[-1] == "master exiting"


def test_sigterm_idle_exits_promptly(daemon_factory):
    d = daemon_factory(proxy_yaml="")
    # An idle keep-alive connection must not hold the drain up.
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"GET /healthy HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while not got.endswith(b"registry mirror feature is disabled\n"):
        chunk = s.recv(1000)
        assert chunk, got
        got += chunk
    assert got.startswith(b"HTTP/1.1 404")
    d.terminate()
    # Held up by the idle connection, the exit would take the whole drainTimeout (20 s): half of it
    # is a deadline that a loaded machine does not break and a held-up drain cannot meet.
    procs.wait_until(lambda: not d.proc.alive(), timeout=10, what="master exit")
    assert d.proc.p.returncode == 0
    assert s.recv(1000) == b""
    s.close()


def test_peer_port_health(daemon):
    r = subprocess.run(["curl", "-sS", "-i", f"http://127.0.0.1:{daemon.peer_port}/healthy"], capture_output=True, text=True)
    assert r.stdout.startswith("HTTP/1.1 200 ") and r.stdout.endswith("OK\n")


def test_crash_looping_worker_is_restarted_with_backoff(daemon_factory):
    """Workers that cannot start (their log path turned into a folder) are respawned ever more slowly;
    once the cause is gone, the next respawn serves again."""
    d = daemon_factory(workers=1, proxy_yaml="")
    log = os.path.join(d.logdir, "daemon", "core.log")
    master_log = next(f"/proc/{d.pid}/fd/{fd}" for fd in os.listdir(f"/proc/{d.pid}/fd")
                      if os.path.realpath(f"/proc/{d.pid}/fd/{fd}") == log)
    os.replace(log, log + ".kept")
    os.mkdir(log)
    try:
        os.kill(d.workers()[0], signal.SIGKILL)

        def restarts():
            return [json.loads(l) for l in open(master_log) if '"worker died: restarting"' in l]

        # A dozen quick deaths at full speed would take well under a second; with backoff they cannot.
        t0 = time.monotonic()
        procs.wait_until(lambda: len(restarts()) >= 5, timeout=30, what="five restarts")
        assert time.monotonic() - t0 > 1.0, "restarts are spaced out (100, 200, 400, 800 ms ...)"
        assert d.proc.alive()
    finally:
        os.rmdir(log)
        os.replace(log + ".kept", log)
    procs.wait_until(lambda: len(d.workers()) == 1 and procs.port_open(d.port), timeout=15, what="a worker again")
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{d.peer_port}/healthy"],
                       capture_output=True, text=True)
    assert r.stdout == "200"
