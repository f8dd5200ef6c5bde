#!/bin/bash
# python_web_load: a Python web service under load for 40 s: a threaded
# HTTP/1.1 service whose every request is CPU work (a PBKDF2 hash, as a
# login endpoint does), and two clients in the same container each
# keeping one connection open (keep-alive) and sending request after
# request, plus one that opens a connection per request.
set -euo pipefail
/usr/bin/python3 - <<'P'
import hashlib
import http.client
import http.server
import threading
import time
import urllib.request


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        b = hashlib.pbkdf2_hmac("sha256", self.path.encode(), b"salt", 20000).hex().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def log_message(self, *a):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
port = srv.server_address[1]
end = time.monotonic() + 40
counts = [0, 0, 0]


def keepalive(k):
    c = http.client.HTTPConnection("127.0.0.1", port)
    while time.monotonic() < end:
        c.request("GET", f"/login/{k}/{counts[k]}")
        c.getresponse().read()
        counts[k] += 1
    c.close()


def fresh():
    while time.monotonic() < end:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/login/2/{counts[2]}").read()
        counts[2] += 1


ts = [threading.Thread(target=keepalive, args=(k,)) for k in (0, 1)] + [threading.Thread(target=fresh)]
for t in ts:
    t.start()
for t in ts:
    t.join()
srv.shutdown()
print(counts)
P
