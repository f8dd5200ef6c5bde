#!/bin/bash
# xz_parallel: a backup with multi-threaded compression: tar of
# /usr/include through xz -T2, then a listing and a test of the archive.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-xz-XXXXXX)
trap 'rm -rf "$d"' EXIT
tar -C /usr -cf - include | xz -T2 -3 > "$d/include.tar.xz"
xz -T2 -dc "$d/include.tar.xz" | tar -t | wc -l
xz -t "$d/include.tar.xz"
