#!/bin/sh
# compile: a compiler run: builds the kvstore benign workload with gcc at
# -O2 in a temporary directory, twice (once with -g), and links it.
set -e
src=$(dirname "$0")/kvstore.c
dir=$(mktemp -d /tmp/vigil-cc-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cc -O2 -Wall -c -o "$dir/kv.o" "$src"
cc -o "$dir/kv" "$dir/kv.o"
cc -O0 -g -o "$dir/kv-debug" "$src"
"$dir/kv" "$dir/db" 200 > /dev/null
