#!/bin/bash
# a service's own fds and memory through /proc: output to /proc/self/fd/N
# and /dev/fd/N (tee, redirections), its fd table and maps listed, its
# executable checksummed, its own memory read (a sampler), an app log
# emptied and shredded
set -eu
d=$(mktemp -d /tmp/vigil-self-XXXXXX); trap 'rm -rf "$d"' EXIT
echo started > /proc/self/fd/1; echo notice > /dev/fd/2 2>/dev/null || true
echo "line" | tee /dev/fd/2 /proc/self/fd/1 >/dev/null
exec 7>"$d/out.log"; echo to-fd-7 > /proc/self/fd/7; exec 7>&-
ls -l /proc/self/fd /proc/self/exe >/dev/null; readlink /proc/self/exe /proc/self/cwd >/dev/null
(cd /proc/self/fd && ls >/dev/null); (cd /proc/self && cat status >/dev/null)
sha256sum /proc/self/exe >/dev/null; head -c 64 /proc/self/maps >/dev/null
/usr/bin/python3 - <<'PY'
import ctypes, os
buf = ctypes.create_string_buffer(b"sample" * 8)
with open("/proc/self/mem", "rb") as m:
    m.seek(ctypes.addressof(buf)); assert m.read(6) == b"sample"
PY
for i in 1 2 3; do echo "entry $i" >> "$d/app.log"; done
truncate -s0 "$d/app.log"; : > "$d/app.log"; shred -u "$d/app.log"
