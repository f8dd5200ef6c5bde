#!/bin/bash
# package inventory, no installs
set -eu
dpkg -l | wc -l >/dev/null; dpkg -L coreutils >/dev/null; dpkg -S /bin/ls >/dev/null
dpkg-query -W -f='${Package} ${Version}\n' | sort | head -20 >/dev/null
apt-cache policy bash coreutils >/dev/null; apt-cache show bash >/dev/null; apt-cache depends coreutils >/dev/null
apt-cache search --names-only '^libc6' >/dev/null; apt list --installed 2>/dev/null | wc -l >/dev/null
apt-get -s install cowsay >/dev/null 2>&1 || true
