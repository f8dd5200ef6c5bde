#!/bin/bash
# nginx-load: nginx (a master and 2 workers, as a daemon) serving static
# files to 200 curl requests and 100 gzip'd keep-alive requests from one
# curl, a reload (new workers), then a graceful quit.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-nginx-XXXXXX)
port=$((30000 + RANDOM % 10000))
chmod 755 "$d" # the workers run as nginx's unprivileged user
mkdir -p "$d/html" "$d/logs"
echo hello > "$d/html/index.html"
head -c 300000 /dev/zero | tr '\0' x > "$d/html/big.txt"
cat > "$d/nginx.conf" <<C
worker_processes 2;
pid $d/nginx.pid;
error_log $d/logs/error.log;
events { worker_connections 256; }
http {
	access_log $d/logs/access.log;
	client_body_temp_path $d/tmp-body; proxy_temp_path $d/tmp-proxy; fastcgi_temp_path $d/tmp-fcgi;
	uwsgi_temp_path $d/tmp-uwsgi; scgi_temp_path $d/tmp-scgi;
	gzip on; gzip_types text/plain;
	server { listen 127.0.0.1:$port; root $d/html; }
}
C
stop() { nginx -c "$d/nginx.conf" -e "$d/logs/error.log" -s quit 2>/dev/null || true; sleep 0.5; rm -rf "$d"; }
trap stop EXIT
nginx -c "$d/nginx.conf" -e "$d/logs/error.log"
for i in $(seq 1 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
for i in $(seq 1 200); do curl -sf -o /dev/null "http://127.0.0.1:$port/index.html"; done
urls=()
for i in $(seq 1 100); do urls+=("http://127.0.0.1:$port/big.txt"); done
curl -sf --compressed "${urls[@]}" > /dev/null
nginx -c "$d/nginx.conf" -e "$d/logs/error.log" -s reload
sleep 0.5
for i in $(seq 1 20); do curl -sf -o /dev/null "http://127.0.0.1:$port/"; done
wc -l < "$d/logs/access.log"
