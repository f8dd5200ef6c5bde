#!/bin/bash
# cron_jobs: what a cron daemon runs over 4 s: every half second a
# heartbeat, every second a log rotation with gzip and a cleanup of old
# files, a nightly-style backup tarball once.
set -eu # no pipefail: head ends pipelines early
d=$(mktemp -d /tmp/vigil-cron-XXXXXX)
trap 'rm -rf "$d"' EXIT
mkdir -p "$d/log" "$d/spool" "$d/backup"
for tick in $(seq 1 8); do
	date +%s >> "$d/spool/heartbeat"
	cat /proc/loadavg /proc/meminfo | head -3 >> "$d/log/app.log"
	if [ $((tick % 2)) -eq 0 ]; then
		mv "$d/log/app.log" "$d/log/app.log.$tick"
		gzip -f "$d/log/app.log.$tick"
		find "$d/log" -name '*.gz' -newer "$d/spool/heartbeat" -delete
		df -P "$d" | tail -1 >> "$d/spool/df"
	fi
	if [ "$tick" -eq 4 ]; then
		tar -C "$d" -czf "$d/backup/spool.tgz" spool log
	fi
	sleep 0.5
done
ls -l "$d/log" "$d/backup" >/dev/null
