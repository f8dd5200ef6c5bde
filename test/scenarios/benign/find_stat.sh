#!/bin/sh
# find_stat: walks system directories the way an inventory or scanner job
# does: find, stat, du, ls.
set -e
find /usr/lib -maxdepth 2 -name '*.so*' 2>/dev/null | wc -l > /dev/null
du -s /usr/share/doc > /dev/null 2>&1 || true
ls -la /etc > /dev/null
find /usr/include -maxdepth 1 -type f -name '*.h' -exec wc -l {} + > /dev/null 2>&1 || true
stat /etc/hostname > /dev/null
