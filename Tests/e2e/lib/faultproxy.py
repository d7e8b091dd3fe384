"""A fault-injecting HTTP proxy between the daemon and a registry, on 127.0.0.1.

Modes: "pass" (forward), "refuse" (nothing listens: connection refused), "hang" (accept, read the
request, never answer), "503", "429" (with `Retry-After: retry_after`). `cut_next_blob(fraction)`
makes the next large blob GET stop after that fraction of its body, with a reset. Every request
that reaches it is recorded (`requests`), with the body bytes it forwarded."""
import http.client, http.server, socket, struct, threading, time


class FaultProxy:
    def __init__(self, upstream_port, port=0):
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.retry_after = 30
        self.requests = []  # dicts: method, path, range, status, bytes
        self.cut_fraction = None
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.server = None
        self.port = port
        self.conns = set()
        self._listen()

    # The server is closed for "refuse" and made again on the same port for the other modes.
    def _listen(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                with proxy.lock:
                    proxy.conns.add(self.connection)

            def finish(self):
                with proxy.lock:
                    proxy.conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def do_HEAD(self):
                proxy._handle(self)

            def do_GET(self):
                proxy._handle(self)

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set_mode(self, mode, retry_after=None):
        if retry_after is not None:
            self.retry_after = retry_after
        if mode == self.mode:
            return
        if mode == "refuse":
            self.server.shutdown()
            self.server.server_close()
            self.server = None
            # Kept-alive connections end too: nothing listens, nothing answers.
            with self.lock:
                for c in list(self.conns):
                    try:
                        c.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        elif self.mode == "refuse":
            self._listen()
        self.mode = mode

    def cut_next_blob(self, fraction):
        self.cut_fraction = fraction

    def count(self, pred=lambda r: True):
        with self.lock:
            return sum(1 for r in self.requests if pred(r))

    def clear(self):
        with self.lock:
            self.requests.clear()

    def _record(self, h, status, nbytes=0):
        with self.lock:
            self.requests.append({"method": h.command, "path": h.path, "range": h.headers.get("Range"), "status": status,
                                  "bytes": nbytes, "auth": h.headers.get("Authorization")})

    def _handle(self, h):
        mode = self.mode
        if mode == "hang":
            self._record(h, "hang")
            while self.mode == "hang" and not self.stopping.is_set():
                time.sleep(0.02)
            h.close_connection = True
            return
        if mode in ("503", "429"):
            self._record(h, int(mode))
            body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"fault proxy"}]}' if mode == "429" else b"unavailable\n"
            h.send_response(int(mode))
            if mode == "429" or self.retry_after:
                h.send_header("Retry-After", str(self.retry_after))
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(body)
            return
        up = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            # Every header line as sent (a client may send several Accept lines).
            up.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
            for k, v in h.headers.items():
                if k.lower() not in ("connection", "proxy-connection", "keep-alive"):
                    up.putheader(k, v)
            up.endheaders()
            r = up.getresponse()
            h.send_response(r.status, r.reason)
            length = None
            for k, v in r.getheaders():
                if k.lower() in ("connection", "transfer-encoding", "keep-alive"):
                    continue
                if k.lower() == "content-length":
                    length = int(v)
                h.send_header(k, v)
            if length is None and h.command != "HEAD":
                h.send_header("Connection", "close")
                h.close_connection = True
            h.end_headers()
            sent = 0
            cut_at = None
            if (self.cut_fraction is not None and h.command == "GET" and "/blobs/" in h.path and length
                    and length > (1 << 20) and not h.headers.get("Range")):
                cut_at = int(length * self.cut_fraction)
                self.cut_fraction = None
            if h.command != "HEAD":
                while True:
                    chunk = r.read(64 << 10)
                    if not chunk:
                        break
                    if cut_at is not None and sent + len(chunk) >= cut_at:
                        h.wfile.write(chunk[:cut_at - sent])
                        sent = cut_at
                        h.wfile.flush()
                        # A reset, not a clean close: SO_LINGER 0.
                        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        h.close_connection = True
                        self._record(h, "cut", sent)
                        h.connection.close()
                        return
                    h.wfile.write(chunk)
                    sent += len(chunk)
            self._record(h, r.status, sent)
        except (BrokenPipeError, ConnectionResetError, OSError):
            h.close_connection = True
        finally:
            up.close()

    def stop(self):
        self.stopping.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
