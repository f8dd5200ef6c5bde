#!/bin/bash
# a one-liner Perl HTTP server (IO::Socket::INET) and curl on loopback
set -eu
port=$((30000 + RANDOM % 10000))
perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalAddr=>"127.0.0.1",LocalPort=>shift,Listen=>5,ReuseAddr=>1) or die; for(1..40){$c=$s->accept or next; while(<$c>){last if /^\r?$/} print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n".localtime()."\n"; close $c}' $port & pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true; exit 0' EXIT
for i in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
for i in $(seq 1 30); do curl -sf "http://127.0.0.1:$port/x" >/dev/null; done
