"""A small Petstore 3 server for Moat's API intelligence tests: answers the Swagger Petstore's
paths under /api/v3 with bodies that conform to its published spec, except pet 666, whose body
breaks it (a server-side contract violation), and serves /api/v3/admin/export, which the spec
does not document (a shadow API). Usage: petstore_server.py ADDRESS PORT"""
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def pet(pet_id):
    return {"id": pet_id, "name": "doggie", "photoUrls": ["https://example.com/d.png"],
            "status": "available", "category": {"id": 1, "name": "Dogs"}, "tags": [{"id": 1, "name": "good"}]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _json(self, status, value):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        length = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        match = re.fullmatch(r"/api/v3/pet/(\d+)", path)
        if match:
            pet_id = int(match.group(1))
            self._json(200, {**pet(0), "id": "not a number"} if pet_id == 666 else pet(pet_id))
        elif path == "/api/v3/pet/findByStatus":
            self._json(200, [pet(1), pet(2)])
        elif path == "/api/v3/store/inventory":
            self._json(200, {"available": 3, "sold": 1})
        elif path == "/api/v3/admin/export":
            self._json(200, {"pets": [pet(1), pet(2)]})
        else:
            self._json(404, {"code": 404, "message": "not found"})

    def do_POST(self):
        body = self._body()
        if self.path == "/api/v3/pet":
            try:
                self._json(200, json.loads(body))
            except ValueError:
                self._json(400, {"code": 400, "message": "invalid JSON"})
        else:
            self._json(404, {"code": 404, "message": "not found"})


if __name__ == "__main__":
    ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
