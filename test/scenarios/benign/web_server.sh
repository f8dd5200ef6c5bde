#!/bin/sh
# web_server: busybox httpd serving a directory on loopback, under load from
# 150 sequential wget requests.
set -e
dir=$(mktemp -d /tmp/vigil-web-XXXXXX)
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
mkdir -p "$dir/www"
i=0
while [ $i -lt 20 ]; do
	seq 1 $((i * 50)) > "$dir/www/page$i.txt"
	i=$((i + 1))
done
echo '<html><body>hello</body></html>' > "$dir/www/index.html"
port=${PORT:-18080}
busybox httpd -f -p 127.0.0.1:$port -h "$dir/www" &
pid=$!
sleep 0.3
n=0
while [ $n -lt 150 ]; do
	busybox wget -q -O /dev/null "http://127.0.0.1:$port/page$((n % 20)).txt"
	n=$((n + 1))
done
busybox wget -q -O - "http://127.0.0.1:$port/" | grep -q hello
