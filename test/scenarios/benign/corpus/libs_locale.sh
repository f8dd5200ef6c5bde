#!/bin/bash
# ldconfig -p, locale, iconv, getent, id, hostname, date with zones
set -eu
ldconfig -p | grep -c libc >/dev/null; locale >/dev/null; locale -a >/dev/null; locale -k LC_NUMERIC >/dev/null 2>&1 || true
printf 'caf\xc3\xa9 na\xc3\xafve\n' | iconv -f UTF-8 -t ISO-8859-1 | iconv -f ISO-8859-1 -t UTF-16 | iconv -f UTF-16 -t ASCII//TRANSLIT >/dev/null
iconv -l | wc -l >/dev/null; getent passwd root >/dev/null; getent group root >/dev/null; getent hosts localhost >/dev/null
id >/dev/null; id -nG >/dev/null; hostname >/dev/null; uname -a >/dev/null; TZ=Asia/Tokyo date >/dev/null; date -u -d '@0' >/dev/null
nproc >/dev/null; getconf -a >/dev/null; lscpu >/dev/null 2>&1 || true; stat -f / >/dev/null; whoami >/dev/null
