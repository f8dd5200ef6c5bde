# loader_env: a workload started with LD_PRELOAD in its configuration (the
# harness's environment for it), whose programs inherit it, and a script
# that sets LD_LIBRARY_PATH for the commands it runs.
set -e
d=$(mktemp -d /tmp/vigil-loader-XXXXXX)
trap 'rm -rf "$d"' EXIT
export LD_LIBRARY_PATH=/usr/local/lib
seq 1 20000 > "$d/n"
sort -rn "$d/n" | head -3 > /dev/null
LD_LIBRARY_PATH=/usr/local/lib/app:/usr/local/lib sh -c 'wc -l < "$1"' sh "$d/n" > /dev/null
env | grep -c '^LD_' > /dev/null
ls -la "$d" > /dev/null
