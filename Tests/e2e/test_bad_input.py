"""Bad requests get a 4xx, one log line, and the worker lives on."""
import subprocess
from lib.client import raw


def test_bad_requests_get_4xx_and_workers_survive(daemon, registry):
    workers = sorted(daemon.workers())
    cases = [
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nNo-Colon\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
        (b"POST /v2/ HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"400"),
        (b"POST /v2/ HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd", b"400"),
        (b"GET / HTTP/3.0\r\n\r\n", b"400"),
        (b"GET ftp://x/ HTTP/1.1\r\nConnection: close\r\n\r\n", b"400"),
        (b"CONNECT nohostport HTTP/1.1\r\nConnection: close\r\n\r\n", b"400"),
        (b"POST http://127.0.0.1:1/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b""),
    ]
    for i, (req, status) in enumerate(cases * 2):  # twice: both workers see each case
        out = raw(daemon.port, req)
        if status:
            assert out.startswith(b"HTTP/1.1 " + status), (i, req[:40], out[:200])
    assert sorted(daemon.workers()) == workers, "no worker died"
    r = subprocess.run(["curl", "-sS", "-i", "-x", daemon.url, f"http://{registry.addr}/v2/"], capture_output=True)
    assert r.stdout.startswith(b"HTTP/1.1 200 ")
    bad = [l for l in daemon.log_lines() if l.get("msg") == "bad request"]
    assert len(bad) >= 12 and all("reason" in l and "peer" in l for l in bad)
