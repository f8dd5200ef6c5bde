#!/bin/bash
# useradd-entrypoint: the entry point of a PUID/PGID image: groupadd and
# useradd of the application's user with the ids it was given, its data
# chowned, a command run as that user (runuser), then userdel and
# groupdel as the container's end would leave it.
set -euo pipefail
name=vigil-corpus-app
puid=47123
d=$(mktemp -d /tmp/vigil-puid-XXXXXX)
cleanup() {
	userdel "$name" 2>/dev/null || true
	groupdel "$name" 2>/dev/null || true
	rm -rf "$d"
}
trap cleanup EXIT
groupadd -g "$puid" "$name"
useradd -u "$puid" -g "$puid" -M -d "$d" -s /usr/sbin/nologin -c "corpus app" "$name"
usermod -c "corpus application" "$name"
mkdir -p "$d/data"
echo state > "$d/data/state"
chown -R "$name:$name" "$d"
runuser -u "$name" -- sh -c 'id -un; cat "$1/data/state"; echo ok > "$1/data/out"' sh "$d"
id "$name"
getent passwd "$name" | cut -d: -f3
