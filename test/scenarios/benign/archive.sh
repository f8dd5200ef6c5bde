#!/bin/sh
# archive: backs up a directory tree with tar and gzip, lists and restores it.
set -e
dir=$(mktemp -d /tmp/vigil-tar-XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/src/a/b" "$dir/restore"
i=0
while [ $i -lt 40 ]; do
	seq 1 $((i * 20)) > "$dir/src/a/f$i"
	echo "config $i" > "$dir/src/a/b/c$i.conf"
	i=$((i + 1))
done
tar -C "$dir" -czf "$dir/backup.tgz" src
tar -tzf "$dir/backup.tgz" > /dev/null
tar -C "$dir/restore" -xzf "$dir/backup.tgz"
diff -r "$dir/src" "$dir/restore/src"
