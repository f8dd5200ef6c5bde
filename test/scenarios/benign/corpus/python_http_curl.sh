#!/bin/bash
# python3 -m http.server, curl and wget as clients on loopback
set -eu
d=$(mktemp -d /tmp/vigil-ph-XXXXXX); port=$((20000 + RANDOM % 10000))
seq 1 5000 > "$d/data.txt"; mkdir "$d/sub"; echo hi > "$d/sub/x.html"
/usr/bin/python3 -m http.server $port --bind 127.0.0.1 --directory "$d" >/dev/null 2>&1 & pid=$!
trap 'kill $pid; wait $pid 2>/dev/null || true; rm -rf "$d"; exit 0' EXIT
for i in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/data.txt" >/dev/null && break; sleep 0.1; done
for i in $(seq 1 60); do curl -sf "http://127.0.0.1:$port/data.txt" -o /dev/null; done
wget -q -O /dev/null "http://127.0.0.1:$port/sub/x.html"; curl -sfI "http://127.0.0.1:$port/" >/dev/null
curl -s "http://127.0.0.1:$port/missing" >/dev/null
