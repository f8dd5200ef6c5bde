#!/bin/bash
# grep_find: searching source trees (the C library's and the kernel's
# headers): find by name and size, grep -r with patterns, xargs wc.
set -eu # no pipefail: head ends pipelines early
inc="/usr/include/linux /usr/include/x86_64-linux-gnu"
find $inc -name '*.h' | wc -l
find $inc -name '*.h' -size +20k | xargs wc -l | tail -1
grep -rl 'struct stat' $inc | wc -l
grep -rhoE '#define [A-Z_]+_MAX' $inc | sort | uniq -c | sort -rn | head -3
find /usr/share/doc -maxdepth 2 -name copyright | head -200 | xargs grep -l GPL | wc -l
