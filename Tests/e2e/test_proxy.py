"""Forward proxy: absolute-URI requests through the daemon, byte-exact against the registry."""
import hashlib, subprocess
from lib import procs, registry as reglib
from lib.client import curl


def test_blob_through_proxy_is_byte_exact(daemon, registry, images):
    layout, _, blobs = images["big"]
    blob = blobs[0]
    r = curl("-x", daemon.url, "-o", "-", f"http://{registry.addr}/v2/test/big/blobs/{blob}")
    assert "sha256:" + hashlib.sha256(r.stdout).hexdigest() == blob
    assert len(r.stdout) == len(open(reglib.blob_path(layout, blob), "rb").read())
    acc = daemon.access(mode="proxy", status=200, until=lambda ls: any(l["url"].endswith(blob) for l in ls))
    line = [l for l in acc if l["url"].endswith(blob)][-1]
    assert line["decision"] == "cache" and line["rule"] == "blobs/sha256.*"
    assert line["bytes"] == len(r.stdout) and line["upstream"] == registry.addr
    assert line["pid"] in daemon.workers()


def test_manifest_keeps_accept_and_headers(daemon, registry, images):
    _, mdig, _ = images["small"]
    r = curl("-x", daemon.url, "-i", "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
             f"http://{registry.addr}/v2/test/img/manifests/1")
    head, body = r.stdout.split(b"\r\n\r\n", 1)
    assert b" 200 " in head.split(b"\r\n")[0]
    assert f"Docker-Content-Digest: {mdig}".encode() in head
    assert "sha256:" + hashlib.sha256(body).hexdigest() == mdig
    line = daemon.access(mode="proxy", url=f"http://{registry.addr}/v2/test/img/manifests/1")[-1]
    assert line["decision"] == "direct" and "rule" not in line


def test_head_and_keepalive_reuse(daemon, registry, images):
    _, _, blobs = images["small"]
    urls = [f"http://{registry.addr}/v2/test/img/blobs/{b}" for b in blobs]
    # Two requests on one client connection: curl reports it reused the connection.
    r = curl("-x", daemon.url, "-v", "-o", "/dev/null", "-o", "/dev/null", "-I", urls[0], urls[1])
    assert b"Re-using existing connection" in r.stderr or b"Reusing existing" in r.stderr, r.stderr.decode()
    assert r.stderr.count(b"< HTTP/1.1 200 OK") == 2
    assert b"Content-Length: " in r.stderr


def test_unreachable_upstream_is_502_with_reason(daemon):
    dead = procs.free_port()
    r = curl("-x", daemon.url, "-i", f"http://127.0.0.1:{dead}/v2/", check=False)
    assert r.stdout.startswith(b"HTTP/1.1 502 ")
    assert f"127.0.0.1:{dead}".encode() in r.stdout and b"refused" in r.stdout
    r = curl("-x", daemon.url, "-i", "http://no-such-host.invalid/v2/", check=False)
    assert r.stdout.startswith(b"HTTP/1.1 502 ") and b"cannot resolve" in r.stdout


def test_push_through_proxy_streams_request_bodies(daemon, registry, images, etc_hosts):
    """skopeo pushes (POST/PATCH/PUT with bodies) to reg-plain.test through the proxy."""
    env = {"PATH": "/usr/bin:/bin", "HTTP_PROXY": daemon.url, "http_proxy": daemon.url}
    layout = images["small"][0]
    dest = f"docker://reg-plain.test:{registry.port}/test/pushed:1"
    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:1", dest], check=True, env=env)
    pushed = lambda ls: {l["method"] for l in ls if "/test/pushed/" in l["url"]}
    methods = pushed(daemon.access(mode="proxy", until=lambda ls: {"POST", "PUT"} <= pushed(ls)))
    assert {"POST", "PUT"} <= methods, methods
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{registry.addr}/test/pushed:1"],
                         check=True, capture_output=True).stdout
    assert "sha256:" + hashlib.sha256(out).hexdigest() == images["small"][1]


def test_chunked_upload_and_chunked_response(daemon, registry):
    """A chunked request body reaches the origin intact (a blob upload that the registry verifies)."""
    data = b"chunky payload " * 5000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = curl("-x", daemon.url, "-i", "-X", "POST", f"http://{registry.addr}/v2/test/chunk/blobs/uploads/")
    loc = [l for l in r.stdout.decode().split("\r\n") if l.lower().startswith("location:")][0].split(" ", 1)[1]
    if loc.startswith("/"):
        loc = f"http://{registry.addr}{loc}"
    sep = "&" if "?" in loc else "?"
    r = subprocess.run(["curl", "-sS", "-i", "-x", daemon.url, "-X", "PUT", "-H", "Transfer-Encoding: chunked",
                        "-H", "Content-Type: application/octet-stream", "--data-binary", "@-", f"{loc}{sep}digest={digest}"],
                       input=data, capture_output=True, timeout=60)
    assert b" 201 " in r.stdout.split(b"\r\n")[0], r.stdout
    got = curl("-x", daemon.url, f"http://{registry.addr}/v2/test/chunk/blobs/{digest}").stdout
    assert got == data


def test_basic_auth_407(daemon_factory, registry):
    d = daemon_factory(proxy_yaml="""
        basicAuth:
          username: alice
          password: s3cret
        """)
    r = curl("-x", d.url, "-i", f"http://{registry.addr}/v2/", check=False)
    assert r.stdout.startswith(b"HTTP/1.1 407 ") and b"Proxy-Authenticate: Basic" in r.stdout
    r = curl("-x", d.url, "-U", "alice:s3cret", "-i", f"http://{registry.addr}/v2/")
    assert r.stdout.startswith(b"HTTP/1.1 200 ")


def test_upstream_connections_are_pooled(daemon_factory, registry):
    d = daemon_factory(workers=1)
    for _ in range(6):  # six client connections, one after the other
        curl("-x", d.url, "-o", "/dev/null", f"http://{registry.addr}/v2/")
    worker = d.workers()[0]
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( dport = :{registry.port} )"],
                         capture_output=True, text=True).stdout
    mine = [l for l in out.splitlines() if f"pid={worker}," in l]
    assert len(mine) == 1, out
