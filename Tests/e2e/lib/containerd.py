"""A containerd of the test's own: root, state and socket in a temp dir."""
import os, subprocess
from . import procs


class Containerd:
    def __init__(self, workdir, env=None):
        self.dir = os.path.join(workdir, f"containerd-{procs.free_port()}")
        os.makedirs(self.dir)
        self.sock = os.path.join(self.dir, "containerd.sock")
        self.hosts_dir = os.path.join(self.dir, "certs.d")
        os.makedirs(self.hosts_dir)
        cfg = os.path.join(self.dir, "config.toml")
        with open(cfg, "w") as f:
            f.write(f"""version = 2
root = "{self.dir}/root"
state = "{self.dir}/state"
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = "{self.dir}/debug.sock"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "{self.hosts_dir}"
""")
        self.proc = procs.Proc("containerd", ["containerd", "--config", cfg], self.dir, env=env)
        procs.wait_until(lambda: self.ctr("version", check=False).returncode == 0 or not self.proc.alive(),
                         what="containerd up")
        assert self.proc.alive(), self.proc.output()[-2000:]

    def ctr(self, *args, env=None, check=True, timeout=300):
        r = subprocess.run(["ctr", "--address", self.sock, *args], capture_output=True, text=True, env=env, timeout=timeout)
        if check:
            assert r.returncode == 0, f"ctr {' '.join(args)}: {r.stdout[-2000:]} {r.stderr[-2000:]}"
        return r

    def write_hosts_toml(self, registry_host, server, mirror, header_registry):
        d = os.path.join(self.hosts_dir, registry_host)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "hosts.toml"), "w") as f:
            f.write(f"""server = "{server}"

[host."{mirror}"]
  capabilities = ["pull", "resolve"]
  [host."{mirror}".header]
    X-Dragonfly-Registry = ["{header_registry}"]
""")

    def mirror_with_dead_origin(self, daemon_url, registry_url):
        """hosts.toml for a new registry name whose origin cannot answer, with the daemon as mirror
        for `registry_url`: a pull that works was served by the mirror. Returns the registry name."""
        host = f"reg-origin.test:{procs.free_port()}"
        self.write_hosts_toml(host, server=f"http://{host}", mirror=daemon_url, header_registry=registry_url)
        return host

    def stop(self):
        self.proc.stop()
