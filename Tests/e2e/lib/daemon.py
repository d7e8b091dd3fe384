"""The real `dfget daemon` binary, started with a real config on 127.0.0.1."""
import json, os, signal, textwrap
from . import procs

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def binary():
    return os.environ.get("DFGET_BIN") or os.path.join(ROOT, ".build", "debug", "dfget")


class Daemon:
    def __init__(self, workdir, proxy_yaml="", extra_yaml="", workers=2, name="dfget", data_dir=None, env=None, peer_port=None, upload_yaml="", upload_listen="127.0.0.1"):
        self.env = None if env is None else {**os.environ, **env}
        self.port = procs.free_port()
        self.peer_port = peer_port or procs.free_port()
        self.dir = os.path.join(workdir, f"{name}-{self.port}")
        self.logdir = os.path.join(self.dir, "log")
        os.makedirs(self.dir, exist_ok=True)
        self.config = os.path.join(self.dir, "dfget.yaml")
        with open(self.config, "w") as f:
            self.data_dir = data_dir or os.path.join(self.dir, "data")
            f.write(f"logDir: {self.logdir}\ndataDir: {self.data_dir}\nworkers: {workers}\ndrainTimeout: 20s\n")
            f.write(textwrap.dedent(extra_yaml))
            f.write(f"upload:\n  tcpListen:\n    listen: \"{upload_listen}\"\n    port: {self.peer_port}\n")
            f.write(textwrap.indent(textwrap.dedent(upload_yaml), "  "))
            f.write(f"proxy:\n  tcpListen:\n    listen: 127.0.0.1\n    port: {self.port}\n")
            f.write(textwrap.indent(textwrap.dedent(proxy_yaml), "  "))
        self.name = name
        self.nworkers = workers
        self.start()

    def start(self):
        self.proc = procs.Proc(self.name, [binary(), "daemon", "--config", self.config], self.dir, env=self.env)
        procs.wait_until(lambda: procs.port_open(self.port) or not self.proc.alive(), what="dfget listening")
        assert self.proc.alive(), self.proc.output()
        procs.wait_until(lambda: len(self.workers()) == self.nworkers, what=f"{self.nworkers} workers")

    def restart(self):
        """Stops and starts again with the same config, ports and cache."""
        assert self.stop() == 0
        self.start()

    @property
    def cache_dir(self):
        return os.path.join(self.data_dir, "cache")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid

    def workers(self):
        return [p for p in procs.children(self.pid) if procs.pid_alive(p)]

    def log_lines(self):
        path = os.path.join(self.logdir, "daemon", "core.log")
        if not os.path.exists(path):
            return []
        out = []
        with open(path) as f:
            for line in f:
                out.append(json.loads(line))  # every line must be JSON
        return out

    def access(self, until=None, **match):
        """Access-log lines matching `match`. Workers write a line just after the response's last
        byte, so this polls (5 s deadline) until `until(lines)` holds, by default: at least one line."""
        until = until or (lambda lines: len(lines) > 0)

        def get():
            lines = [l for l in self.log_lines() if l.get("msg") == "access" and all(l.get(k) == v for k, v in match.items())]
            return lines if until(lines) else None

        try:
            return procs.wait_until(get, timeout=5, what=f"access log lines {match}")
        except TimeoutError:
            return [l for l in self.log_lines() if l.get("msg") == "access" and all(l.get(k) == v for k, v in match.items())]

    def terminate(self):
        self.proc.signal(signal.SIGTERM)

    def stop(self):
        return self.proc.stop(timeout=30)
