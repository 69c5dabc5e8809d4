"""An API with the mistakes Moat's detectors look for, for the detection tests: customer
records with emails and card numbers, a Python stack trace on a failing search, and an
endpoint that accepts any token, orders under any id, and a login that refuses all but one
password. Usage: leaky_api.py ADDRESS PORT"""
import json
import sys
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CUSTOMERS = [
    {"id": 1, "name": "Ann O'Brien", "email": "ann@example.com", "card": "4111 1111 1111 1111"},
    {"id": 2, "name": "Bob Stone", "email": "bob@example.org", "card": "5500 0000 0000 0004"},
]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/customers"):
            self._send(200, json.dumps(CUSTOMERS).encode())
        elif self.path.startswith("/search"):
            try:
                raise ValueError("search index unavailable")
            except ValueError:
                trace = traceback.format_exc()
            self._send(500, trace.encode(), "text/plain")
        else:
            self._send(200, b'{"ok": true}')

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        if self.path.startswith("/login"):
            fields = urllib.parse.parse_qs(body.decode(errors="replace"))
            if fields.get("password") == ["correct horse"]:
                self._send(200, b'{"session": "s"}')
            else:
                self._send(401, b'{"error": "bad credentials"}')
            return
        self._send(201, b'{"created": true}')


ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
