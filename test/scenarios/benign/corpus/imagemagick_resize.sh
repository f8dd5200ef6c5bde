#!/bin/bash
# imagemagick-resize: thumbnails and web sizes of a 1600x1200 photo with
# ImageMagick (resize, blur, sharpen, gray; JPEG and PNG encodes), then
# identify.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-im-XXXXXX)
trap 'rm -rf "$d"' EXIT
src=$FIX/img/photo.png
/usr/bin/convert "$src" -resize 200% -blur 0x3 -resize 50% -quality 92 "$d/large.jpg"
for w in 1200 800 400 160; do /usr/bin/convert "$src" -resize "${w}x" -sharpen 0x1 -quality 85 "$d/w$w.jpg"; done
/usr/bin/convert "$src" -colorspace Gray -normalize "$d/gray.png"
/usr/bin/identify "$d"/*.jpg | wc -l
