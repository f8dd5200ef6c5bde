#!/bin/bash
# cxx_compile: g++ -O2 of a program using the STL, then runs it.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-cxx-XXXXXX)
trap 'rm -rf "$d"' EXIT
g++ -O2 -o "$d/cxx" "$FIX/cxx.cpp"
"$d/cxx"
