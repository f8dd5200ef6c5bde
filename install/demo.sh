#!/usr/bin/env bash
# demo.sh: the README's first command. Installs what vigil needs, builds it,
# brings up the local test node (containerd with NRI, runc, crictl, local
# images; the first run builds containerd, about 3-4 minutes, cached after),
# then runs test/demo: vigil's agent on the node, an unannotated pod,
# annotated benign pods and attacks (CPU abuse, a read through
# /proc/1/root, DNS to a foreign resolver, privilege escalation), some in
# mode detect and some in enforce, shown live with the verdicts and the
# actions taken; then a summary, the audit log verified, and a clean
# teardown (pods, agent, notify keeper, pinned BPF programs, containerd).
# Exits non-zero when an attack was not handled as its mode says.
#
#   VIGIL_DEMO_KEEP_NODE=1   leave containerd running at the end
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "demo: the agent needs root: run 'sudo make demo'" >&2
	exit 1
fi
export PATH=$PATH:/usr/local/go/bin
step() { if [ -t 1 ]; then printf '\033[1m==> %s\033[0m\n' "$*"; else printf '==> %s\n' "$*"; fi; }
step "installing what vigil needs (apt, when missing)"
bash install/deps.sh
step "building bin/vigil"
make -s build
step "bringing up the local test node (first run: builds containerd, a few minutes)"
bash install/node.sh up
keep=()
[ "${VIGIL_DEMO_KEEP_NODE:-}" = 1 ] && keep=(--keep-node)
go run ./test/demo --vigil bin/vigil "${keep[@]}"
