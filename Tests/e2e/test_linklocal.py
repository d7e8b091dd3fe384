"""Cloud metadata is one header away from a naive mirror. Tested where it cannot leak: a network
namespace this test makes, whose loopback carries 169.254.169.254 and fd00:ec2::254, with a fake
metadata server, the daemon and every client inside it. Nothing is ever sent to a real link-local
address; the namespace and its /etc/netns hosts file are removed afterwards."""
import os, textwrap
import pytest
from lib import netns, procs
from lib.daemon import binary

METADATA_SERVER = textwrap.dedent("""
    import http.server, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            with open(sys.argv[2], "a") as f:
                f.write(self.path + "\\n")
            body = b"secret-role-credentials\\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    http.server.HTTPServer.address_family = __import__("socket").AF_INET6 if ":" in sys.argv[1] else __import__("socket").AF_INET
    http.server.HTTPServer((sys.argv[1], 80), H).serve_forever()
""")


ns_run = netns.run


@pytest.fixture
def metadata_ns(tmp_path):
    lone = netns.Lone("dfget-ll", addrs=["169.254.169.254/32", "fd00:ec2::254/128"],
                      etc={"hosts": "127.0.0.1 localhost\n169.254.169.254 metadata.test\n"})
    ns = lone.name
    procs_started = []
    try:
        seen = tmp_path / "metadata-requests"
        seen.write_text("")
        script = tmp_path / "metadata.py"
        script.write_text(METADATA_SERVER)
        for addr in ["169.254.169.254", "fd00:ec2::254"]:
            procs_started.append(procs.Proc(f"metadata-{addr}", ["ip", "netns", "exec", ns, "python3", str(script), addr, str(seen)],
                                            str(tmp_path)))
        procs.wait_until(lambda: ns_run(ns, "curl", "-s", "-o", "/dev/null", "http://169.254.169.254/ready").returncode == 0
                         and ns_run(ns, "curl", "-s", "-o", "/dev/null", "http://[fd00:ec2::254]/ready").returncode == 0,
                         what="metadata servers in the namespace")
        seen.write_text("")
        yield ns, seen, tmp_path, procs_started
    finally:
        for p in procs_started:
            p.stop()
        lone.down()


def test_link_local_and_metadata_addresses_are_refused(metadata_ns):
    ns, seen, tmp, started = metadata_ns
    port, peer = 65101, 65102  # inside the namespace nothing else listens
    cfg = tmp / "dfget.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        logDir: {tmp}/log
        dataDir: {tmp}/data
        workers: 1
        upload:
          tcpListen: {{listen: 127.0.0.1, port: {peer}}}
        proxy:
          tcpListen: {{listen: 127.0.0.1, port: {port}}}
          basicAuth: {{username: u, password: p}}
          registryMirror: {{dynamic: true}}
        """))
    d = procs.Proc("dfget-ns", ["ip", "netns", "exec", ns, binary(), "daemon", "--config", str(cfg)], str(tmp))
    started.append(d)
    procs.wait_until(lambda: ns_run(ns, "curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/").returncode == 0,
                     what="daemon in the namespace")
    auth = ["-H", "Proxy-Authorization: Basic dTpw"]
    cases = [
        ["-H", "X-Dragonfly-Registry: http://169.254.169.254", f"http://127.0.0.1:{port}/v2/"],
        ["-H", "X-Dragonfly-Registry: http://metadata.test", f"http://127.0.0.1:{port}/v2/"],
        ["-H", "X-Dragonfly-Registry: http://[fd00:ec2::254]", f"http://127.0.0.1:{port}/v2/"],
        [f"http://127.0.0.1:{port}/v2/?ns=169.254.169.254:80"],
        ["-x", f"http://127.0.0.1:{port}", "http://169.254.169.254/latest/meta-data/iam/"],
        ["-x", f"http://127.0.0.1:{port}", "http://metadata.test/latest/meta-data/iam/"],
    ]
    for args in cases:
        r = ns_run(ns, "curl", "-sS", "-i", *auth, *args)
        assert r.stdout.startswith(b"HTTP/1.1 403 ") and b"link-local or metadata" in r.stdout, (args, r.stdout[:300], r.stderr)
    r = ns_run(ns, "curl", "-sS", "-i", "-p", "--proxy-user", "u:p", "-x", f"http://127.0.0.1:{port}", "http://169.254.169.254/")
    assert b"HTTP/1.1 403 " in r.stdout and r.returncode != 0, (r.stdout[:300], r.stderr)
    # basicAuth holds even for the mirror: no header, no request.
    r = ns_run(ns, "curl", "-sS", "-i", "-H", "X-Dragonfly-Registry: http://169.254.169.254", f"http://127.0.0.1:{port}/v2/")
    assert r.stdout.startswith(b"HTTP/1.1 407 ")
    assert seen.read_text() == "", "nothing reached the metadata server"
    # The control: the server was there all along.
    assert ns_run(ns, "curl", "-s", "http://169.254.169.254/control").stdout == b"secret-role-credentials\n"
    assert seen.read_text() == "/control\n"
