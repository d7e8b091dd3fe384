"""curl as the tests' HTTP client."""
import hashlib, socket, subprocess


def curl(*args, check=True):
    """curl -sS ARGS; with `check`, a failed transfer fails the test with curl's own words."""
    r = subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=180)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def raw(port, data, timeout=10):
    """Sends bytes as they are and reads until the daemon closes (or resets) the connection."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (ConnectionResetError, TimeoutError):
        pass
    s.close()
    return out


def connect_tunnel(port, target, timeout=10):
    """A CONNECT to `target` through the daemon on `port`: the socket and the answer's head, read a
    byte at a time so that nothing the target sends after it is consumed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        b = s.recv(1)
        assert b, f"the daemon closed without an answer: {head!r}"
        head += b
    return s, head
