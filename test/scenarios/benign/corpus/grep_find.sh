#!/bin/bash
# grep_find: searching a source tree: find by name and size, grep -r with
# patterns, xargs wc.
set -euo pipefail
find /usr/include -name '*.h' | wc -l
find /usr/include -name '*.h' -size +20k | xargs wc -l | tail -1
grep -rl 'struct stat' /usr/include | wc -l
grep -rhoE '#define [A-Z_]+_MAX' /usr/include | sort | uniq -c | sort -rn | head -3
find /usr/share/doc -maxdepth 2 -name copyright | head -200 | xargs grep -l GPL | wc -l
