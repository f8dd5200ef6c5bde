#!/bin/bash
# deb_install: a Debian package into a throwaway root: dpkg-deb info,
# contents and extract, dpkg --root install, list and remove.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-deb-XXXXXX)
trap 'rm -rf "$d"' EXIT
deb=$FIX/deb/corpus-tool_1.0_all.deb
dpkg-deb -I "$deb" >/dev/null
dpkg-deb -c "$deb" | wc -l
dpkg-deb -x "$deb" "$d/extract"
mkdir -p "$d/root/var/lib/dpkg/info" "$d/root/var/lib/dpkg/updates"
touch "$d/root/var/lib/dpkg/status"
dpkg --root="$d/root" --log=/dev/null --force-script-chrootless --force-not-root -i "$deb" >/dev/null
dpkg --root="$d/root" -L corpus-tool | wc -l
dpkg --root="$d/root" --log=/dev/null --force-script-chrootless -r corpus-tool >/dev/null
