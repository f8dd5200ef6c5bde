#!/bin/bash
# node_etl: a Node.js script summarising a 60k-row CSV into JSON.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-nodeetl-XXXXXX)
trap 'rm -rf "$d"' EXIT
node "$FIX/node/etl.js" "$FIX/data/sales.csv" "$d/out.json"
test -s "$d/out.json"
