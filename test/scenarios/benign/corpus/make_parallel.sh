#!/bin/bash
# make_parallel: make -j2 of a C project of 17 files, make check, clean.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-make-XXXXXX)
trap 'rm -rf "$d"' EXIT
cp -r "$FIX/cproj/." "$d"
cd "$d"
make -s -j2
make -s check
make -s clean
