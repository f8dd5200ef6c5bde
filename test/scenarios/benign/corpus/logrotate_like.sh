#!/bin/bash
# logrotate-like: rotate numbered logs, compress, copytruncate, prune
set -eu
d=$(mktemp -d /tmp/vigil-lr-XXXXXX); trap 'rm -rf "$d"' EXIT
for round in 1 2 3 4 5; do
  for n in app web db; do seq 1 $((round*2000)) | sed "s/^/$n /" >> "$d/$n.log"; done
  for n in app web; do
    for k in 4 3 2 1; do [ -e "$d/$n.log.$k.gz" ] && mv -f "$d/$n.log.$k.gz" "$d/$n.log.$((k+1)).gz"; done
    mv "$d/$n.log" "$d/$n.log.1"; gzip -f "$d/$n.log.1"; : > "$d/$n.log"
  done
  cp "$d/db.log" "$d/db.log.$round"; truncate -s 0 "$d/db.log"; xz -f "$d/db.log.$round"
  find "$d" -name '*.5.gz' -delete
  ls -lt "$d" | head -3 >/dev/null; sleep 0.2
done
