"""CONNECT tunnels: relayed byte for byte, both directions, half-close; dial failures are 502. Each
relay test runs twice: with splice(2) (the kernel moves the bytes) and through the loop."""
import hashlib, os, socket, subprocess, threading
import pytest
from lib import procs
from lib.client import connect_tunnel


@pytest.fixture(params=["splice", "loop"])
def tunnel_daemon(request, daemon_factory):
    d = daemon_factory(env={"DFGET_NO_SPLICE": "1"} if request.param == "loop" else {})
    d.relay = request.param
    return d


def test_connect_tunnel_carries_http_byte_exact(tunnel_daemon, registry, images):
    daemon = tunnel_daemon
    blob = images["big"][2][0]
    r = subprocess.run(["curl", "-sS", "-p", "-x", daemon.url, "-o", "-", f"http://{registry.addr}/v2/test/big/blobs/{blob}"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0 and "sha256:" + hashlib.sha256(r.stdout).hexdigest() == blob
    line = daemon.access(mode="tunnel", url=registry.addr)[-1]
    assert line["status"] == 200 and line["bytes"] > len(r.stdout) and line["bytesUp"] > 0
    assert line["relay"] == daemon.relay


def test_both_directions_at_once_with_backpressure(tunnel_daemon):
    """8 MiB up and 8 MiB down at the same time through one tunnel, each side reading slower than
    the other writes: byte-exact both ways, and each side's FIN reaches the other."""
    up, down = os.urandom(8 << 20), os.urandom(8 << 20)
    got = {}
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def target():
        c, _ = srv.accept()
        w = threading.Thread(target=lambda: (c.sendall(down), c.shutdown(socket.SHUT_WR)))
        w.start()
        buf = bytearray()
        while b := c.recv(16384):
            buf += b
        got["up"] = bytes(buf)
        w.join()
        c.close()

    t = threading.Thread(target=target)
    t.start()
    s, head = connect_tunnel(tunnel_daemon.port, f"127.0.0.1:{srv.getsockname()[1]}", timeout=30)
    assert head.startswith(b"HTTP/1.1 200")
    w = threading.Thread(target=lambda: (s.sendall(up), s.shutdown(socket.SHUT_WR)))
    w.start()
    buf = bytearray()
    while b := s.recv(16384):
        buf += b
    w.join()
    t.join(30)
    s.close()
    srv.close()
    assert bytes(buf) == down and got.get("up") == up
    line = tunnel_daemon.access(mode="tunnel")[-1]
    assert line["bytes"] == len(down) and line["bytesUp"] == len(up) and line["relay"] == tunnel_daemon.relay


def test_connect_with_early_data_and_half_close(tunnel_daemon, registry):
    """Bytes sent right behind the CONNECT head reach the target; after the client's FIN the answer still arrives."""
    daemon = tunnel_daemon
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    s.sendall(f"CONNECT {registry.addr} HTTP/1.1\r\nHost: {registry.addr}\r\n\r\n"
              f"GET /v2/ HTTP/1.1\r\nHost: {registry.addr}\r\nConnection: close\r\n\r\n".encode())
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    assert data.startswith(b"HTTP/1.1 200 Connection Established\r\n\r\nHTTP/1.1 200 OK\r\n"), data
    assert data.endswith(b"{}")


def test_connect_dial_failure_is_502(daemon):
    dead = procs.free_port()
    r = subprocess.run(["curl", "-sS", "-p", "-x", daemon.url, f"http://127.0.0.1:{dead}/"], capture_output=True, timeout=30)
    assert r.returncode != 0 and b"502" in r.stderr, r.stderr
    assert daemon.access(mode="tunnel", status=502)
