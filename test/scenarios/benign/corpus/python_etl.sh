#!/bin/bash
# python_etl: a Python data job: group 60k CSV rows, mean and median per
# group, JSON out.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-pyetl-XXXXXX)
trap 'rm -rf "$d"' EXIT
/usr/bin/python3 "$FIX/py/etl.py" "$FIX/data/sales.csv" "$d/out.json"
test -s "$d/out.json"
