#!/bin/sh
# compress_cpu: CPU-heavy legitimate work: compresses 24 MB of generated
# data with gzip -9 and checks it.
set -e
dir=$(mktemp -d /tmp/vigil-gz-XXXXXX)
trap 'rm -rf "$dir"' EXIT
seq 1 3000000 > "$dir/data"
gzip -9 -c "$dir/data" > "$dir/data.gz"
gzip -t "$dir/data.gz"
