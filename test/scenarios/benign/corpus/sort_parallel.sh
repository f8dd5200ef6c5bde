#!/bin/bash
# sort --parallel=2 of 2M lines in memory, uniq -c, join, a numeric top
set -eu
d=$(mktemp -d /tmp/vigil-so-XXXXXX); trap 'rm -rf "$d"' EXIT
awk 'BEGIN{srand(3); for(i=0;i<2000000;i++) print int(rand()*1e6), int(rand()*100)}' > "$d/a"
sort -S 200M --parallel=2 -n "$d/a" > "$d/b"; cut -d' ' -f2 "$d/b" | sort | uniq -c | sort -rn | head -3 >/dev/null
sort -k1,1 "$d/a" | head -100000 > "$d/c"; sort -k1,1 "$d/c" | join - "$d/c" | wc -l >/dev/null
