"""A star of network namespaces this test run makes itself (a bridge namespace, an origin, N hosts),
optionally with every link capped by tbf. Everything talks inside them (`ip netns exec`); nothing
in the root namespace ever addresses their 10.x addresses. `down()` removes them all."""
import json, os, shutil, subprocess


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


class Star:
    def __init__(self, hosts, rate=None, subnet=None):
        tag = f"{os.getpid() % 10000}"
        # Up to 99 hosts on a /24; more on a /16 (host i at .(i // 200).(i % 200 + 1)).
        self.wide = hosts > 99
        self.subnet = subnet or (f"10.{77 + os.getpid() % 100}" if self.wide else f"10.{77 + os.getpid() % 100}.{os.getpid() % 200}")
        self.switch = f"dfsw{tag}"
        self.origin = f"dfo{tag}"
        self.hosts = [f"dfh{tag}x{i}" for i in range(1, hosts + 1)]
        self.made = []
        self.rate = rate
        try:
            self._up()
        except Exception:
            self.down()
            raise

    def ip(self, ns):
        if self.wide:
            i = self.hosts.index(ns) if ns != self.origin else None
            return f"{self.subnet}.250.100" if i is None else f"{self.subnet}.{i // 200}.{i % 200 + 1}"
        return f"{self.subnet}.100" if ns == self.origin else f"{self.subnet}.{self.hosts.index(ns) + 1}"

    def _add(self, ns):
        sh("ip", "netns", "add", ns)
        self.made.append(ns)
        v, p = f"v{ns[-8:]}", f"p{ns[-8:]}"
        sh("ip", "link", "add", v, "type", "veth", "peer", "name", p)
        sh("ip", "link", "set", v, "netns", ns)
        sh("ip", "link", "set", p, "netns", self.switch)
        sh("ip", "-n", self.switch, "link", "set", p, "master", "br0")
        sh("ip", "-n", self.switch, "link", "set", p, "up")
        sh("ip", "-n", ns, "addr", "add", f"{self.ip(ns)}/{16 if self.wide else 24}", "dev", v)
        sh("ip", "-n", ns, "link", "set", v, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        if self.rate:
            sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", v, "root", "tbf", "rate", self.rate, "burst", "256kb", "latency", "50ms")
            sh("ip", "netns", "exec", self.switch, "tc", "qdisc", "add", "dev", p, "root", "tbf", "rate", self.rate, "burst", "256kb", "latency", "50ms")

    def _up(self):
        sh("ip", "netns", "add", self.switch)
        self.made.append(self.switch)
        sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.switch, "link", "set", "br0", "up")
        self._add(self.origin)
        for h in self.hosts:
            self._add(h)

    def set_rate(self, ns, rate):
        """Host ns's link (both ways) capped at `rate` from now on: a slow member."""
        v, p = f"v{ns[-8:]}", f"p{ns[-8:]}"
        sh("ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", v, "root", "tbf", "rate", rate, "burst", "256kb", "latency", "50ms")
        sh("ip", "netns", "exec", self.switch, "tc", "qdisc", "replace", "dev", p, "root", "tbf", "rate", rate, "burst", "256kb", "latency", "50ms")

    def tx_bytes(self, ns):
        """Bytes the namespace's link has sent (what leaves the origin)."""
        out = json.loads(sh("ip", "-n", ns, "-s", "-j", "link", "show", f"v{ns[-8:]}").stdout)
        return out[0]["stats64"]["tx"]["bytes"]

    def run(self, ns, *argv, **kw):
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, **kw)

    def down(self):
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made = []


def run(ns, *argv, **kw):
    """A command inside namespace `ns`, its output captured."""
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, timeout=60, **kw)


class Lone:
    """One namespace with only its loopback, up, carrying `addrs` too (IPv6 ones with nodad), and
    /etc/netns/NAME/<file> for each of `etc` (`ip netns exec` mounts them over /etc/<file>).
    `down()` removes the namespace and those files."""

    def __init__(self, prefix, addrs=(), etc=None):
        self.name = f"{prefix}-{os.getpid()}"
        self.etc = f"/etc/netns/{self.name}"
        sh("ip", "netns", "add", self.name)
        try:
            sh("ip", "-n", self.name, "link", "set", "lo", "up")
            for a in addrs:
                if ":" in a:
                    sh("ip", "-n", self.name, "-6", "addr", "add", a, "dev", "lo", "nodad")
                else:
                    sh("ip", "-n", self.name, "addr", "add", a, "dev", "lo")
            os.makedirs(self.etc, exist_ok=True)
            for file, text in (etc or {}).items():
                with open(f"{self.etc}/{file}", "w") as f:
                    f.write(text)
        except Exception:
            self.down()
            raise

    def down(self):
        sh("ip", "netns", "del", self.name, check=False)
        shutil.rmtree(self.etc, ignore_errors=True)
