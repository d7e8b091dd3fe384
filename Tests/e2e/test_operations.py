"""Operations with the real binary: the health and metrics listener, reload on SIGHUP, log reopening
on SIGUSR1, aliveTime, the shared rate limit and maxConcurrency."""
import hashlib, http.server, os, signal, subprocess, time
import pytest
from prometheus_client.parser import text_string_to_metric_families
from lib.origin import serving
from lib import procs, registry as reglib
from lib.client import connect_tunnel, curl, sha
from lib.daemon import binary


def health_yaml(port, extra=""):
    return f"health:\n  path: /server/ping\n  tcpListen:\n    listen: 127.0.0.1\n    port: {port}\n" + extra


def ops_daemon(daemon_factory, registry, workers=2, extra="", proxy_extra=""):
    port = procs.free_port()
    d = daemon_factory(workers=workers, extra_yaml=health_yaml(port, extra), proxy_yaml=f"""
        registryMirror:
          url: http://{registry.addr}
        proxies:
          - regx: blobs/sha256.*
        """ + proxy_extra)
    d.ops = f"http://127.0.0.1:{port}"
    return d


def get(url):
    r = curl("-s", "-o", "-", "-w", "\n%{http_code}", url, check=False)
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code or 0), body


def scrape(d):
    """Every sample of /metrics, parsed by prometheus_client's parser: {(name, labels): value}."""
    code, body = get(d.ops + "/metrics")
    assert code == 200
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m, name, **labels):
    return m.get((name, tuple(sorted(labels.items()))), 0)


def small_blobs(images):
    layout, _, blobs = images["small"]
    return [(b, os.path.getsize(reglib.blob_path(layout, b))) for b in blobs]


def test_health_is_200_with_workers_and_503_while_none_is_up(daemon_factory, registry):
    d = ops_daemon(daemon_factory, registry)
    assert get(d.ops + "/server/ping") == (200, b"ok")
    assert get(d.ops + "/nope")[0] == 404
    # Crash-loop the workers: each one killed within a second of starting doubles the restart delay,
    # so soon none is up and the health check must say so.
    seen = {}

    def unhealthy():
        for p in d.workers():
            os.kill(p, signal.SIGKILL)
        code, body = get(d.ops + "/server/ping")
        if code == 503:
            seen["body"] = body
        return code == 503

    procs.wait_until(unhealthy, timeout=20, what="health 503 while the workers crash-loop")
    assert b"no worker is up" in seen["body"] or b"workers up" in seen["body"]
    # Left alone, the workers come back and so does the 200.
    procs.wait_until(lambda: get(d.ops + "/server/ping")[0] == 200, timeout=20, what="health 200 again")
    assert value(scrape(d), "dfget_worker_restarts_total") >= 2


def test_metrics_count_what_the_test_did_across_workers(daemon_factory, registry, images):
    d = ops_daemon(daemon_factory, registry, workers=3)
    blob, size = small_blobs(images)[0]
    url = f"{d.url}/v2/test/img/blobs/{blob}"
    hits = 8
    for _ in range(1 + hits):
        r = curl("-o", "-", url)
        assert sha(r.stdout) == blob
    # Misses of the routing (no rule): straight through, and a 404 from the registry.
    for _ in range(5):
        assert curl("-s", "-o", "/dev/null", "-w", "%{http_code}", f"{d.url}/v2/test/img/manifests/nope").stdout == b"404"
    d.access(until=lambda ls: len(ls) >= 1 + hits + 5)
    pids = {l["pid"] for l in d.access(until=lambda ls: len(ls) >= 1 + hits + 5)}
    assert len(pids) >= 2, "the requests should have spread over several workers"
    m = scrape(d)
    assert value(m, "dfget_requests_total", mode="mirror", code="200") == 1 + hits
    assert value(m, "dfget_requests_total", mode="mirror", code="404") == 5
    assert value(m, "dfget_cache_misses_total") == 1
    assert value(m, "dfget_cache_hits_total") == hits
    assert value(m, "dfget_response_bytes_total", source="cache") == hits * size
    assert value(m, "dfget_origin_bytes_total") >= size
    assert value(m, "dfget_cache_bytes") >= size
    assert value(m, "dfget_request_duration_seconds_count", mode="mirror") == 1 + hits + 5
    assert value(m, "dfget_request_duration_seconds_bucket", mode="mirror", le="+Inf") == 1 + hits + 5
    assert value(m, "dfget_tasks_active") == 0
    assert value(m, "dfget_connections", state="active") == 0
    version = subprocess.run([binary(), "version"], capture_output=True, text=True).stdout.split()[-1]
    assert value(m, "dfget_build_info", version=version) == 1
    assert value(m, "dfget_peer_bytes_total", direction="out") == 0


def test_reload_keeps_a_running_download_and_applies_the_new_config(daemon_factory, registry, images, workdir):
    d = ops_daemon(daemon_factory, registry)
    layout, _, blobs = images["big"]
    blob, size = blobs[0], os.path.getsize(reglib.blob_path(layout, blobs[0]))
    old_workers = set(d.workers())
    out = os.path.join(workdir, "reload-download")
    # A slow client keeps its response in flight across the reload.
    p = subprocess.Popen(["curl", "-sS", "--limit-rate", "40M", "-o", out, f"{d.url}/v2/test/big/blobs/{blob}"])
    procs.wait_until(lambda: os.path.exists(out) and os.path.getsize(out) > 20 << 20, what="download under way")
    with open(d.config) as f:
        text = f.read()
    with open(d.config, "w") as f:
        f.write(text + "  basicAuth: {username: ops, password: secret}\n")
    os.kill(d.pid, signal.SIGHUP)
    procs.wait_until(lambda: len(set(d.workers()) - old_workers) == 2, what="a new generation of workers")
    assert os.path.getsize(out) < size, "the download should still be running during the reload"
    # New requests reach the new workers, with the new config.
    assert curl("-s", "-o", "/dev/null", "-w", "%{http_code}", f"{d.url}/v2/").stdout == b"407"
    assert curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Proxy-Authorization: Basic b3BzOnNlY3JldA==", f"{d.url}/v2/").stdout == b"200"
    assert p.wait(timeout=120) == 0
    assert os.path.getsize(out) == size and reglib.sha256_file(out) == blob
    procs.wait_until(lambda: not (set(d.workers()) & old_workers), what="the old workers to exit")
    assert d.proc.alive()
    assert any(l.get("msg") == "reloaded" and l.get("pid") == d.pid for l in d.log_lines())


def test_a_bad_config_on_reload_is_refused_and_the_old_one_serves(daemon_factory, registry):
    d = ops_daemon(daemon_factory, registry)
    before = set(d.workers())
    with open(d.config) as f:
        good = f.read()
    with open(d.config, "w") as f:
        f.write(good + "  maxConcurrency: lots\n")
    os.kill(d.pid, signal.SIGHUP)
    refused = procs.wait_until(lambda: [l for l in d.log_lines() if l.get("msg") == "reload refused: the running config stays"],
                               what="the refusal in the log")
    assert "dfget.yaml:" in refused[0]["error"] and "maxConcurrency" in refused[0]["error"]
    assert set(d.workers()) == before
    assert curl("-s", "-o", "/dev/null", "-w", "%{http_code}", f"{d.url}/v2/").stdout == b"200"
    assert get(d.ops + "/server/ping")[0] == 200


def test_sigusr1_reopens_the_log_files(daemon_factory, registry):
    d = ops_daemon(daemon_factory, registry)
    log = os.path.join(d.logdir, "daemon", "core.log")
    os.rename(log, log + ".1")
    os.kill(d.pid, signal.SIGUSR1)
    procs.wait_until(lambda: os.path.exists(log), what="a new core.log")
    # Each worker says so once it has reopened: a request before that may still go to the old file.
    procs.wait_until(lambda: len({l["pid"] for l in d.log_lines() if l.get("msg") == "log reopened" and l.get("role") == "worker"}) == 2,
                     what="both workers reopened the log")

    def worker_line():
        assert d.proc.alive(), d.proc.output()
        curl("-s", "-o", "/dev/null", f"{d.url}/v2/")
        return [l for l in d.log_lines() if l.get("msg") == "access" and l.get("role") == "worker"]

    # Each request lands on a worker; within a few every worker has written to the new file.
    procs.wait_until(lambda: len({l["pid"] for l in worker_line()}) == 2, what="access lines from both workers in the new file")
    assert any(l.get("msg") == "log reopened" for l in d.log_lines())
    with open(log + ".1") as f:
        rotated = f.read()
    assert "daemon started" in rotated and '"msg":"access"' not in rotated


class SixtyFour(http.server.BaseHTTPRequestHandler):
    """An origin with one 64 MiB blob at /v2/test/blobs/<its digest>."""
    body = hashlib.sha256(b"seed").digest() * (64 * 1024 * 1024 // 32)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path != f"/v2/test/blobs/{self.digest}":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


@pytest.fixture
def sixty_four():
    with serving(SixtyFour) as port:
        yield port


def test_total_rate_limit_slows_a_cold_pull(daemon_factory, sixty_four):
    d = daemon_factory(extra_yaml="download:\n  totalRateLimit: 16Mi\n", proxy_yaml=f"""
        registryMirror:
          url: http://127.0.0.1:{sixty_four}
        """)
    t0 = time.monotonic()
    r = curl("-o", "-", f"{d.url}/v2/test/blobs/{SixtyFour.digest}")
    took = time.monotonic() - t0
    assert sha(r.stdout) == SixtyFour.digest
    # 64 MiB at 16 MiB/s with a burst of a tenth of a second: at least 3.9 s. A limit slows, never fails.
    assert took >= 3.5, f"a cold 64 MiB pull took {took:.2f} s under a 16 MiB/s limit"


def test_max_concurrency_answers_503_with_retry_after_and_never_hangs(daemon_factory, registry):
    d = daemon_factory(workers=2, proxy_yaml="maxConcurrency: 2\n")
    host, port = registry.addr.split(":")
    socks, answers = [], []
    # Six tunnels that stay open (each counts as a request in flight until it closes), opened one by one.
    for _ in range(6):
        s, head = connect_tunnel(d.port, f"{host}:{port}")
        answers.append(head)
        socks.append(s)
    codes = [int(a.split(b" ")[1]) for a in answers]
    assert codes == [200, 200, 503, 503, 503, 503], codes
    assert all(b"Retry-After: 1" in a for a in answers[2:])
    for s in socks:
        s.close()
    # Once the tunnels closed, there is room again.
    procs.wait_until(lambda: curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-p", "-x", d.url,
                                  f"http://{registry.addr}/v2/", check=False).stdout == b"200", what="room after the tunnels closed")
    refused = [l for l in d.log_lines() if l.get("msg") == "over maxConcurrency: 503"]
    assert len(refused) == 4


def test_alive_time_exits_when_idle(daemon_factory, registry):
    d = ops_daemon(daemon_factory, registry, extra="aliveTime: 2s\n")
    # Requests keep it alive past aliveTime...
    end = time.monotonic() + 3
    while time.monotonic() < end:
        assert curl("-s", "-o", "/dev/null", "-w", "%{http_code}", f"{d.url}/v2/").stdout == b"200"
        time.sleep(0.3)
    assert d.proc.alive()
    # ...and once they stop, it exits 0 by itself.
    procs.wait_until(lambda: not d.proc.alive(), timeout=20, what="the idle daemon to exit")
    assert d.proc.p.returncode == 0
    assert any(l.get("msg") == "idle for aliveTime: exiting" for l in d.log_lines())
    assert not d.workers()


def test_a_hit_whose_pages_left_the_page_cache_is_read_on_the_pool(daemon_factory, registry, images):
    """A cached blob whose pages the kernel dropped (a restart, a blob not asked for in a while) is
    read from the disk on the thread pool before it goes out, not by sendfile on the loop; the
    metric counts those bytes. The same hit with the pages in memory reads nothing."""
    layout, _, blobs = images["big"]
    blob, size = blobs[0], os.path.getsize(reglib.blob_path(layout, blobs[0]))
    d = ops_daemon(daemon_factory, registry, workers=1)
    url = f"{d.url}/v2/test/big/blobs/{blob}"
    assert sha(curl("-o", "-", url).stdout) == blob
    procs.wait_until(lambda: [l for l in d.log_lines() if l["msg"] == "task downloaded"] or None, what="the task sealed")
    before = value(scrape(d), "dfget_cache_disk_read_bytes_total")
    assert before == 0, "a miss's client reads what was just written (in memory), nothing from the disk"
    data = os.path.join(d.cache_dir, blob[7:] + ".data")
    # Under a full suite the kernel may have dropped some of the pages since the miss wrote them:
    # read the file once here, so "in memory" is what this hit is about.
    with open(data, "rb") as f:
        while f.read(1 << 20):
            pass
    assert sha(curl("-o", "-", url).stdout) == blob
    assert value(scrape(d), "dfget_cache_disk_read_bytes_total") == before, "pages in memory: nothing read"
    fd = os.open(data, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    assert sha(curl("-o", "-", url).stdout) == blob
    # At least the first window is read on the pool; the kernel's own read-ahead, started by those
    # reads and by sendfile, brings in much of the rest without the loop waiting for it.
    read = value(scrape(d), "dfget_cache_disk_read_bytes_total") - before
    assert 4 << 20 <= read <= size, f"{read} of {size} bytes were read on the pool"
