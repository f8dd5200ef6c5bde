#!/bin/sh
# idle_service: a mostly idle service with periodic work: every 200 ms it
# reads system status, appends a log line and, every fifth tick, rotates it.
set -e
dir=$(mktemp -d /tmp/vigil-idle-XXXXXX)
trap 'rm -rf "$dir"' EXIT
i=0
while [ $i -lt 15 ]; do
	sleep 0.2
	echo "$(date +%s) $(cat /proc/loadavg) $(wc -l < /proc/self/status)" >> "$dir/service.log"
	if [ $((i % 5)) -eq 4 ]; then
		mv "$dir/service.log" "$dir/service.log.$i"
	fi
	i=$((i + 1))
done
ls "$dir" > /dev/null
