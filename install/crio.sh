#!/usr/bin/env bash
# crio.sh runs CRI-O beside the containerd of vigil's local test node (as
# root, on Debian): CRI-O $CRIO_VERSION built from its Go module with NRI
# enabled on its own socket, runc and conmon from Debian, pinns built from
# the module's C sources, and the node's local images loaded into CRI-O's
# own containers-storage with podman. install/node.sh calls it for
# `--runtime crio`; both runtimes may run at once.
#
#   install/crio.sh up        build/install what is missing, start CRI-O (idempotent)
#   install/crio.sh down      remove CRI-O's test pods, stop CRI-O
#   install/crio.sh restart   rewrite the config, restart CRI-O (containers keep running)
#   install/crio.sh status    say whether it runs
#   install/crio.sh env       print the paths as shell variables
#
# The build is verified against install/crio/go.sum and cached under
# $VIGIL_CACHE/crio-$CRIO_VERSION (about 3 minutes once, then seconds).
#
# CRI-O runs with _CRIO_ROOTLESS=1 in its environment: this VM lacks
# CAP_SYS_RESOURCE, and without it CRI-O gives the pause container an
# oom_score_adj of -998, which the kernel refuses. In that mode CRI-O also
# clears every container's cgroupsPath (runc then makes its cgroup /ID in
# cgroup v2 and /crio-conmon-ID/ID in the v1 hierarchies), drops
# oom_score_adj and the AppArmor profile, mounts /sys read-only for
# host-network pods and strips gid= mount options. Everything else is
# CRI-O's normal root path.
set -euo pipefail

CRIO_VERSION=v1.34.0
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$REPO/install/lib.sh"
CACHE=${VIGIL_CACHE:-/var/cache/vigil}
NODE_ROOT=${VIGIL_NODE_ROOT:-/var/lib/vigil-node}/crio
NODE_RUN=${VIGIL_NODE_RUN:-/run/vigil-node}/crio
BUILD=$CACHE/crio-$CRIO_VERSION
CRIO_SOCK=$NODE_RUN/crio.sock
NRI_SOCK=/var/run/nri/crio-nri.sock
NRI_PLUGIN_DIR=$NODE_ROOT/nri-plugins
CONFIG=$NODE_ROOT/crio.conf
LOG=$NODE_ROOT/crio.log
PIDFILE=$NODE_RUN/crio.pid
STORAGE_ROOT=$NODE_ROOT/storage
STORAGE_RUN=$NODE_RUN/storage
PAUSE_IMAGE=localhost/vigil/pause:1

say() { echo "node: crio: $*"; }

need_root() {
	[ "$(id -u)" = 0 ] || { echo "node: must run as root" >&2; exit 1; }
}


# build builds crio and pinns into $BUILD (once). The module's go.mod and
# go.sum are pinned in install/crio: some of CRI-O's pseudo-version
# dependencies are not in the public checksum database, so go.sum is what
# verifies them.
build() {
	if [ -x "$BUILD/crio" ] && [ -x "$BUILD/pinns" ] &&
		[ "$(cat "$BUILD/stamp" 2>/dev/null)" = "$(cat "$REPO/install/crio/go.sum" | sha256sum)" ]; then
		return
	fi
	apt_need runc conmon podman libseccomp-dev libgpgme-dev pkg-config gcc make libc6-dev
	say "building CRI-O $CRIO_VERSION (about 3 minutes; cached in $BUILD)"
	mkdir -p "$BUILD"
	local d
	d=$(mktemp -d)
	cp "$REPO/install/crio/go.mod" "$REPO/install/crio/go.sum" "$REPO/install/crio/tools.go" "$d/"
	(cd "$d" && GOFLAGS=-mod=readonly GOSUMDB=off \
		go build -trimpath -tags "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper seccomp" \
		-o "$BUILD/crio.new" github.com/cri-o/cri-o/cmd/crio)
	# pinns is C code inside the module.
	local mod
	mod=$(cd "$d" && go list -m -f '{{.Dir}}' github.com/cri-o/cri-o)
	cp -r "$mod/pinns" "$d/pinns"
	chmod -R u+w "$d/pinns"
	make -s -C "$d/pinns" >/dev/null
	install -m 0755 "$d/bin/pinns" "$BUILD/pinns"
	mv -f "$BUILD/crio.new" "$BUILD/crio"
	sha256sum <"$REPO/install/crio/go.sum" >"$BUILD/stamp"
	rm -rf "$d"
}

# hard FLAG DEFAULT: this shell's hard limit (ulimit -H$FLAG) as SOFT:HARD.
hard() {
	local v
	v=$(ulimit -H"$1")
	[ "$v" = unlimited ] && v=$2
	echo "$v:$v"
}

write_config() {
	mkdir -p "$NODE_ROOT" "$NODE_RUN" "$NRI_PLUGIN_DIR" "$NODE_ROOT/nri-conf.d" "$(dirname "$NRI_SOCK")"
	# Only the local test images (loaded with podman, never pulled) are accepted.
	cat >"$NODE_ROOT/policy.json" <<EOF
{"default": [{"type": "reject"}], "transports": {
  "docker": {"localhost/vigil": [{"type": "insecureAcceptAnything"}]},
  "containers-storage": {"": [{"type": "insecureAcceptAnything"}]}}}
EOF
	local tmp=$CONFIG.tmp
	cat >"$tmp" <<EOF
# vigil test node: CRI-O $CRIO_VERSION with NRI (written by install/crio.sh)
[crio]
root = "$STORAGE_ROOT"
runroot = "$STORAGE_RUN"
storage_driver = "overlay"
log_dir = "$NODE_ROOT/pods"
version_file = "$NODE_RUN/version"
version_file_persist = "$NODE_ROOT/version"
clean_shutdown_file = "$NODE_ROOT/clean.shutdown"

[crio.api]
listen = "$CRIO_SOCK"
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
pinns_path = "$BUILD/pinns"
namespaces_dir = "$NODE_RUN/ns"
container_exits_dir = "$NODE_RUN/exits"
container_attach_socket_dir = "$NODE_RUN/attach"
# Ours: without CAP_SYS_RESOURCE a container cannot get more than CRI-O has.
default_ulimits = ["nofile=$(hard n 1048576)", "nproc=$(hard u 65536)"]
hooks_dir = []

[crio.runtime.runtimes.runc]
runtime_path = "$(command -v runc)"
runtime_type = "oci"
runtime_root = "$NODE_RUN/runc"
monitor_path = "$(command -v conmon)"

[crio.image]
pause_image = "$PAUSE_IMAGE"
pause_command = "/pause"
signature_policy = "$NODE_ROOT/policy.json"

[crio.network]
network_dir = "$NODE_ROOT/cni"
plugin_dirs = ["$NODE_ROOT/cni-bin"]

[crio.nri]
enable_nri = true
nri_listen = "$NRI_SOCK"
nri_plugin_dir = "$NRI_PLUGIN_DIR"
nri_plugin_config_dir = "$NODE_ROOT/nri-conf.d"
nri_plugin_registration_timeout = "5s"
nri_plugin_request_timeout = "2s"
nri_disable_connections = false
EOF
	mv -f "$tmp" "$CONFIG"
	mkdir -p "$NODE_ROOT/cni" "$NODE_ROOT/cni-bin"
}

crio_pid() {
	local pid
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = crio ] && echo "$pid"
}

crictl_crio() { crictl --runtime-endpoint "unix://$CRIO_SOCK" --image-endpoint "unix://$CRIO_SOCK" --timeout 30s "$@"; }

start() {
	if crio_pid >/dev/null; then
		return
	fi
	mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	say "starting CRI-O (log $LOG)"
	# See the header: _CRIO_ROOTLESS because this VM lacks CAP_SYS_RESOURCE.
	_CRIO_ROOTLESS=1 setsid "$BUILD/crio" --config "$CONFIG" --config-dir "" --log-level info >>"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	for _ in $(seq 1 300); do
		if [ -S "$NRI_SOCK" ] && crictl_crio info >/dev/null 2>&1; then
			return
		fi
		kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { tail -20 "$LOG" >&2; echo "node: CRI-O exited" >&2; exit 1; }
		sleep 0.1
	done
	tail -20 "$LOG" >&2
	echo "node: CRI-O not ready after 30s" >&2
	exit 1
}

# load_images loads the node's OCI tarballs (install/node.sh builds them
# under $CACHE/images) into CRI-O's containers-storage.
load_images() {
	local dir=$CACHE/images podman=(podman --root "$STORAGE_ROOT" --runroot "$STORAGE_RUN" --storage-driver overlay)
	local have
	have=$("${podman[@]}" images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null || true)
	for img in pause:localhost/vigil/pause:1 busybox:localhost/vigil/busybox:1 probe:localhost/vigil/probe:1; do
		local f=${img%%:*} name=${img#*:} out id
		if grep -qx "$name" <<<"$have" && [ ! "$dir/$f.tar" -nt "$NODE_ROOT/loaded-$f" ]; then
			continue
		fi
		if ! out=$("${podman[@]}" load -q -i "$dir/$f.tar" 2>&1); then
			echo "$out" >&2
			exit 1
		fi
		id=$(awk '/Loaded image/ {print $NF}' <<<"$out" | tail -1)
		"${podman[@]}" tag "$id" "$name"
		touch "$NODE_ROOT/loaded-$f"
	done
}

stop_pid() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
}

cmd_up() {
	need_root
	apt_need runc conmon podman
	build
	write_config
	start
	load_images
	say "up: CRI-O $CRIO_VERSION (pid $(crio_pid)), CRI at $CRIO_SOCK, NRI at $NRI_SOCK"
}

cmd_down() {
	need_root
	local pid
	if pid=$(crio_pid); then
		crictl_crio rmp -fa >/dev/null 2>&1 || true
		stop_pid "$pid"
		say "stopped"
	fi
	rm -f "$PIDFILE"
}

cmd_env() {
	cat <<EOF
CRIO_SOCK=$CRIO_SOCK
CRIO_NRI_SOCK=$NRI_SOCK
CRIO_NRI_PLUGIN_DIR=$NRI_PLUGIN_DIR
CRIO_PIDFILE=$PIDFILE
CRIO_CONFIG=$CONFIG
CRIO_LOG=$LOG
CRIO_VERSION=$CRIO_VERSION
EOF
}

case "${1:-up}" in
up) cmd_up ;;
down) cmd_down ;;
restart)
	need_root
	build
	write_config
	if pid=$(crio_pid); then stop_pid "$pid"; fi
	start
	;;
status) if pid=$(crio_pid); then say "running (pid $pid)"; else say "not running"; fi ;;
env) cmd_env ;;
*)
	echo "usage: install/crio.sh up|down|restart|status|env" >&2
	exit 2
	;;
esac
