"""dfget daemons on the hosts of a namespace star, and a docker-registry in its origin namespace
serving an existing registry's storage. Used by the cluster tests and the peer benchmark."""
import hashlib, json, os, textwrap
from lib import procs, registry as reglib
from lib.daemon import binary

PEER_PORT, PROXY_PORT = 65002, 65001


class Cluster:
    def __init__(self, star, registry_dir, workdir, peers=True, workers=2):
        self.star = star
        self.started = []
        self.daemons = {}
        s = star
        os.makedirs(workdir, exist_ok=True)
        self.workdir = workdir
        self.registry_cfg = os.path.join(workdir, "origin-registry.yml")
        reglib.write_config(self.registry_cfg, f"{registry_dir}/data", f"{s.ip(s.origin)}:5000")
        self.start_registry()
        key = os.path.join(workdir, "peers.key")
        with open(key, "w") as f:
            f.write("cluster-peer-secret-0123456789abcdef\n")
        members = ", ".join(f'"{s.ip(h)}"' for h in s.hosts)
        peers_yaml = f"peers:\n  members: [{members}]\n  secretFile: {key}\n" if peers else ""
        for h in s.hosts:
            d = os.path.join(workdir, h)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "dfget.yaml"), "w") as f:
                f.write(textwrap.dedent(f"""\
                    logDir: {d}/log
                    dataDir: {d}/data
                    workers: {workers}
                    host:
                      advertiseIP: {s.ip(h)}
                    upload:
                      tcpListen: {{listen: {s.ip(h)}, port: {PEER_PORT}}}
                    proxy:
                      tcpListen: {{listen: 127.0.0.1, port: {PROXY_PORT}}}
                      registryMirror: {{url: "http://{s.ip(s.origin)}:5000"}}
                    """) + peers_yaml)
            p = procs.Proc(f"dfget-{h}", ["ip", "netns", "exec", h, binary(), "daemon", "--config", os.path.join(d, "dfget.yaml")], d)
            self.started.append(p)
            self.daemons[h] = (p, d)
        for h in s.hosts:
            procs.wait_until(lambda: s.run(h, "curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{PROXY_PORT}/").returncode == 0,
                             what=f"daemon in {h}")

    def start_registry(self):
        s = self.star
        self.registry = procs.Proc("origin-registry", ["ip", "netns", "exec", s.origin, "docker-registry", "serve", self.registry_cfg],
                                   self.workdir)
        self.started.append(self.registry)
        procs.wait_until(lambda: s.run(s.origin, "curl", "-sf", f"http://{s.ip(s.origin)}:5000/v2/").returncode == 0, what="origin registry")

    def kill_registry(self):
        """SIGKILL, and waited for: from now on its address refuses connections."""
        self.registry.signal(9)
        self.registry.p.wait(10)

    def pull(self, h, blob, out, repo="test/big"):
        """GET of a blob through host `h`'s mirror: out[h] = (curl's exit, sha256 of the body, seconds)."""
        r = self.star.run(h, "curl", "-sS", "-o", "-", "-w", "", f"http://127.0.0.1:{PROXY_PORT}/v2/{repo}/blobs/{blob}", timeout=600)
        out[h] = (r.returncode, "sha256:" + hashlib.sha256(r.stdout).hexdigest())

    def pull_timed(self, h, blob, repo="test/big"):
        """GET of a blob through host `h`'s mirror, the body thrown away as it comes: (curl's exit,
        bytes received, curl's own total time in seconds). For the benchmark: nothing but the
        client's work is in the time, and no copy of the body competes with the daemons for CPU."""
        r = self.star.run(h, "curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}",
                          f"http://127.0.0.1:{PROXY_PORT}/v2/{repo}/blobs/{blob}", timeout=600)
        size, total = r.stdout.split() if r.returncode == 0 else (b"0", b"0")
        return r.returncode, int(size), float(total)

    def owner_of(self, task, hosts=None):
        """The rendezvous owner, computed as every member computes it."""
        def weight(h):
            return int.from_bytes(hashlib.sha256(f"{task}|{self.star.ip(h)}:{PEER_PORT}".encode()).digest()[:8], "big")
        return max(hosts or self.star.hosts, key=weight)

    def logs(self, h):
        path = os.path.join(self.daemons[h][1], "log", "daemon", "core.log")
        return [json.loads(l) for l in open(path)] if os.path.exists(path) else []

    def data_file(self, h, blob):
        return os.path.join(self.daemons[h][1], "data", "cache", f"{blob[7:]}.data")

    def holds(self, h, blob, nbytes):
        """Whether host h's copy of the blob holds `nbytes`: its data file is sparse until pieces land."""
        f = self.data_file(h, blob)
        return os.path.exists(f) and os.stat(f).st_blocks * 512 >= nbytes

    def stop(self):
        for p in self.started:
            p.stop()
