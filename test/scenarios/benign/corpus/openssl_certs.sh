#!/bin/bash
# openssl_certs: a small CA: EC and RSA keys, a CA certificate, a signed
# server certificate, verification, file encryption and digests.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-ssl-XXXXXX)
trap 'rm -rf "$d"' EXIT
cd "$d"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -subj /CN=corpus-ca -days 2 -out ca.crt
openssl genrsa -out srv.key 2048 2>/dev/null
openssl req -new -key srv.key -subj /CN=srv.example -out srv.csr
openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -out srv.crt 2>/dev/null
openssl verify -CAfile ca.crt srv.crt
head -c 2000000 /dev/urandom > data
openssl enc -aes-256-cbc -pbkdf2 -pass pass:corpus -in data -out data.enc
openssl enc -d -aes-256-cbc -pbkdf2 -pass pass:corpus -in data.enc | cmp - data
openssl dgst -sha256 data srv.crt >/dev/null
