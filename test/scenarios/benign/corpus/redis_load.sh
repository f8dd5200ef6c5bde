#!/bin/bash
# redis-load: redis-server (as a daemon) under redis-benchmark (4 clients,
# 3000 requests each of SET, GET, INCR, LPUSH), a background save (a forked
# child writing the RDB file), INFO, then shutdown.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-redis-XXXXXX)
port=$((30000 + RANDOM % 10000))
stop() { redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; sleep 0.3; rm -rf "$d"; }
trap stop EXIT
redis-server --port "$port" --bind 127.0.0.1 --dir "$d" --daemonize yes --pidfile "$d/redis.pid" --logfile "$d/redis.log" --save ""
for i in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-benchmark -p "$port" -q -n 3000 -c 4 -t set,get,incr,lpush
redis-cli -p "$port" bgsave >/dev/null
for i in $(seq 1 50); do [ -s "$d/dump.rdb" ] && break; sleep 0.1; done
redis-cli -p "$port" info keyspace | grep -c keys
