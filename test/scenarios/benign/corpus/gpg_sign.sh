#!/bin/bash
# gpg: batch key generation, sign, verify, symmetric encryption (its own GNUPGHOME)
set -eu
export GNUPGHOME=$(mktemp -d /tmp/vigil-gpg-XXXXXX); trap 'gpgconf --kill all 2>/dev/null; rm -rf "$GNUPGHOME"' EXIT
chmod 700 "$GNUPGHOME"
gpg --batch --pinentry-mode loopback --passphrase '' --quick-gen-key 'Test <t@example.org>' ed25519 sign 1d 2>/dev/null
echo hello > "$GNUPGHOME/m"; gpg --batch --yes --detach-sign "$GNUPGHOME/m" 2>/dev/null; gpg --batch --verify "$GNUPGHOME/m.sig" "$GNUPGHOME/m" 2>/dev/null
gpg --batch --pinentry-mode loopback --passphrase pw --symmetric -o "$GNUPGHOME/m.gpg" "$GNUPGHOME/m" 2>/dev/null
gpg --batch --pinentry-mode loopback --passphrase pw -d "$GNUPGHOME/m.gpg" 2>/dev/null >/dev/null; gpg --list-keys >/dev/null 2>&1
