#!/bin/bash
# bc and dc computing constants (single-threaded, CPU-bound), factor, a checksum of a large stream
set -eu
echo 'scale=2000; 4*a(1)' | bc -l >/dev/null
seq 100000000000 100000000200 | factor >/dev/null
head -c 100M /dev/zero | sha256sum >/dev/null
