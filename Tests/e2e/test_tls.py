"""HTTPS: verified upstream TLS for the mirror, hijackHTTPS with the user's CA, the TLS listener."""
import os, signal, socket, subprocess
import pytest
from lib import procs
from lib.containerd import Containerd
from lib.client import connect_tunnel, curl, sha


def mirror_to(daemon_factory, tls_registry, extra=""):
    return daemon_factory(proxy_yaml=f"registryMirror:\n  url: https://registry.test:{tls_registry.port}\n{extra}")


def test_mirror_https_upstream_trusted_by_ca(daemon_factory, tls_registry, images, pki, etc_hosts):
    d = mirror_to(daemon_factory, tls_registry, f"  certs: [{pki}/test-ca.crt]\n")
    blob = images["big"][2][0]
    r = curl("-o", "-", f"{d.url}/v2/test/big/blobs/{blob}")
    assert sha(r.stdout) == blob
    assert d.access(mode="mirror", status=200)[-1]["upstream"] == f"registry.test:{tls_registry.port}"


def test_upstream_tls_sessions_are_resumed(daemon_factory, tls_registry, images, pki, etc_hosts):
    d = daemon_factory(workers=1, proxy_yaml=f"registryMirror:\n  url: https://registry.test:{tls_registry.port}\n"
                                             f"  certs: [{pki}/test-ca.crt]\n")
    # A big download that we do not read keeps the first upstream connection busy...
    busy = socket.create_connection(("127.0.0.1", d.port))
    busy.sendall(f"GET /v2/test/big/blobs/{images['big'][2][0]} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert busy.recv(100).startswith(b"HTTP/1.1 200")
    # ...so this request dials a second one, which resumes the first one's TLS session.
    curl("-o", "/dev/null", f"{d.url}/v2/")
    busy.close()
    tls = [l for l in d.log_lines() if l["msg"] == "upstream TLS connected"]
    assert len(tls) == 2, tls
    assert tls[0]["resumed"] is False and tls[0]["alpn"] == "http/1.1"
    assert tls[1]["resumed"] is True


def test_mirror_https_trusted_by_server_certificate_itself(daemon_factory, tls_registry, pki, etc_hosts):
    """The seed's `openssl s_client` recipe yields the server's certificate: it must verify too."""
    leaf = subprocess.run(f"openssl x509 -in <(openssl s_client -showcerts -servername registry.test "
                          f"-connect 127.0.0.1:{tls_registry.port} -prexit </dev/null 2>/dev/null)",
                          shell=True, executable="/bin/bash", capture_output=True, text=True, check=True).stdout
    path = os.path.join(pki, "server-from-s_client.crt")
    open(path, "w").write(leaf)
    d = mirror_to(daemon_factory, tls_registry, f"  certs: [\"{path}\"]\n")
    assert curl("-i", f"{d.url}/v2/").stdout.startswith(b"HTTP/1.1 200 ")


def test_mirror_https_untrusted_is_502_with_reason(daemon_factory, tls_registry, etc_hosts):
    d = mirror_to(daemon_factory, tls_registry)
    r = curl("-i", f"{d.url}/v2/", check=False)
    assert r.stdout.startswith(b"HTTP/1.1 502 ")
    assert (f"upstream registry.test:{tls_registry.port}: certificate verify failed: "
            f"unable to get local issuer certificate").encode() in r.stdout, r.stdout
    assert "certificate verify failed" in d.access(status=502)[-1]["error"]


def test_mirror_https_insecure_skips_verification(daemon_factory, tls_registry, etc_hosts):
    d = mirror_to(daemon_factory, tls_registry, "  insecure: true\n")
    assert curl("-i", f"{d.url}/v2/").stdout.startswith(b"HTTP/1.1 200 ")
    assert any("not verified" in l.get("warning", "") for l in d.log_lines() if l["msg"] == "config")


def hijack_yaml(cert, key, regx="registry\\.test", host_opts=""):
    """proxy_yaml for hijackHTTPS with one hosts rule (`host_opts`: its insecure/certs line)."""
    opts = f"\n      {host_opts}" if host_opts else ""
    return f"hijackHTTPS:\n  cert: {cert}\n  key: {key}\n  hosts:\n    - regx: {regx}{opts}\n"


@pytest.fixture
def hijacker(daemon_factory, pki, tls_registry):
    return daemon_factory(proxy_yaml="proxies:\n  - regx: blobs/sha256.*\n" +
                          hijack_yaml(f"{pki}/ca.crt", f"{pki}/ca.key", host_opts=f"certs: [{pki}/test-ca.crt]"))


def test_hijack_serves_leaf_signed_by_user_ca(hijacker, tls_registry, images, pki, etc_hosts):
    blob = images["big"][2][0]
    url = f"https://registry.test:{tls_registry.port}/v2/test/big/blobs/{blob}"
    r = curl("-v", "-x", hijacker.url, "--cacert", f"{pki}/ca.crt", "-o", "-", url)
    assert sha(r.stdout) == blob
    assert b"issuer: CN=dfget e2e hijack CA" in r.stderr, r.stderr.decode()
    assert b"subject: CN=registry.test" in r.stderr
    assert b"ALPN: server accepted http/1.1" in r.stderr or b"ALPN, server accepted to use http/1.1" in r.stderr
    line = hijacker.access(mode="hijack", status=200, until=lambda ls: any(blob in l["url"] for l in ls))[-1]
    assert line["decision"] == "cache" and line["rule"] == "blobs/sha256.*" and line["url"].endswith(blob)
    # The leaf's key is its own (ECDSA P-256), not the CA's RSA key.
    out = subprocess.run(f"openssl s_client -proxy 127.0.0.1:{hijacker.port} -connect registry.test:{tls_registry.port} "
                         f"-servername registry.test </dev/null 2>/dev/null | openssl x509 -noout -text",
                         shell=True, capture_output=True, text=True).stdout
    assert "id-ecPublicKey" in out and "prime256v1" in out and "DNS:registry.test" in out, out


def test_hijacked_keepalive_and_manifest(hijacker, tls_registry, images, pki, etc_hosts):
    _, mdig, _ = images["small"]
    base = f"https://registry.test:{tls_registry.port}/v2/test/img"
    r = curl("-v", "-x", hijacker.url, "--cacert", f"{pki}/ca.crt", "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
             "-o", "/dev/null", f"{base}/manifests/1", "-o", "/dev/null", f"{base}/manifests/1")
    assert r.stderr.count(b"< HTTP/1.1 200 OK") == 2 and b"Re-using existing connection" in r.stderr


def test_non_matching_connect_is_tunnelled_untouched(daemon_factory, tls_registry, pki, etc_hosts):
    d = daemon_factory(proxy_yaml=hijack_yaml(f"{pki}/ca.crt", f"{pki}/ca.key", regx="nothing-matches\\.test"))
    r = curl("-v", "-x", d.url, "--cacert", f"{pki}/test-ca.crt", f"https://registry.test:{tls_registry.port}/v2/")
    assert b"issuer: CN=dfget e2e registry CA" in r.stderr, "the client sees the registry's own certificate"
    assert d.access(mode="tunnel", url=f"registry.test:{tls_registry.port}")


def test_hijack_untrusted_upstream_is_502(daemon_factory, tls_registry, pki, etc_hosts):
    d = daemon_factory(proxy_yaml=hijack_yaml(f"{pki}/ca.crt", f"{pki}/ca.key"))
    r = curl("-i", "-x", d.url, "--cacert", f"{pki}/ca.crt", f"https://registry.test:{tls_registry.port}/v2/", check=False)
    assert r.stdout.startswith(b"HTTP/1.1 200 Connection Established\r\n\r\nHTTP/1.1 502 ")
    assert f"upstream registry.test:{tls_registry.port}: certificate verify failed".encode() in r.stdout


def test_ctr_pull_through_hijacking_proxy(hijacker, tls_registry, images, pki, workdir, etc_hosts):
    from lib import registry as reglib
    env = {"PATH": os.environ["PATH"], "HTTPS_PROXY": hijacker.url, "https_proxy": hijacker.url,
           "SSL_CERT_FILE": f"{pki}/bundle-with-hijack-ca.crt"}
    ref = f"registry.test:{tls_registry.port}/test/img:1"
    blobs = set(images["small"][2])
    layer = images["small"][2][0]
    for round in range(2):  # two fresh containerds: the second pull's blobs come from the cache
        c = Containerd(workdir)
        try:
            before = reglib.origin_bytes(tls_registry.log(), layer)
            c.ctr("image", "pull", ref, env=env)
            assert ref in c.ctr("image", "ls", "-q").stdout
            if round == 1:
                assert reglib.origin_bytes(tls_registry.log(), layer) == before
        finally:
            c.stop()
    got = lambda ls: {l["url"].rsplit("/", 1)[1] for l in ls if "/blobs/" in l["url"]}
    lines = hijacker.access(mode="hijack", status=200, until=lambda ls: blobs <= got(ls))
    assert blobs <= got(lines)
    assert "cache" in {l.get("source") for l in lines}


def test_kill9_worker_during_hijacked_download(hijacker, tls_registry, images, pki, etc_hosts):
    blob = images["big"][2][0]
    url = f"https://registry.test:{tls_registry.port}/v2/test/big/blobs/{blob}"
    args = ["curl", "-sS", "-x", hijacker.url, "--cacert", f"{pki}/ca.crt", "--limit-rate", "50M", "-o", "-", url]
    a = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    b = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    workers = hijacker.workers()
    assert len(workers) == 2

    def serving():
        out = subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :{hijacker.port} )"],
                             capture_output=True, text=True).stdout
        return [w for w in workers if f"pid={w}," in out]

    # Each worker serves one of the two downloads (round robin); kill one of them.
    both = procs.wait_until(lambda: len(serving()) == 2 and serving(), what="both workers serving")
    os.kill(both[0], signal.SIGKILL)
    outs = [p.communicate(timeout=120) for p in (a, b)]
    codes = sorted([(a.returncode, sha(outs[0][0])), (b.returncode, sha(outs[1][0]))])
    assert codes[0] == (0, blob), "the download on the surviving worker completes byte-exact"
    assert codes[1][0] != 0, "the one on the killed worker fails, never a short success"
    procs.wait_until(lambda: len(hijacker.workers()) == 2 and both[0] not in hijacker.workers(), what="replacement")
    r = curl("-x", hijacker.url, "--cacert", f"{pki}/ca.crt", "-o", "/dev/null", "-w", "%{http_code}", f"https://registry.test:{tls_registry.port}/v2/")
    assert r.stdout == b"200"


def test_tls_listener_with_and_without_client_certificates(daemon_factory, registry, pki):
    d = daemon_factory(proxy_yaml=f"""
        security:
          insecure: false
          cert: {pki}/registry.test.crt
          key: {pki}/registry.test.key
        registryMirror:
          url: http://{registry.addr}
        """)
    r = curl("-i", "--cacert", f"{pki}/test-ca.crt", f"https://127.0.0.1:{d.port}/v2/")
    assert r.stdout.startswith(b"HTTP/1.1 200 ")
    assert curl("-i", f"http://127.0.0.1:{d.port}/v2/", check=False).returncode != 0, "plain HTTP is refused"

    m = daemon_factory(proxy_yaml=f"""
        security:
          insecure: false
          cert: {pki}/registry.test.crt
          key: {pki}/registry.test.key
          caCert: {pki}/test-ca.crt
          tlsVerify: true
        registryMirror:
          url: http://{registry.addr}
        """)
    no_cert = curl("-i", "--cacert", f"{pki}/test-ca.crt", f"https://127.0.0.1:{m.port}/v2/", check=False)
    assert no_cert.returncode != 0
    ok = curl("-i", "--cacert", f"{pki}/test-ca.crt", "--cert", f"{pki}/client.crt", "--key", f"{pki}/client.key",
              f"https://127.0.0.1:{m.port}/v2/")
    assert ok.stdout.startswith(b"HTTP/1.1 200 ")
    # As an HTTPS proxy for curl too.
    p = curl("-i", "-x", f"https://127.0.0.1:{m.port}", "--proxy-cacert", f"{pki}/test-ca.crt",
             "--proxy-cert", f"{pki}/client.crt", "--proxy-key", f"{pki}/client.key", f"http://{registry.addr}/v2/")
    assert p.stdout.startswith(b"HTTP/1.1 200 ")


def test_bad_ca_refused_at_startup(tmp_path, pki):
    from lib.daemon import binary
    cfg = tmp_path / "dfget.yaml"
    cfg.write_text(f"proxy:\n  tcpListen:\n    port: {procs.free_port()}\n  hijackHTTPS:\n"
                   f"    cert: {pki}/ca.crt\n    key: {pki}/test-ca.key\n    hosts:\n      - regx: x\n")
    r = subprocess.run([binary(), "daemon", "--config", str(cfg), "--check"], capture_output=True, text=True)
    assert r.returncode == 2 and "hijackHTTPS.key does not match hijackHTTPS.cert" in r.stderr
    cfg.write_text(f"proxy:\n  tcpListen:\n    port: {procs.free_port()}\n  hijackHTTPS:\n"
                   f"    cert: {tmp_path}/missing.crt\n    key: {pki}/ca.key\n")
    r = subprocess.run([binary(), "daemon", "--config", str(cfg), "--check"], capture_output=True, text=True)
    assert r.returncode == 2 and "missing.crt" in r.stderr


def test_gen_ca_output_works_as_hijack_ca(tmp_path, daemon_factory, tls_registry, pki, etc_hosts):
    from lib.daemon import binary
    out = subprocess.run([binary(), "gen-ca", "--out", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0 and "update-ca-certificates" in out.stdout
    assert oct(os.stat(tmp_path / "ca.key").st_mode & 0o777) == "0o600"
    text = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "ca.crt"), "-noout", "-text"], capture_output=True, text=True).stdout
    assert "CA:TRUE" in text and "Certificate Sign" in text
    d = daemon_factory(proxy_yaml=hijack_yaml(f"{tmp_path}/ca.crt", f"{tmp_path}/ca.key", host_opts=f"certs: [{pki}/test-ca.crt]"))
    r = curl("-i", "-x", d.url, "--cacert", str(tmp_path / "ca.crt"), f"https://registry.test:{tls_registry.port}/v2/")
    assert r.stdout.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("trust", ["server-cert", "insecure"])
def test_hijack_upstream_trust_matrix(trust, daemon_factory, tls_registry, pki, etc_hosts):
    """certs: [CA] and neither are covered above; here the server's own certificate, and insecure."""
    host_opts = f"certs: [{pki}/registry.test.crt]" if trust == "server-cert" else "insecure: true"
    d = daemon_factory(proxy_yaml=hijack_yaml(f"{pki}/ca.crt", f"{pki}/ca.key", host_opts=host_opts))
    r = curl("-i", "-x", d.url, "--cacert", f"{pki}/ca.crt", f"https://registry.test:{tls_registry.port}/v2/")
    assert b"\r\n\r\nHTTP/1.1 200 OK" in r.stdout
    assert d.access(mode="hijack", status=200)


def test_non_ca_cert_is_served_as_is_and_open_key_warned(daemon_factory, tls_registry, pki, tmp_path, etc_hosts):
    key = tmp_path / "server.key"
    key.write_text(open(f"{pki}/registry.test.key").read())
    os.chmod(key, 0o644)
    d = daemon_factory(proxy_yaml=hijack_yaml(f"{pki}/registry.test.crt", key, host_opts=f"certs: [{pki}/test-ca.crt]"))
    r = curl("-v", "-x", d.url, "--cacert", f"{pki}/test-ca.crt", f"https://registry.test:{tls_registry.port}/v2/")
    assert b"issuer: CN=dfget e2e registry CA" in r.stderr and b"subject: CN=registry.test" in r.stderr
    assert d.access(mode="hijack", status=200), "served by the daemon with the given certificate, not tunnelled"
    warnings = [l.get("warning", "") for l in d.log_lines() if l["msg"] == "tls"]
    assert any("readable by group or others" in w for w in warnings) and any("is not a CA" in w for w in warnings)


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_hijacked_clients_resume_their_tls_sessions_on_any_worker(hijacker, tls_registry, pki, etc_hosts, version):
    """Session tickets work whichever worker a reconnection lands on (the workers share the ticket keys)."""
    import ssl
    ctx = ssl.create_default_context(cafile=f"{pki}/ca.crt")
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)

    def connect(session=None):
        s, head = connect_tunnel(hijacker.port, f"registry.test:{tls_registry.port}")
        assert b" 200 " in head.split(b"\r\n")[0], head
        t = ctx.wrap_socket(s, server_hostname="registry.test", session=session)
        t.sendall(b"GET /v2/ HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n")
        body = b""
        while chunk := t.recv(65536):
            body += chunk
        assert body.startswith(b"HTTP/1.1 200"), body[:100]
        reused, session = t.session_reused, t.session
        t.close()
        return reused, session

    reused, session = connect()
    assert not reused
    # Round robin over two workers: four reconnections land on both.
    results = []
    for _ in range(4):
        reused, session = connect(session)
        results.append(reused)
    assert all(results), results
