"""`dfget daemon --check`, config errors naming file, line and key, and `dfget version`."""
import json, os, socket, subprocess
from lib import procs
from lib.daemon import binary


def run(*args):
    return subprocess.run([binary(), *args], capture_output=True, text=True, timeout=30)


def test_version():
    r = run("version")
    assert r.returncode == 0 and r.stdout.startswith("dfget ")


def test_check_reports_file_line_and_key(tmp_path):
    cfg = tmp_path / "dfget.yaml"
    cfg.write_text("proxy:\n  tcpListen:\n    port: 65001\n  proxiess:\n    - regx: blobs/sha256.*\n")
    r = run("daemon", "--config", str(cfg), "--check")
    assert r.returncode == 2
    assert f"{cfg}:4: proxy.proxiess: unknown key (did you mean proxy.proxies?)" in r.stderr


def test_check_ok_with_warnings_for_ignored_keys_and_none_for_built_ones(tmp_path):
    cfg = tmp_path / "dfget.yaml"
    cfg.write_text("scheduler:\n  manager:\n    enable: false\nproxy:\n  tcpListen:\n    port: 65001\n"
                   "download:\n  totalRateLimit: 1Gi\n  perPeerRateLimit: 64Mi\nupload:\n  rateLimit: 1Gi\naliveTime: 10m\n"
                   "health:\n  path: /server/ping\n  tcpListen:\n    port: 40901\n")
    r = run("daemon", "--config", str(cfg), "--check")
    assert r.returncode == 0, r.stderr
    assert f"{cfg}:1: scheduler: not used by this daemon (ignored)" in r.stderr
    assert "not built" not in r.stderr


def test_missing_config_file(tmp_path):
    r = run("daemon", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "nope.yaml: cannot read file" in r.stderr


def test_port_range_takes_first_free(workdir):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    first = busy.getsockname()[1]
    last = min(first + 20, 65535)
    d = None
    try:
        cfgdir = os.path.join(workdir, "range")
        os.makedirs(cfgdir, exist_ok=True)
        cfg = os.path.join(cfgdir, "dfget.yaml")
        peer = procs.free_port()
        with open(cfg, "w") as f:
            f.write(f"logDir: {cfgdir}/log\nworkers: 1\nupload:\n  tcpListen:\n    port: {peer}\n"
                    f"proxy:\n  tcpListen:\n    listen: 127.0.0.1\n    port:\n      start: {first}\n      end: {last}\n")
        d = procs.Proc("range", [binary(), "daemon", "--config", cfg], cfgdir)
        log = os.path.join(cfgdir, "log", "daemon", "core.log")

        def bound_port():
            if not os.path.exists(log):
                return None
            for line in open(log):
                rec = json.loads(line)
                if rec["msg"] == "proxy listening":
                    return rec["port"]
            return None

        # The range's first port is taken: the daemon moves on to a later one and serves there.
        port = procs.wait_until(bound_port, what="proxy listening line")
        assert first < port <= last
        procs.wait_until(lambda: procs.port_open(port), what="proxy port open")
        out = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{peer}/healthy"], capture_output=True, text=True)
        assert out.stdout == "OK\n"
    finally:
        busy.close()
        if d:
            assert d.stop() == 0


def test_unbindable_port_fails_clearly(workdir):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    cfgdir = os.path.join(workdir, "busy")
    os.makedirs(cfgdir, exist_ok=True)
    cfg = os.path.join(cfgdir, "dfget.yaml")
    with open(cfg, "w") as f:
        f.write(f"logDir: {cfgdir}/log\nupload:\n  tcpListen:\n    port: {procs.free_port()}\n"
                f"proxy:\n  tcpListen:\n    listen: 127.0.0.1\n    port: {port}\n")
    r = run("daemon", "--config", cfg)
    busy.close()
    assert r.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in r.stderr
