#!/bin/bash
# csv_report: coreutils ETL: sort -t, -k, join, paste, cut, uniq -c over a
# 60k-row CSV.
set -eu # no pipefail: head ends pipelines early
d=$(mktemp -d /tmp/vigil-csv-XXXXXX)
trap 'rm -rf "$d"' EXIT
cut -d, -f2,3 "$FIX/data/sales.csv" | sort -t, -k1,1 > "$d/qty"
cut -d, -f2,4 "$FIX/data/sales.csv" | sort -t, -k1,1 > "$d/price"
cut -d, -f2 "$d/qty" | uniq -c | sort -rn | head -3
paste -d, "$d/qty" "$d/price" | head -1000 | sort -t, -k2,2n | tail -1
join -t, <(cut -d, -f1 "$d/qty" | uniq) <(cut -d, -f1 "$d/price" | uniq) | wc -l
