#!/usr/bin/env bash
# kubelet.sh builds a kubelet and runs it standalone (no API server) beside the
# local test node's containerd (install/node.sh), as root. Pods come from
# manifests in its static pod directory. What test/e2e/kubelet_test.go uses.
#
#   install/kubelet.sh build    build kubelet v1.37.2 ($VIGIL_KUBE_VERSION) once (about 6 minutes on 2 cores),
#                               cached in $VIGIL_CACHE/kubelet-$KUBE_VERSION/kubelet
#   install/kubelet.sh up       build if needed, write the KubeletConfiguration and start
#                               kubelet in the background (containerd must be up)
#   install/kubelet.sh down     remove the static pod manifests, wait until kubelet has
#                               stopped their pods, stop kubelet, remove what is left of
#                               its pods, unmount its root directory
#   install/kubelet.sh status   say whether kubelet runs
#   install/kubelet.sh env      print the paths as shell variables
#
# While it runs, kubelet owns the pods of containerd's CRI: it stops those it
# did not make (e.g. crictl's). Its state is under $VIGIL_KUBELET_ROOT
# (default /var/lib/vigil-kubelet), removed by down.
#
# The kubelet is built from the k8s.io/kubernetes module at $KUBE_VERSION in a
# throwaway module that replaces each staging module (k8s.io/api, ...) with the
# same module at the matching v0 release, as kubernetes' own go.mod points them
# at its source tree.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBE_VERSION=${VIGIL_KUBE_VERSION:-v1.37.2}
CACHE=${VIGIL_CACHE:-/var/cache/vigil}
KUBELET_DIR=$CACHE/kubelet-$KUBE_VERSION
KUBELET=$KUBELET_DIR/kubelet
ROOT=${VIGIL_KUBELET_ROOT:-/var/lib/vigil-kubelet}
RUN=${VIGIL_KUBELET_RUN:-/run/vigil-kubelet}
MANIFESTS=$ROOT/manifests
KUBELET_ROOT_DIR=$ROOT/root
CONFIG=$ROOT/config.yaml
LOG=$ROOT/kubelet.log
PIDFILE=$RUN/kubelet.pid
CONTAINERD_SOCK=/run/containerd/containerd.sock
NODE_NAME=${VIGIL_KUBELET_NODE:-vigil-node}
KUBELET_PORT=${VIGIL_KUBELET_PORT:-10350}
HEALTHZ_PORT=${VIGIL_KUBELET_HEALTHZ_PORT:-10348}
CRICTL=(crictl --runtime-endpoint "unix://$CONTAINERD_SOCK" --image-endpoint "unix://$CONTAINERD_SOCK")
# GOTOOLCHAIN for the kubelet build only, used when the release needs a newer
# Go than the one installed.
KUBE_GOTOOLCHAIN=${VIGIL_KUBE_GOTOOLCHAIN:-go1.27.3}

say() { echo "kubelet: $*"; }
die() { echo "kubelet: $*" >&2; exit 1; }

need_root() {
	[ "$(id -u)" = 0 ] || die "must run as root"
}

# version_ge A B: Go version A >= B (both like 1.26.0).
version_ge() {
	[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -1)" = "$2" ]
}

# cmd_build builds kubelet unless cached; one build at a time: a second
# caller waits for the first one's binary.
cmd_build() {
	mkdir -p "$CACHE"
	exec 9>"$KUBELET_DIR.lock"
	if ! flock -n 9; then
		say "another kubelet build is running (lock $KUBELET_DIR.lock): waiting for it"
		flock 9
	fi
	build_locked
	exec 9>&- # kubelet, started after, must not hold the lock
}

build_locked() {
	if [ -x "$KUBELET" ]; then
		say "cached: $KUBELET ($("$KUBELET" --version 2>/dev/null))"
		return
	fi
	command -v go >/dev/null || die "go is needed to build kubelet"
	local mod gomod need have toolchain total
	mod=$(mktemp -d)
	trap 'rm -rf "$mod"' RETURN
	say "building kubelet $KUBE_VERSION (once, about 6 minutes on 2 cores; cached in $KUBELET_DIR)"
	say "step 1/3: fetching k8s.io/kubernetes@$KUBE_VERSION's go.mod"
	(cd "$mod" && go mod init vigil.dev/kubelet-build >/dev/null 2>&1)
	gomod=$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
	[ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$KUBE_VERSION"
	need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
	have=$(go env GOVERSION | sed 's/^go//')
	toolchain=local
	if ! version_ge "$have" "$need"; then
		toolchain=$KUBE_GOTOOLCHAIN
		say "kubernetes $KUBE_VERSION needs go $need, this machine has $have: building with GOTOOLCHAIN=$toolchain"
	fi
	# The staging modules: 'k8s.io/api => ./staging/src/k8s.io/api' becomes
	# 'k8s.io/api => k8s.io/api v0.MINOR.PATCH'.
	{
		echo "module vigil.dev/kubelet-build"
		echo
		echo "go $need"
		echo
		echo "require k8s.io/kubernetes $KUBE_VERSION"
		echo
		echo "replace ("
		sed -n 's#^[[:space:]]*\([^[:space:]]*\) => \./staging/.*$#\t\1 => \1 v0.'"${KUBE_VERSION#v1.}"'#p' "$gomod"
		echo ")"
	} >"$mod/go.mod"
	[ "$(grep -c ' => .* v0\.' "$mod/go.mod")" -gt 0 ] || die "no staging modules found in $gomod"
	printf 'package main\n\nimport _ "k8s.io/kubernetes/cmd/kubelet"\n' >"$mod/tools.go"
	say "step 2/3: resolving $(grep -c ' => .* v0\.' "$mod/go.mod") staging modules at v0.${KUBE_VERSION#v1.} and the dependencies"
	(cd "$mod" && GOTOOLCHAIN=$toolchain GOFLAGS=-mod=mod go mod tidy >/dev/null) || die "go mod tidy failed"
	total=$(cd "$mod" && GOTOOLCHAIN=$toolchain GOFLAGS=-mod=mod CGO_ENABLED=0 go list -deps k8s.io/kubernetes/cmd/kubelet | wc -l)
	say "step 3/3: compiling k8s.io/kubernetes/cmd/kubelet ($total packages with the standard library's; cached ones are not counted)"
	mkdir -p "$KUBELET_DIR"
	(cd "$mod" && GOTOOLCHAIN=$toolchain GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
		go build -v -trimpath -o "$KUBELET.tmp" \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)" \
		k8s.io/kubernetes/cmd/kubelet 2>&1 | tee "$KUBELET_DIR/build.log" |
		awk -v total="$total" '{ n++; if (n % 100 == 0) printf "kubelet:   %d/%d packages built (%s)\n", n, total, $0; fflush() }'
		exit "${PIPESTATUS[0]}") || { tail -30 "$KUBELET_DIR/build.log" >&2; die "kubelet build failed (log $KUBELET_DIR/build.log)"; }
	mv -f "$KUBELET.tmp" "$KUBELET"
	say "built $KUBELET ($("$KUBELET" --version))"
}


kubelet_pid() {
	local pid
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = kubelet ] && echo "$pid"
}

write_config() {
	mkdir -p "$ROOT" "$RUN" "$MANIFESTS" "$KUBELET_ROOT_DIR" "$ROOT/pod-logs"
	cat >"$CONFIG.tmp" <<EOF
# A standalone kubelet (no API server) for vigil's test node (written by install/kubelet.sh).
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: $MANIFESTS
fileCheckFrequency: 2s
syncFrequency: 10s
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imageServiceEndpoint: unix://$CONTAINERD_SOCK
podLogsDir: $ROOT/pod-logs
# This host is cgroup v1 (with v2 beside it): kubelet refuses v1 unless told.
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
# No API server: anonymous access to the kubelet's own API, on loopback only.
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $HEALTHZ_PORT
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
# Never delete the node's local images (they cannot be pulled again), never
# evict the test pods.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
resolvConf: /etc/resolv.conf
protectKernelDefaults: false
# This machine lacks CAP_SYS_RESOURCE: kubelet cannot lower its own oom_score_adj.
oomScoreAdj: 0
EOF
	mv -f "$CONFIG.tmp" "$CONFIG"
}

cmd_up() {
	need_root
	apt_need curl jq
	cmd_build
	if pid=$(kubelet_pid); then
		say "already running (pid $pid)"
		return
	fi
	[ -S "$CONTAINERD_SOCK" ] || die "containerd is not running at $CONTAINERD_SOCK: run 'install/node.sh up' first"
	# The agent's pod mounts bpffs with Bidirectional propagation, which the
	# runtime allows on a shared mount only (systemd makes every mount shared;
	# this script does it for bpffs where nothing has, and undoes it in down).
	mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	if [ "$(findmnt -no PROPAGATION /sys/fs/bpf)" = private ]; then
		mount --make-shared /sys/fs/bpf
		mkdir -p "$RUN" && touch "$RUN/bpffs-was-private"
	fi
	write_config
	# The node's address (host-network pods' IP, where kubelet probes them):
	# the source address of the default route; the node's name resolves to
	# nothing.
	local node_ip=() ip
	ip=$(ip -o -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
	[ -z "$ip" ] || node_ip=(--node-ip "$ip")
	say "starting kubelet $KUBE_VERSION (node $NODE_NAME ${ip:-}, static pods from $MANIFESTS, log $LOG)"
	setsid "$KUBELET" --config "$CONFIG" --root-dir "$KUBELET_ROOT_DIR" --cert-dir "$ROOT/pki" \
		--hostname-override "$NODE_NAME" "${node_ip[@]}" --v 2 >>"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	for _ in $(seq 1 300); do
		if [ "$(curl -fsS "http://127.0.0.1:$HEALTHZ_PORT/healthz" 2>/dev/null)" = ok ]; then
			say "up (pid $(kubelet_pid), healthz on 127.0.0.1:$HEALTHZ_PORT)"
			return
		fi
		kubelet_pid >/dev/null || { tail -30 "$LOG" >&2; die "kubelet exited (log $LOG)"; }
		sleep 0.1
	done
	tail -30 "$LOG" >&2
	die "kubelet not healthy after 30s (log $LOG)"
}

# static_pods lists the pod sandboxes kubelet made from its static pod
# directory (annotation kubernetes.io/config.source=file).
static_pods() {
	command -v jq >/dev/null || return 0 # up installs it: without it, kubelet never ran
	"${CRICTL[@]}" pods -o json 2>/dev/null |
		jq -r '.items[]? | select(.annotations["kubernetes.io/config.source"] == "file") | .id'
}

stop_pid() {
	local pid=$1 secs=$2
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 $((secs * 10))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
}

# mounts_under DIR lists the mount points at and below DIR, deepest first.
mounts_under() {
	awk -v root="$1" '$5 == root || index($5, root "/") == 1 { print $5 }' /proc/self/mountinfo | sort -ru
}

cmd_down() {
	need_root
	local pid m left
	if pid=$(kubelet_pid); then
		# kubelet stops the pods whose manifests go away, with their grace
		# periods.
		rm -f "$MANIFESTS"/*
		for _ in $(seq 1 600); do
			[ -z "$(static_pods | head -1)" ] && break
			sleep 0.1
		done
		stop_pid "$pid" 10
		say "kubelet stopped"
	fi
	rm -f "$PIDFILE"
	# What kubelet left (it was killed, or a pod did not stop in time).
	if [ -S "$CONTAINERD_SOCK" ]; then
		for p in $(static_pods); do
			"${CRICTL[@]}" stopp "$p" >/dev/null 2>&1 || true
			"${CRICTL[@]}" rmp -f "$p" >/dev/null 2>&1 || true
			say "removed pod $p"
		done
	fi
	# kubelet bind-mounts its root directory on itself (shared, for mount
	# propagation) and mounts each pod's tmpfs volumes below it.
	for m in $(mounts_under "$ROOT"); do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	left=$(mounts_under "$ROOT")
	[ -z "$left" ] || die "mounts remain under $ROOT, which is kept: $left"
	rm -rf "$ROOT"
	if [ -f "$RUN/bpffs-was-private" ] && mountpoint -q /sys/fs/bpf; then
		mount --make-private /sys/fs/bpf
	fi
	rm -rf "$RUN"
}

cmd_status() {
	if pid=$(kubelet_pid); then say "running (pid $pid)"; else say "not running"; fi
}

cmd_env() {
	cat <<EOF
KUBELET=$KUBELET
KUBELET_MANIFESTS=$MANIFESTS
KUBELET_ROOT_DIR=$KUBELET_ROOT_DIR
KUBELET_CONFIG=$CONFIG
KUBELET_LOG=$LOG
KUBELET_PIDFILE=$PIDFILE
KUBELET_NODE=$NODE_NAME
EOF
}

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

case ${1:-} in
build) need_root; cmd_build ;;
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env) cmd_env ;;
-h | --help | help) usage ;;
*) echo "kubelet: unknown command \"${1:-}\": want build, up, down, status or env" >&2; usage >&2; exit 2 ;;
esac
