import os, shutil, subprocess, sys, tempfile
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from lib import pki as pkilib, procs, registry as reglib  # noqa: E402
from lib.daemon import Daemon  # noqa: E402

HOSTS_NAMES = ["reg-plain.test", "reg-origin.test", "registry.test"]


@pytest.fixture(scope="session")
def workdir():
    d = tempfile.mkdtemp(prefix="dfget-e2e-")
    yield d
    if os.environ.get("KEEP_E2E") != "1":
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def images(workdir):
    """Two deterministic images: a small 3-layer one (with busybox) and one 200 MiB layer."""
    small = os.path.join(workdir, "oci-small")
    big = os.path.join(workdir, "oci-big")
    s_manifest, s_blobs = reglib.build_image(small, "--small", "--add-file", "/bin/busybox:bin/busybox")
    b_manifest, b_blobs = reglib.build_image(big, "--big-mib", "200", "--gzip-level", "1")
    return {"small": (small, s_manifest, s_blobs), "big": (big, b_manifest, b_blobs)}


@pytest.fixture(scope="session")
def registry(workdir, images):
    r = reglib.Registry(workdir)
    r.push(images["small"][0], "test/img")
    r.push(images["big"][0], "test/big")
    yield r
    r.stop()


@pytest.fixture(scope="session")
def etc_hosts():
    """Go clients never proxy 127.0.0.1: give the registry names, restored afterwards."""
    with open("/etc/hosts") as f:
        original = f.read()
    with open("/etc/hosts", "a") as f:
        f.write("\n127.0.0.1 " + " ".join(HOSTS_NAMES) + "  # dfget e2e\n")
    yield HOSTS_NAMES
    with open("/etc/hosts", "w") as f:
        f.write(original)


@pytest.fixture
def daemon_factory(workdir):
    started = []

    def make(**kw):
        d = Daemon(workdir, **kw)
        started.append(d)
        return d

    yield make
    for d in started:
        d.stop()


@pytest.fixture
def daemon(daemon_factory, registry):
    """A daemon whose mirror points at the test registry (dynamic, so the header wins when sent)."""
    return daemon_factory(proxy_yaml=f"""
        registryMirror:
          dynamic: true
          url: http://{registry.addr}
        proxies:
          - regx: blobs/sha256.*
        """)


@pytest.fixture(scope="session")
def pki(workdir):
    return pkilib.make(os.path.join(workdir, "pki"))


@pytest.fixture(scope="session")
def tls_registry(workdir, images, pki, registry):
    """docker-registry over TLS (certificate for registry.test from the test CA), with both images."""
    r = reglib.Registry(workdir, extra_config=f"""  tls:
    certificate: {pki}/registry.test.crt
    key: {pki}/registry.test.key
""", scheme="https")
    certdir = os.path.join(workdir, "skopeo-certs")
    os.makedirs(certdir, exist_ok=True)
    shutil.copy(os.path.join(pki, "test-ca.crt"), os.path.join(certdir, "ca.crt"))
    r.push(images["small"][0], "test/img", tls_certdir=certdir)
    r.push(images["big"][0], "test/big", tls_certdir=certdir)
    yield r
    r.stop()


@pytest.fixture(scope="session")
def htpasswd_registry(workdir, images):
    """docker-registry with htpasswd (bcrypt) testuser:testpass."""
    path = os.path.join(workdir, "htpasswd")
    with open(path, "w") as f:
        f.write(subprocess.run(["htpasswd", "-Bbn", "testuser", "testpass"], capture_output=True, text=True, check=True).stdout)
    r = reglib.Registry(workdir, extra_config=f"""  secret: e2e-secret
auth:
  htpasswd:
    realm: e2e-realm
    path: {path}
""")
    r.push(images["small"][0], "test/img", creds="testuser:testpass")
    yield r
    r.stop()


@pytest.fixture(scope="session")
def token_registry(workdir, images, pki):
    """docker-registry with token auth and a token server answering GET (Basic) and POST (OAuth2 password)."""
    tport = procs.free_port()
    token = procs.Proc("token-server", [sys.executable, os.path.join(os.path.dirname(__file__), "lib", "token_server.py"),
                                        "--listen", "127.0.0.1", "--port", str(tport), "--key", f"{pki}/token.key",
                                        "--cert", f"{pki}/token.crt"], workdir)
    procs.wait_until(lambda: procs.port_open(tport), what="token server")
    r = reglib.Registry(workdir, extra_config=f"""  secret: e2e-secret
auth:
  token:
    realm: http://127.0.0.1:{tport}/token
    service: harness-registry
    issuer: harness-issuer
    rootcertbundle: {pki}/token.crt
""")
    r.push(images["small"][0], "test/img", creds="testuser:testpass")
    yield r
    r.stop()
    token.stop()
