#!/bin/bash
# sed/awk/xargs/find -exec over a generated tree
set -eu
d=$(mktemp -d /tmp/vigil-sh-XXXXXX); trap 'rm -rf "$d"' EXIT
for i in $(seq 1 60); do mkdir -p "$d/p$((i%7))"; seq $i $((i*50)) > "$d/p$((i%7))/f$i.txt"; done
find "$d" -name '*.txt' -exec sed -i 's/^1/one/' {} +
find "$d" -type f -size +1k -exec wc -l {} \; >/dev/null
find "$d" -name '*.txt' -print0 | xargs -0 -n 5 awk '{s+=$1} END {print FILENAME, s}' >/dev/null
find "$d" -name '*.txt' | xargs -P 2 -I{} sh -c 'sort -n {} | tail -1' >/dev/null
find "$d" -type f -newer "$d/p1" -printf '%s %p\n' | sort -n | tail -3 >/dev/null
grep -rl one "$d" | xargs md5sum >/dev/null
find "$d" -name 'f1*.txt' -delete; find "$d" -empty -type d -exec rmdir {} + 2>/dev/null || true
tr a-z A-Z < /etc/os-release | cut -c1-20 | paste -sd, >/dev/null; env | sort >/dev/null
