"""HTTP/1.1 test server for Moat's capture tests: keep-alive, Content-Length and chunked bodies,
404s, HEAD and request bodies. Usage: http1_server.py ADDRESS PORT"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "session=secret-session-value")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        if self.path.startswith("/small"):
            self._send(200, b"hello from python\n")
        elif self.path.startswith("/large"):
            self._send(200, b"L" * (1 << 20), "application/octet-stream")
        elif self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"first;", b"second piece;", b"x" * 5000):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\nX-Trailer: done\r\n\r\n")
        elif self.path.startswith("/nothing"):
            self.send_response(204)
            self.end_headers()
        else:
            self._send(404, b"not found\n")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self._send(201, b"stored %d bytes\n" % len(body), "application/json")


ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
