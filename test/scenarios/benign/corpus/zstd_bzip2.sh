#!/bin/bash
# zstd_bzip2: zstd -T2 at a high level and bzip2 of the same data, both
# checked by decompressing.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-zstd-XXXXXX)
trap 'rm -rf "$d"' EXIT
cat "$FIX"/data/*.txt "$FIX/data/sales.csv" > "$d/all"
zstd -q -T2 -15 "$d/all" -o "$d/all.zst"
bzip2 -k -9 "$d/all"
zstd -q -dc "$d/all.zst" | cmp - "$d/all"
bzip2 -dc "$d/all.bz2" | cmp - "$d/all"
