#!/bin/bash
# shell_xargs: bash pipelines: process substitution, xargs -P2 checksums,
# a while-read loop, here-documents, arithmetic.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-xargs-XXXXXX)
trap 'rm -rf "$d"' EXIT
for i in $(seq 1 30); do head -c $((i * 4000)) /dev/urandom > "$d/blob$i"; done
ls "$d"/blob* | xargs -P2 -n4 sha256sum > "$d/sums"
sha256sum -c --quiet "$d/sums"
diff <(sort "$d/sums") <(sort -k2 "$d/sums" | sort) >/dev/null
total=0
while read -r sum file; do
	total=$((total + $(stat -c %s "$file")))
done < "$d/sums"
cat > "$d/report" <<R
files: $(wc -l < "$d/sums")
bytes: $total
R
grep -c . "$d/report"
