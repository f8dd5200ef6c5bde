#!/bin/bash
# tar with gzip, xz, zstd, lz4; zip/unzip; cpio-less round trips
set -eu
d=$(mktemp -d /tmp/vigil-ar-XXXXXX); trap 'rm -rf "$d"' EXIT
cp -r /usr/share/doc/bash "$d/src" 2>/dev/null || cp -r /etc/apt "$d/src"
for c in gzip xz zstd lz4; do tar -C "$d" -I "$c" -cf "$d/a.tar.$c" src; mkdir "$d/x$c"; tar -C "$d/x$c" -I "$c" -xf "$d/a.tar.$c"; diff -r "$d/src" "$d/x$c/src"; done
(cd "$d" && zip -qr a.zip src && mkdir z && cd z && unzip -q ../a.zip && diff -r ../src src)
xz -T2 -k -6 "$d/a.tar.gzip"; xz -t "$d/a.tar.gzip.xz"; zstd -q -19 --rm "$d/a.zip"; zstd -q -d "$d/a.zip.zst"
gzip -9 -c /usr/bin/bash | gunzip | cmp - /usr/bin/bash
