#!/bin/bash
# python_http: a threaded Python HTTP service on loopback serving 200
# requests of its own client.
set -euo pipefail
/usr/bin/python3 - <<'P'
import http.server
import threading
import urllib.request


class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = ("hello " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def log_message(self, *a):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
port = srv.server_address[1]
ok = sum(1 for i in range(200) if urllib.request.urlopen(f"http://127.0.0.1:{port}/item/{i}").status == 200)
srv.shutdown()
print(ok)
P
