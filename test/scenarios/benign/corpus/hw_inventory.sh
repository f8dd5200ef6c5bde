#!/bin/bash
# hardware and kernel inventory: lscpu (DMI through /dev/mem), ls -l /proc /dev /proc/sys/kernel /sys/kernel, sysctl -a, df, findmnt
set -u
lscpu >/dev/null 2>&1; ls -l /dev /proc /proc/sys/kernel /sys/kernel >/dev/null 2>&1; sysctl -a >/dev/null 2>&1
df -h >/dev/null 2>&1; findmnt >/dev/null 2>&1; stat /proc/kcore /sys/kernel/mm >/dev/null 2>&1; mount >/dev/null
exit 0
