"""A storm of mutated requests against a running daemon: every worker survives and still serves.
Targets are limited to 127.0.0.1 by a whiteList, so no mutated host name is ever resolved."""
import random, socket, threading, time
from lib.client import curl, sha

SEEDS = [
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/test/img/blobs/{blob} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9223372036854775807\r\n\r\n",
    b"HEAD /v2/test/img/blobs/{blob}?ns=127.0.0.1:{reg} HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/test/img/manifests/latest HTTP/1.1\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n",
    b"GET http://127.0.0.1:{reg}/v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"CONNECT 127.0.0.1:{reg} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"POST /v2/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /v2/ HTTP/1.1\r\n\r\n",
]
INTERESTING = [b"\r\n", b"\n", b"\r", b":", b" ", b"-", b"0", b"9999999999999999999", b"18446744073709551616", b"\x00",
               b"\xff", b"%", b"%00", b"?", b"#", b"..", b"/", b"Transfer-Encoding: chunked\r\n", b"Content-Length: -1\r\n",
               b"Range: bytes=-0\r\n", b"Range: bytes=5-1\r\n", b"[", b"]", b"@", b"sha256:"]


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(5)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[pos % len(data)] = rng.randrange(256)
        elif op == 1:
            data[pos:pos] = rng.choice(INTERESTING)
        elif op == 2 and data:
            del data[pos:pos + rng.randint(1, 8)]
        elif op == 3:
            data[pos:pos] = data[rng.randrange(len(data) + 1):][:rng.randint(1, 40)]
        else:
            data = data[:pos] if pos > 4 else data
    return bytes(data)


def send(port, payload):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
    except OSError:
        pass


def test_storm_of_mutated_requests(daemon_factory, registry, images):
    d = daemon_factory(proxy_yaml=f"""
        registryMirror:
          url: http://{registry.addr}
        whiteList:
          - host: 127.0.0.1
        """)
    blob = images["small"][2][0]
    seeds = [s.replace(b"{blob}", blob.encode()).replace(b"{reg}", str(registry.port).encode()) for s in SEEDS]
    workers = sorted(d.workers())
    rng = random.Random(20261129)
    payloads = [mutate(rng, rng.choice(seeds)) for _ in range(4000)]
    deadline = time.monotonic() + 120
    lock = threading.Lock()

    def worker():
        while time.monotonic() < deadline:
            with lock:
                if not payloads:
                    return
                p = payloads.pop()
            send(d.port, p)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not payloads, "the storm finished within its time bound"
    assert sorted(d.workers()) == workers, "no worker died"
    assert not any(l.get("msg") == "worker died: restarting" for l in d.log_lines())
    for _ in range(4):  # every worker still serves, byte-exact
        assert sha(curl(f"{d.url}/v2/test/img/blobs/{blob}").stdout) == blob
