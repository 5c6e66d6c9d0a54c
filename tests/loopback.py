"""A threaded HTTP server on 127.0.0.1 for fetch tests (nothing leaves the machine)."""

import http.server
import threading


class LoopbackServer:
    """Serve ``handler_cls`` on a free loopback port; use as a context manager."""

    def __init__(self, handler_cls):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
