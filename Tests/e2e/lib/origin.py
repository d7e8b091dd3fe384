"""A Python HTTP origin on 127.0.0.1 for the tests that need one that misbehaves on purpose."""
import contextlib, http.server, threading


@contextlib.contextmanager
def serving(handler, tls=None):
    """Serves `handler` (a BaseHTTPRequestHandler class) on a free port, over TLS with the
    `ssl.SSLContext` `tls` if given; yields the port."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls:
        srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
