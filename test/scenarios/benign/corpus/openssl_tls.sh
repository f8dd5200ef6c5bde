#!/bin/bash
# openssl genrsa/req, then s_server and s_client over loopback TLS
set -eu
d=$(mktemp -d /tmp/vigil-tls-XXXXXX); port=$((40000 + RANDOM % 10000))
openssl genrsa -out "$d/k.pem" 2048 2>/dev/null
openssl req -new -x509 -key "$d/k.pem" -subj /CN=localhost -days 2 -out "$d/c.pem"
openssl ecparam -genkey -name prime256v1 -out "$d/ec.pem"; openssl pkey -in "$d/ec.pem" -pubout >/dev/null
openssl s_server -accept 127.0.0.1:$port -cert "$d/c.pem" -key "$d/k.pem" -www -quiet & pid=$!
trap 'kill $pid; wait $pid 2>/dev/null || true; rm -rf "$d"; exit 0' EXIT
sleep 0.5
for i in 1 2 3 4 5; do echo -e "GET / HTTP/1.0\r\n\r" | openssl s_client -connect 127.0.0.1:$port -quiet -CAfile "$d/c.pem" >/dev/null 2>&1 || true; done
curl -sk "https://127.0.0.1:$port/" >/dev/null
openssl dgst -sha256 -sign "$d/k.pem" -out "$d/sig" /etc/hostname; openssl dgst -sha256 -verify <(openssl pkey -in "$d/k.pem" -pubout) -signature "$d/sig" /etc/hostname >/dev/null
openssl rand -hex 32 >/dev/null; openssl speed -seconds 1 sha256 >/dev/null 2>&1
