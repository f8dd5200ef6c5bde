#!/bin/sh
# sort_numbers: an analytics step: shuffles and sorts a million numbers.
set -e
dir=$(mktemp -d /tmp/vigil-sort-XXXXXX)
trap 'rm -rf "$dir"' EXIT
seq 1 600000 | shuf > "$dir/shuf"
sort -n "$dir/shuf" | tail -1 > /dev/null
sort -u "$dir/shuf" | wc -l > /dev/null
