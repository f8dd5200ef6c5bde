#!/bin/bash
# xz_parallel: a backup with multi-threaded compression: tar of the
# kernel's headers (/usr/include/linux) through xz -T2, then a listing
# and a test of the archive.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-xz-XXXXXX)
trap 'rm -rf "$d"' EXIT
tar -C /usr/include -cf - linux | xz -T2 -3 > "$d/include.tar.xz"
xz -T2 -dc "$d/include.tar.xz" | tar -t | wc -l
xz -t "$d/include.tar.xz"
