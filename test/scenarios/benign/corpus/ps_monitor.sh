#!/bin/bash
# a monitoring sidecar: process list, tree, memory, disk, sockets, pid cwd
set -eu
ps aux >/dev/null; ps -eo pid,ppid,user,rss,args --sort=-rss | head -5 >/dev/null
top -b -n 1 >/dev/null; free -m >/dev/null; vmstat 1 2 >/dev/null; df -h >/dev/null; uptime >/dev/null
pgrep -a bash >/dev/null || true; pstree -p >/dev/null 2>&1 || true
ss -tanp >/dev/null 2>&1 || true; ss -s >/dev/null 2>&1 || true
pwdx $$ >/dev/null 2>&1 || true
for p in /proc/[0-9]*; do cat $p/stat 2>/dev/null; done | wc -l >/dev/null
ls -l /proc/$$/fd >/dev/null; cat /proc/self/status /proc/self/limits /proc/self/mountinfo >/dev/null
