#!/bin/sh
# text_search: a log analysis job: generates a log, greps, counts and
# rewrites it with sed and awk.
set -e
dir=$(mktemp -d /tmp/vigil-log-XXXXXX)
trap 'rm -rf "$dir"' EXIT
awk 'BEGIN { for (i = 0; i < 30000; i++) printf "2026-01-01T00:%02d:%02d level=%s req=%d path=/api/v%d/items\n", (i/60)%60, i%60, (i%17 ? "info" : "error"), i, i%3 }' > "$dir/app.log"
grep -c 'level=error' "$dir/app.log" > /dev/null
grep 'path=/api/v2' "$dir/app.log" | sed 's/level=info/I/' | awk '{ print $3 }' | sort | uniq -c > "$dir/report"
cut -d' ' -f2 "$dir/app.log" | sort | uniq -c > /dev/null
