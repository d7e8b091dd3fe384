"""The mirror with every kind of registry a user has: htpasswd, token auth, TLS via containerd's ?ns=,
redirects to storage; containerd (ctr and CRI), skopeo; hosts.toml generation with fallback."""
import hashlib, http.server, os, subprocess
import pytest
from lib.origin import serving
from lib import procs
from lib.containerd import Containerd
from lib.daemon import binary
from lib.client import curl

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def containerd(workdir):
    c = Containerd(workdir)
    yield c
    c.stop()


def test_401_with_www_authenticate_reaches_the_client(daemon_factory, htpasswd_registry):
    d = daemon_factory(proxy_yaml=f"registryMirror:\n  url: http://{htpasswd_registry.addr}\n")
    r = curl("-i", f"{d.url}/v2/test/img/manifests/1")
    assert r.stdout.startswith(b"HTTP/1.1 401 ") and b'Www-Authenticate: Basic realm="e2e-realm"' in r.stdout
    r = curl("-i", "-u", "testuser:testpass", "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
             f"{d.url}/v2/test/img/manifests/1")
    assert r.stdout.startswith(b"HTTP/1.1 200 ")


def test_ctr_pull_htpasswd_registry_through_mirror(containerd, daemon, htpasswd_registry, etc_hosts):
    host = containerd.mirror_with_dead_origin(daemon.url, f"http://{htpasswd_registry.addr}")
    containerd.ctr("image", "pull", "--hosts-dir", containerd.hosts_dir, "--user", "testuser:testpass", f"{host}/test/img:1")
    lines = daemon.access(mode="mirror", status=200, until=lambda ls: any("/blobs/" in l["url"] for l in ls))
    assert any("/blobs/" in l["url"] for l in lines)
    assert daemon.access(mode="mirror", status=401), "containerd met the 401 and answered it with credentials"


def test_ctr_pull_token_auth_registry_through_mirror(containerd, daemon, token_registry, etc_hosts):
    host = containerd.mirror_with_dead_origin(daemon.url, f"http://{token_registry.addr}")
    # With credentials containerd asks the token server by POST (OAuth2 password grant)...
    containerd.ctr("image", "pull", "--hosts-dir", containerd.hosts_dir, "--user", "testuser:testpass", f"{host}/test/img:1")
    # ...and anonymously by GET.
    containerd.ctr("image", "rm", f"{host}/test/img:1")
    containerd.ctr("content", "rm", *containerd.ctr("content", "ls", "-q").stdout.split())
    containerd.ctr("image", "pull", "--hosts-dir", containerd.hosts_dir, f"{host}/test/img:1")
    bearer = daemon.access(mode="mirror", status=401)
    assert bearer, "the registry's Bearer challenge went back to containerd"


def test_cri_pull_uses_config_path_hosts(containerd, daemon, registry, images, etc_hosts):
    """The kubelet's path: PullImage over CRI; the containerd daemon itself reads hosts.toml."""
    host = containerd.mirror_with_dead_origin(daemon.url, f"http://{registry.addr}")
    r = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "lib", "cri_pull.py"), containerd.sock, "pull",
                        f"{host}/test/img:1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "image_ref" in r.stdout
    blobs = set(images["small"][2])
    got = lambda ls: {l["url"].split("?")[0].rsplit("/", 1)[1] for l in ls}
    assert blobs <= got(daemon.access(mode="mirror", status=200, until=lambda ls: blobs <= got(ls)))


def test_skopeo_with_registries_conf_mirror(daemon_factory, registry, images, workdir):
    """skopeo sends neither ?ns= nor the header: registryMirror.url serves it."""
    d = daemon_factory(proxy_yaml=f"registryMirror:\n  dynamic: true\n  url: http://{registry.addr}\n")
    conf = os.path.join(workdir, f"registries-{d.port}.conf")
    origin = f"reg-origin.test:{procs.free_port()}"
    with open(conf, "w") as f:
        f.write(f'[[registry]]\nprefix = "{origin}"\nlocation = "{origin}"\ninsecure = true\n'
                f'[[registry.mirror]]\nlocation = "127.0.0.1:{d.port}"\ninsecure = true\n')
    out = subprocess.run(["skopeo", "--registries-conf", conf, "inspect", "--raw", f"docker://{origin}/test/img:1"],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert "sha256:" + hashlib.sha256(out.stdout).hexdigest() == images["small"][1]
    lines = d.access(mode="mirror", status=200)
    assert lines and all(l["upstreamFrom"] == "config" for l in lines)


def test_ns_parameter_picks_https_upstream(daemon_factory, tls_registry, pki, etc_hosts):
    d = daemon_factory(proxy_yaml=f"registryMirror:\n  dynamic: true\n  certs: [{pki}/test-ca.crt]\n")
    r = curl("-i", f"{d.url}/v2/?ns=registry.test%3A{tls_registry.port}")
    assert r.stdout.startswith(b"HTTP/1.1 200 ")
    line = d.access(mode="mirror")[-1]
    assert line["upstream"] == f"registry.test:{tls_registry.port}" and line["upstreamFrom"] == "ns"


class Recorder(http.server.BaseHTTPRequestHandler):
    """A fake registry that sends blob GETs to 'object storage' with a 307, and that storage."""
    protocol_version = "HTTP/1.1"
    seen = []
    storage = ""

    def log_message(self, *a):
        pass

    def do_GET(self):
        Recorder.seen.append((self.headers.get("Host"), self.path, self.headers.get("Authorization")))
        if self.path.startswith("/v2/test/img/blobs/"):
            self.send_response(307)
            self.send_header("Location", f"http://{Recorder.storage}/bucket/obj?X-Signature=abc")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/bucket/obj"):
            body = b"layer bytes from storage"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


def test_redirects_followed_and_authorization_dropped_off_host(daemon_factory, etc_hosts):
    Recorder.seen = []
    with serving(Recorder) as port:
        Recorder.storage = f"reg-origin.test:{port}"  # another host name: the redirect leaves the registry
        d = daemon_factory(proxy_yaml=f"registryMirror:\n  url: http://127.0.0.1:{port}\n")
        digest = "sha256:" + hashlib.sha256(b"layer bytes from storage").hexdigest()
        r = curl("-i", "-H", "Authorization: Bearer registry-token", f"{d.url}/v2/test/img/blobs/{digest}")
        assert r.stdout.startswith(b"HTTP/1.1 200 ") and r.stdout.endswith(b"layer bytes from storage")
        first, second = Recorder.seen[0], Recorder.seen[1]
        assert first[2] == "Bearer registry-token", "the registry gets the client's credentials"
        assert second[0] == f"reg-origin.test:{port}" and second[1] == "/bucket/obj?X-Signature=abc"
        assert second[2] is None, "object storage never sees the registry token"
        task = procs.wait_until(lambda: [l for l in d.log_lines() if l["msg"] == "task downloaded"], what="download line")
        assert task[-1]["redirect"] == f"307 reg-origin.test:{port}"


def test_gen_containerd_hosts_and_fallback_when_daemon_down(containerd, registry, images, tmp_path, etc_hosts):
    origin = f"reg-plain.test:{registry.port}"
    dead = procs.free_port()  # no daemon here: containerd must fall back to the origin
    args = [binary(), "gen-containerd-hosts", "--config-path", containerd.hosts_dir, "--port", str(dead), f"http://{origin}"]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0 and "written" in r.stdout, r.stderr
    text = open(os.path.join(containerd.hosts_dir, origin, "hosts.toml")).read()
    assert f'server = "http://{origin}"' in text and f'X-Dragonfly-Registry = ["http://{origin}"]' in text
    assert "unchanged" in subprocess.run(args, capture_output=True, text=True).stdout, "idempotent"
    containerd.ctr("image", "pull", "--hosts-dir", containerd.hosts_dir, f"{origin}/test/img:1")
    # A hosts.toml someone else wrote is kept unless --force.
    other = os.path.join(containerd.hosts_dir, "mine.test", "hosts.toml")
    os.makedirs(os.path.dirname(other))
    open(other, "w").write('server = "https://mine.test"\n')
    r = subprocess.run([binary(), "gen-containerd-hosts", "--config-path", containerd.hosts_dir, "mine.test"], capture_output=True, text=True)
    assert r.returncode == 1 and "was not written by dfget" in r.stderr
    assert open(other).read() == 'server = "https://mine.test"\n'
    r = subprocess.run([binary(), "gen-containerd-hosts", "--config-path", containerd.hosts_dir, "--force", "mine.test"], capture_output=True, text=True)
    assert r.returncode == 0 and 'server = "https://mine.test"' in open(other).read() and "X-Dragonfly-Registry" in open(other).read()


def test_generated_hosts_toml_with_live_daemon_goes_through_mirror(containerd, daemon, registry, etc_hosts):
    origin = f"reg-plain.test:{registry.port}"
    subprocess.run([binary(), "gen-containerd-hosts", "--config-path", containerd.hosts_dir, "--port", str(daemon.port),
                    f"http://{origin}"], check=True, capture_output=True)
    containerd.ctr("image", "pull", "--hosts-dir", containerd.hosts_dir, f"{origin}/test/img:1")
    assert daemon.access(mode="mirror", status=200, until=lambda ls: any("/blobs/" in l["url"] for l in ls))


def test_gen_containerd_hosts_default_sends_every_registry_through_the_daemon(containerd, daemon_factory, registry, etc_hosts):
    """`_default` covers every registry without a folder of its own: no `server` line (never
    `https://_default`), and the daemon takes the registry from containerd's `?ns=`."""
    origin = f"reg-plain.test:{registry.port}"
    d = daemon_factory(proxy_yaml=f"registryMirror:\n  dynamic: true\n  url: http://{origin}\nproxies:\n  - regx: blobs/sha256.*\n")
    r = subprocess.run([binary(), "gen-containerd-hosts", "--config-path", containerd.hosts_dir, "--port", str(d.port), "_default"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "written" in r.stdout and "dynamic" in r.stdout, (r.stdout, r.stderr)
    text = open(os.path.join(containerd.hosts_dir, "_default", "hosts.toml")).read()
    assert not any(l.strip().startswith("server") for l in text.splitlines()), text
    assert "_default\"" not in text
    containerd.ctr("image", "pull", "--hosts-dir", containerd.hosts_dir, f"{origin}/test/img:1")
    lines = d.access(mode="mirror", status=200, until=lambda ls: any("/blobs/" in l["url"] for l in ls))
    assert any(l.get("upstreamFrom") == "ns" for l in lines), [(l["url"], l.get("upstreamFrom")) for l in lines]


def test_dfget_init_containerd_writes_every_folder_backs_up_and_pulls_through_the_daemon(containerd, daemon_factory, registry, etc_hosts, tmp_path):
    """`dfget init --runtime containerd`: `_default` and a folder per registry, the daemon's address
    from its config; a hosts.toml someone else wrote is backed up; a second run changes nothing;
    `--dry-run` writes nothing; it says what this containerd (1.6 here) and its config need. The
    real containerd then pulls through the daemon, and from the registry once the daemon is gone."""
    origin = f"reg-plain.test:{registry.port}"
    d = daemon_factory(proxy_yaml=f"registryMirror:\n  dynamic: true\n  url: http://{origin}\nproxies:\n  - regx: blobs/sha256.*\n")
    hosts_dir = containerd.hosts_dir
    mine = os.path.join(hosts_dir, "quay.io", "hosts.toml")
    os.makedirs(os.path.dirname(mine), exist_ok=True)
    open(mine, "w").write('server = "https://quay.io"\n')
    ctd_config = tmp_path / "config.toml"
    ctd_config.write_text("version = 2\n")
    args = [binary(), "init", "--runtime", "containerd", "--config", d.config, "--config-path", hosts_dir,
            "--containerd-config", str(ctd_config), "--registries", f"http://{origin}", "quay.io"]
    dry = subprocess.run(args + ["--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 0 and "would be written" in dry.stdout and f"+ [host.\"http://127.0.0.1:{d.port}\"]" in dry.stdout, dry
    assert not os.path.exists(os.path.join(hosts_dir, origin)) and open(mine).read() == 'server = "https://quay.io"\n', "dry run wrote"
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r
    for folder in ["_default", origin, "quay.io"]:
        assert open(os.path.join(hosts_dir, folder, "hosts.toml")).read().startswith("# Generated by dfget"), folder
    assert open(mine + ".dfget-backup").read() == 'server = "https://quay.io"\n' and "backed up" in r.stdout
    assert "reads only the per-registry folders" in r.stdout, "containerd 1.6 here: _default is not read"
    assert "has no config_path" in r.stdout and f'config_path = "{hosts_dir}"' in r.stdout
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count("unchanged") == 3, again.stdout
    containerd.ctr("image", "pull", "--hosts-dir", hosts_dir, f"{origin}/test/img:1")
    assert d.access(mode="mirror", status=200, until=lambda ls: any("/blobs/" in l["url"] for l in ls))
    # The daemon gone: containerd falls back to the registry itself (to resolve the tag; the
    # layers are still in its content store).
    d.stop()
    containerd.ctr("image", "rm", f"{origin}/test/img:1")
    containerd.ctr("image", "pull", "--hosts-dir", hosts_dir, f"{origin}/test/img:1")
