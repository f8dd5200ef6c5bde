#!/bin/bash
# ssh_keygen: provisioning: 12 ed25519 and 2 RSA keys, fingerprints, an
# authorized_keys file.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-sshkey-XXXXXX)
trap 'rm -rf "$d"' EXIT
for i in $(seq 1 12); do ssh-keygen -q -t ed25519 -N '' -C "host$i" -f "$d/id$i"; done
for i in 1 2; do ssh-keygen -q -t rsa -b 2048 -N '' -C "rsa$i" -f "$d/rsa$i"; done
cat "$d"/*.pub > "$d/authorized_keys"
ssh-keygen -l -f "$d/authorized_keys" | wc -l
