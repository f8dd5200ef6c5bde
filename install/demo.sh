#!/usr/bin/env bash
# demo.sh: the README's first command. Installs what vigil needs, builds it,
# and traces a small workload: a shell that reads files, fails to open one,
# connects to a closed loopback port and runs a few programs. Shows the
# interesting events, per-syscall counts and the exact counters.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "demo: tracing needs root: run 'sudo make demo'" >&2
	exit 1
fi
bash install/deps.sh
export PATH=$PATH:/usr/local/go/bin
make -s build
out=$(mktemp /tmp/vigil-demo.XXXXXX)
trap 'rm -f "$out"' EXIT
echo "== vigil trace -- bash -c '<sample workload>'"
set +e
./bin/vigil trace --out "$out" -- bash -c '
	cat /etc/hostname >/dev/null
	ls /nonexistent/secret 2>/dev/null
	(exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null
	uname -r >/dev/null
	exit 3'
status=$?
set -e
echo
echo "== a few of the $(wc -l <"$out") events (full text in the trace output; --json for JSON lines)"
grep -E '\] (execve|connect|exit_group)\(|openat\(.*(hostname|nonexistent)' "$out" | head -20
echo
echo "== the workload exited with status $status (vigil trace passes it on)"
