"""CONNECT tunnels: relayed byte for byte, both directions, half-close; dial failures are 502."""
import hashlib, socket, subprocess
from lib import procs


def test_connect_tunnel_carries_http_byte_exact(daemon, registry, images):
    blob = images["big"][2][0]
    r = subprocess.run(["curl", "-sS", "-p", "-x", daemon.url, "-o", "-", f"http://{registry.addr}/v2/test/big/blobs/{blob}"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0 and "sha256:" + hashlib.sha256(r.stdout).hexdigest() == blob
    line = daemon.access(mode="tunnel", url=registry.addr)[-1]
    assert line["status"] == 200 and line["bytes"] > len(r.stdout) and line["bytesUp"] > 0


def test_connect_with_early_data_and_half_close(daemon, registry):
    """Bytes sent right behind the CONNECT head reach the target; after the client's FIN the answer still arrives."""
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
