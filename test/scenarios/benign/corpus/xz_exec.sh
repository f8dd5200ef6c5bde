#!/bin/bash
# xz-exec: an entry point that execs its one job, xz -9 -T0 of 4 MB (C
# headers, then gzip'd data): at the end the compressor is the
# container's only process.
set -euo pipefail
exec xz -9 -T0 -c "$FIX/text/mixed.bin" > /dev/null
