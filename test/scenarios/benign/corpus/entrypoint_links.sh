#!/bin/bash
# a container entrypoint: logs linked to stdout/stderr, /etc/mtab, config templated under /tmp, a pid file, exec of the service
set -eu
d=$(mktemp -d /tmp/vigil-ep-XXXXXX); trap 'rm -rf "$d"' EXIT
mkdir -p "$d/log" "$d/run" "$d/etc"
ln -sf /dev/stdout "$d/log/access.log"; ln -sf /dev/stderr "$d/log/error.log"; ln -sf /proc/self/fd/1 "$d/log/app.log"
ln -sf /proc/self/mounts "$d/etc/mtab"; ln -sf /proc/mounts "$d/etc/mtab2"; ln -s /dev/null "$d/log/debug.log"; ln -s /dev/shm "$d/run/shm"
export PORT=8080 NAME=web; printf 'listen ${PORT};\nserver_name ${NAME};\n' | envsubst > "$d/etc/app.conf"
echo $$ > "$d/run/app.pid"; umask 022; ulimit -n 4096 2>/dev/null || true
# the exec replaces this shell and its trap: the service cleans up
exec sh -c 'cat /proc/self/status >/dev/null; echo started > "$1/log/app.log"; sleep 0.3; rm -rf "$1"' sh "$d"
