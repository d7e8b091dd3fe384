"""What the benchmarks share: nginx as the reference server, worker RSS sampling, curl timings."""
import contextlib, os, re, shutil, subprocess, sys, tempfile, threading, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "Tests", "e2e"))
from lib import procs, registry as reglib  # noqa: E402


def registry_with_image(work, started, repo, small=False, mib=200):
    """docker-registry with a deterministic image pushed (one `mib` MiB layer unless `small`);
    returns (registry, OCI layout, blob digests, first blob's size)."""
    layout = os.path.join(work, "oci-small" if small else f"oci-big-{mib}")
    _, blobs = reglib.build_image(layout, *(["--small"] if small else ["--big-mib", str(mib), "--gzip-level", "1"]))
    reg = reglib.Registry(work)
    started.append(reg.proc)
    reg.push(layout, repo)
    return reg, layout, blobs, os.path.getsize(reglib.blob_path(layout, blobs[0]))


def nginx(work, name, server_body, http_extra="", workers=2):
    """nginx (2 workers, as root so it reads the temp dirs) with one server block on a free port."""
    port = procs.free_port()
    d = os.path.join(work, name)
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""user root;
worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    {http_extra}
    server {{
        listen 127.0.0.1:{port};
        {server_body}
    }}
}}
""")
    p = procs.Proc(name, ["nginx", "-p", d, "-c", conf], d)
    procs.wait_until(lambda: procs.port_open(port), what=name)
    return p, port


def nginx_reverse_proxy(work, upstream):
    return nginx(work, "nginx-proxy", f"""proxy_buffering off;
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }}""")


def nginx_static(work, root, name="nginx-static", workers=2):
    return nginx(work, name, f"root {root};\n        sendfile on;\n        tcp_nopush on;\n        sendfile_max_chunk 0;", workers=workers)


def cpu_seconds(pids):
    """User + system CPU seconds the processes (all their threads) have used so far."""
    tck, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tck
        except FileNotFoundError:
            pass
    return total


def wait_idle(pids, quiet=0.5, timeout=30):
    """Waits until the processes used no CPU for `quiet` seconds (work left after a response, such
    as docker-registry committing a pulled-through blob, must not land in the next measurement)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = cpu_seconds(pids)
        time.sleep(quiet)
        if cpu_seconds(pids) == c:
            return
    raise RuntimeError(f"{pids} still busy after {timeout} s")


def children(pid):
    """The direct children of a process (nginx's workers)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def drop_page_cache(path):
    """Asks the kernel to forget a file's pages (they are clean): the next read goes to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def rss_kib(pid, field="VmRSS"):
    """A process's resident set (or one part of it: RssAnon, RssFile, RssShmem) in KiB."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


class PeakRSS:
    """Samples the peak RSS of `pids` every `interval` s while in the `with` block; `peak_by_pid`
    keeps each one's peak, `anon` the peak of the memory a process owns (RSS less file and shared
    pages). Sampling costs CPU that the measured run shares: for many pids, sample less often."""

    def __init__(self, pids, interval=0.01):
        self.pids, self.peak, self.anon, self.stop = pids, 0, 0, threading.Event()
        self.interval = interval
        self.peak_by_pid = {p: 0 for p in pids}

    def __enter__(self):
        def run():
            while not self.stop.is_set():
                for p in self.pids:
                    r = rss_kib(p)
                    self.peak_by_pid[p] = max(self.peak_by_pid[p], r)
                    self.anon = max(self.anon, rss_kib(p, "RssAnon"))
                self.peak = max([self.peak] + list(self.peak_by_pid.values()))
                time.sleep(self.interval)
        self.t = threading.Thread(target=run)
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.t.join()

    @property
    def mib(self):
        return self.peak / 1024


def curl_w(fmt, *args):
    """curl -o /dev/null with a -w format; fails loudly with curl's own words."""
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", fmt, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"curl {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def nginx_proxy_cache(work, upstream, name="nginx-proxy-cache"):
    """nginx as a pull-through cache of `upstream` (the reference harness's port-8081 server):
    proxy_cache with a lock so concurrent misses join one fetch, sendfile for hits. A new `name`
    is a new, empty cache."""
    cache = os.path.join(work, name, "cache")
    os.makedirs(cache, exist_ok=True)
    return nginx(work, name, f"""sendfile on;
        tcp_nopush on;
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache blobs;
            proxy_cache_valid 200 7d;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 600s;
            proxy_cache_key $uri;
        }}""", http_extra=f"proxy_cache_path {cache} levels=1:2 keys_zone=blobs:10m max_size=20g inactive=7d use_temp_path=off;\n    keepalive_requests 100000;")


def wrk(url, conns=50, seconds=8, headers=()):
    """wrk, 2 threads: (requests/s, p50 ms, p99 ms); any non-2xx answer fails the run."""
    args = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    assert not re.search(r"Non-2xx or 3xx responses: (\d+)", out), out
    return rps, pct(50), pct(99)


def parse_args(ap):
    """The script's arguments plus `--bin` (the dfget binary, release build by default), which the
    daemons the script starts will run."""
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build", "release", "dfget"))
    a = ap.parse_args()
    os.environ["DFGET_BIN"] = a.bin
    return a


@contextlib.contextmanager
def workspace(prefix):
    """A temp dir and a list for the processes started in it: on the way out they are stopped (last
    first) and the dir is removed."""
    work = tempfile.mkdtemp(prefix=prefix)
    started = []
    try:
        yield work, started
    finally:
        for p in reversed(started):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def hosts_entry(*names):
    """`names` resolve to 127.0.0.1 (Go clients skip proxies for 127.0.0.1); /etc/hosts is restored after."""
    original = open("/etc/hosts").read()
    try:
        with open("/etc/hosts", "a") as f:
            f.write("\n127.0.0.1 " + " ".join(names) + "  # dfget bench\n")
        yield
    finally:
        open("/etc/hosts", "w").write(original)
