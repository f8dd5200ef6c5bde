#!/bin/sh
# batch_files: a batch job: generates input files, processes each (filter,
# sort, compress, checksum) into an output directory, then summarizes.
set -e
dir=$(mktemp -d /tmp/vigil-batch-XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/in" "$dir/out"
i=0
while [ $i -lt 60 ]; do
	seq $i 7 $((i * 300 + 500)) > "$dir/in/job$i.csv"
	i=$((i + 1))
done
for f in "$dir"/in/*.csv; do
	b=$(basename "$f" .csv)
	grep -v 3 "$f" | sort -n -r > "$dir/out/$b.sorted"
	gzip -c "$dir/out/$b.sorted" > "$dir/out/$b.gz"
	sha256sum "$dir/out/$b.gz" >> "$dir/out/SUMS"
	mv "$dir/out/$b.sorted" "$dir/out/$b.done"
done
wc -l "$dir/out/SUMS" > /dev/null
