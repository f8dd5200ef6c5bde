#!/usr/bin/env bash
# node.sh sets up and runs vigil's local test node on a Debian machine, as
# root: containerd v2.4.2 with NRI enabled, runc, crictl, and local images
# (no registry is needed: images are built from files on this machine and
# imported). What CI, `make e2e` and `make node-up` use.
#
#   install/node.sh up          build/install what is missing, start containerd (idempotent)
#   install/node.sh up --runtime crio   the same for CRI-O instead (install/crio.sh; both
#                               may run at once: CRI-O has its own CRI and NRI sockets)
#   install/node.sh down        remove the test pods, stop containerd (and the agent);
#                               'vigil uninstall' detaches and unpins the agent's tracer
#                               and guard and stops its notify fd keeper
#   install/node.sh agent-up [--runtime crio]   start bin/vigil agent in the background (after up): events in
#                               /var/lib/vigil-node/events.jsonl, notify decisions in
#                               seccomp.jsonl, audit log in audit/, log in agent.log
#   install/node.sh status      say what runs
#   install/node.sh env         print the paths as shell variables
#   install/node.sh restart-crio   rewrite CRI-O's config, restart it
#   install/node.sh restart-containerd   rewrite the config, restart containerd
#                               (containers keep running; VIGIL_NRI_VALIDATOR=reject-seccomp
#                               turns on NRI's validator refusing seccomp adjustments)
#
# Built binaries are cached under $VIGIL_CACHE (default /var/cache/vigil),
# keyed by version, so a second run takes seconds. containerd keeps its own
# root and state under /var/lib/vigil-node and /run/vigil-node.
set -euo pipefail

CONTAINERD_VERSION=v2.4.2
CRICTL_VERSION=v1.37.0
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$REPO/install/lib.sh"
CACHE=${VIGIL_CACHE:-/var/cache/vigil}
NODE_ROOT=${VIGIL_NODE_ROOT:-/var/lib/vigil-node}
NODE_RUN=${VIGIL_NODE_RUN:-/run/vigil-node}
BIN=/usr/local/bin
CONTAINERD_SOCK=/run/containerd/containerd.sock
NRI_SOCK=/var/run/nri/nri.sock
CONFIG=$NODE_ROOT/containerd.toml
LOG=$NODE_ROOT/containerd.log
PIDFILE=$NODE_RUN/containerd.pid
AGENT_PIDFILE=$NODE_RUN/agent.pid
AGENT_LOG=$NODE_ROOT/agent.log
PAUSE_IMAGE=localhost/vigil/pause:1
BUSYBOX_IMAGE=localhost/vigil/busybox:1
PROBE_IMAGE=localhost/vigil/probe:1

say() { echo "node: $*"; }

need_root() {
	[ "$(id -u)" = 0 ] || { echo "node: must run as root" >&2; exit 1; }
}


# go_bin VERSION_DIR PKG@VERSION builds one Go command into the cache (once).
go_bin() {
	local dir=$CACHE/$1 pkg=$2 name
	name=$(basename "${pkg%@*}")
	if [ ! -x "$dir/$name" ]; then
		say "building $pkg (cached in $dir)"
		mkdir -p "$dir"
		GOBIN=$dir GOFLAGS=-buildvcs=false go install "$pkg"
	fi
	install -m 0755 "$dir/$name" "$BIN/$name.new" && mv -f "$BIN/$name.new" "$BIN/$name"
}

install_binaries() {
	# podman: test/e2e/podman_test.go runs the OCI hook under it.
	apt_need runc busybox-static gcc libc6-dev podman
	# One after another: parallel Go builds are slower on 2 cores.
	for c in containerd containerd-shim-runc-v2 ctr; do
		if ! cmp -s "$CACHE/containerd-$CONTAINERD_VERSION/$c" "$BIN/$c" 2>/dev/null; then
			go_bin "containerd-$CONTAINERD_VERSION" "github.com/containerd/containerd/v2/cmd/$c@$CONTAINERD_VERSION"
		fi
	done
	if ! cmp -s "$CACHE/crictl-$CRICTL_VERSION/crictl" "$BIN/crictl" 2>/dev/null; then
		go_bin "crictl-$CRICTL_VERSION" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
	fi
}

# validator_config: VIGIL_NRI_VALIDATOR=reject-seccomp turns on NRI's default
# validator refusing seccomp adjustments (to test that vigil reports it).
validator_config() {
	[ "${VIGIL_NRI_VALIDATOR:-}" = reject-seccomp ] || return 0
	cat <<EOF
[plugins."io.containerd.nri.v1.nri".default_validator]
  enable = true
  reject_runtime_default_seccomp_adjustment = true
  reject_unconfined_seccomp_adjustment = true
  reject_custom_seccomp_adjustment = true
EOF
}

write_config() {
	mkdir -p "$NODE_ROOT" "$NODE_RUN" /etc/nri/conf.d /opt/nri/plugins "$(dirname "$NRI_SOCK")"
	local tmp=$CONFIG.tmp
	cat >"$tmp" <<EOF
# vigil test node: containerd $CONTAINERD_VERSION with NRI (written by install/node.sh)
version = 3
root = "$NODE_ROOT/containerd"
state = "$NODE_RUN/containerd"

[grpc]
  address = "$CONTAINERD_SOCK"

[plugins."io.containerd.nri.v1.nri"]
  disable = false
  socket_path = "$NRI_SOCK"
  plugin_path = "/opt/nri/plugins"
  plugin_config_path = "/etc/nri/conf.d"
  plugin_registration_timeout = "5s"
  plugin_request_timeout = "2s"
  disable_connections = false

$(validator_config)

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "$PAUSE_IMAGE"

[plugins."io.containerd.cri.v1.runtime"]
  # This VM lacks CAP_SYS_RESOURCE: never lower a container's oom_score_adj below ours.
  restrict_oom_score_adj = true
  enable_selinux = false

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = "$(command -v runc)"
  SystemdCgroup = false
EOF
	mv -f "$tmp" "$CONFIG"
	cat >/etc/crictl.yaml <<EOF
runtime-endpoint: unix://$CONTAINERD_SOCK
image-endpoint: unix://$CONTAINERD_SOCK
timeout: 30
EOF
}

containerd_pid() {
	local pid
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = containerd ] && echo "$pid"
}

start_containerd() {
	if containerd_pid >/dev/null; then
		return
	fi
	mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	say "starting containerd (log $LOG)"
	setsid "$BIN/containerd" --config "$CONFIG" >>"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	for _ in $(seq 1 100); do
		if [ -S "$NRI_SOCK" ] && "$BIN/ctr" --address "$CONTAINERD_SOCK" version >/dev/null 2>&1 &&
			"$BIN/crictl" info >/dev/null 2>&1; then
			return
		fi
		kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { tail -20 "$LOG" >&2; echo "node: containerd exited" >&2; exit 1; }
		sleep 0.1
	done
	tail -20 "$LOG" >&2
	echo "node: containerd not ready after 10s" >&2
	exit 1
}

# oci_image NAME ROOTFS CMD_JSON OUT builds an OCI-layout tarball with one
# uncompressed layer, annotated with io.containerd.image.name.
oci_image() {
	local name=$1 rootfs=$2 cmd=$3 out=$4 d layer ldig lsize cfg cdig csize man mdig msize
	d=$(mktemp -d)
	mkdir -p "$d/blobs/sha256"
	tar -C "$rootfs" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$d/layer.tar" .
	ldig=$(sha256sum "$d/layer.tar" | cut -d' ' -f1)
	lsize=$(stat -c %s "$d/layer.tar")
	mv "$d/layer.tar" "$d/blobs/sha256/$ldig"
	cfg=$(printf '{"architecture":"amd64","os":"linux","config":{"Cmd":%s,"Env":["PATH=/bin:/usr/bin:/sbin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$cmd" "$ldig")
	cdig=$(printf %s "$cfg" | sha256sum | cut -d' ' -f1)
	csize=${#cfg}
	printf %s "$cfg" >"$d/blobs/sha256/$cdig"
	man=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' "$cdig" "$csize" "$ldig" "$lsize")
	mdig=$(printf %s "$man" | sha256sum | cut -d' ' -f1)
	msize=${#man}
	printf %s "$man" >"$d/blobs/sha256/$mdig"
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' "$mdig" "$msize" "$name" "${name##*:}" >"$d/index.json"
	printf '{"imageLayoutVersion":"1.0.0"}' >"$d/oci-layout"
	tar -C "$d" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$out.tmp" oci-layout index.json blobs
	mv -f "$out.tmp" "$out"
	rm -rf "$d"
}

build_images() {
	local src=$REPO/test/e2e/testdata dir=$CACHE/images r
	mkdir -p "$dir"
	r=$(mktemp -d)
	# pause: a static C program, the pod sandbox.
	mkdir -p "$r/pause"
	gcc -O2 -static -o "$r/pause/pause" "$src/pause.c"
	oci_image "$PAUSE_IMAGE" "$r/pause" '["/pause"]' "$dir/pause.tar"
	# busybox: Debian's busybox-static with its applets as symlinks.
	mkdir -p "$r/busybox/bin" "$r/busybox/tmp" "$r/busybox/etc" "$r/busybox/proc" "$r/busybox/sys" "$r/busybox/dev"
	cp /bin/busybox "$r/busybox/bin/busybox"
	for a in $(/bin/busybox --list); do
		[ "$a" = busybox ] || ln -sf /bin/busybox "$r/busybox/bin/$a"
	done
	chmod 1777 "$r/busybox/tmp"
	oci_image "$BUSYBOX_IMAGE" "$r/busybox" '["/bin/sh"]' "$dir/busybox.tar"
	# probe: the known-syscall workload (no libc), plus busybox for exec.
	mkdir -p "$r/probe"
	cp -a "$r/busybox/." "$r/probe/"
	gcc -O1 -static -nostdlib -fno-stack-protector -o "$r/probe/probe" "$src/probe.c"
	oci_image "$PROBE_IMAGE" "$r/probe" '["/probe"]' "$dir/probe.tar"
	rm -rf "$r"
}

# ensure_images builds the OCI tarballs of the local images (once).
ensure_images() {
	local dir=$CACHE/images stamp
	stamp=$(cat "$REPO/test/e2e/testdata/"*.c "$BASH_SOURCE" /bin/busybox | sha256sum | cut -c1-16)
	if [ "$(cat "$dir/stamp" 2>/dev/null)" != "$stamp" ] || [ ! -f "$dir/probe.tar" ]; then
		say "building local images"
		build_images
		echo "$stamp" >"$dir/stamp"
	fi
}

import_images() {
	local dir=$CACHE/images have
	ensure_images
	have=$("$BIN/ctr" --address "$CONTAINERD_SOCK" -n k8s.io images ls -q 2>/dev/null || true)
	for img in pause:"$PAUSE_IMAGE" busybox:"$BUSYBOX_IMAGE" probe:"$PROBE_IMAGE"; do
		local f=${img%%:*} name=${img#*:}
		if ! grep -qx "$name" <<<"$have" || [ "$dir/$f.tar" -nt "$NODE_ROOT/imported-$f" ]; then
			if ! out=$("$BIN/ctr" --address "$CONTAINERD_SOCK" -n k8s.io images import "$dir/$f.tar" 2>&1); then
				echo "$out" >&2
				exit 1
			fi
			touch "$NODE_ROOT/imported-$f"
		fi
	done
}

agent_pid() {
	local pid
	pid=$(cat "$AGENT_PIDFILE" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = vigil ] && echo "$pid"
}

cmd_up() {
	need_root
	if [ "$RUNTIME" = crio ]; then
		apt_need runc busybox-static gcc libc6-dev
		if ! cmp -s "$CACHE/crictl-$CRICTL_VERSION/crictl" "$BIN/crictl" 2>/dev/null; then
			go_bin "crictl-$CRICTL_VERSION" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
		fi
		ensure_images
		bash "$REPO/install/crio.sh" up
		return
	fi
	install_binaries
	write_config
	start_containerd
	import_images
	say "up: containerd $CONTAINERD_VERSION (pid $(containerd_pid)), NRI at $NRI_SOCK, images $PAUSE_IMAGE $BUSYBOX_IMAGE $PROBE_IMAGE"
}

cmd_agent_up() {
	need_root
	if agent_pid >/dev/null; then
		say "agent already running (pid $(agent_pid))"
		return
	fi
	[ -x "$REPO/bin/vigil" ] || { echo "node: $REPO/bin/vigil missing: run 'make build'" >&2; exit 1; }
	setsid "$REPO/bin/vigil" agent --nri-socket "$NRI_SOCK" --events "$NODE_ROOT/events.jsonl" \
		--decisions "$NODE_ROOT/seccomp.jsonl" --audit "$NODE_ROOT/audit" >>"$AGENT_LOG" 2>&1 </dev/null &
	echo $! >"$AGENT_PIDFILE"
	for _ in $(seq 1 50); do
		[ -S /run/vigil/vigil.sock ] && { say "agent up (pid $(agent_pid), log $AGENT_LOG)"; return; }
		kill -0 "$(cat "$AGENT_PIDFILE")" 2>/dev/null || break
		sleep 0.1
	done
	tail -20 "$AGENT_LOG" >&2
	echo "node: agent did not come up" >&2
	exit 1
}

stop_pid() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
}

cmd_down() {
	need_root
	local pid
	if pid=$(agent_pid); then stop_pid "$pid"; fi
	rm -f "$AGENT_PIDFILE"
	# The agent leaves its tracer pinned (attached to every syscall of the
	# host), its connect guard and its notify fd keeper by design, for the
	# next agent; down removes them all.
	if [ -x "$REPO/bin/vigil" ]; then
		"$REPO/bin/vigil" uninstall | sed 's/^/node: /' || say "vigil uninstall failed: the tracer may stay attached (see above)"
	else
		if pid=$(cat /run/vigil/notify-keeper.sock.pid 2>/dev/null) && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = vigil ]; then
			stop_pid "$pid"
		fi
		[ ! -d /sys/fs/bpf/vigil ] || say "$REPO/bin/vigil missing: the tracer pinned in /sys/fs/bpf/vigil stays attached ('make build', then 'bin/vigil uninstall')"
	fi
	bash "$REPO/install/crio.sh" down
	# A kubelet of install/kubelet.sh (the kubelet e2e test) runs on containerd.
	bash "$REPO/install/kubelet.sh" down
	if pid=$(containerd_pid); then
		"$BIN/crictl" rmp -fa >/dev/null 2>&1 || true
		stop_pid "$pid"
		say "containerd stopped"
	fi
	rm -f "$PIDFILE"
}

cmd_status() {
	if pid=$(containerd_pid); then say "containerd running (pid $pid)"; else say "containerd not running"; fi
	bash "$REPO/install/crio.sh" status
	if pid=$(agent_pid); then say "agent running (pid $pid)"; else say "agent not running (from this script)"; fi
}

cmd_env() {
	cat <<EOF
CONTAINERD_SOCK=$CONTAINERD_SOCK
NRI_SOCK=$NRI_SOCK
CONTAINERD_PIDFILE=$PIDFILE
CONTAINERD_CONFIG=$CONFIG
CONTAINERD_LOG=$LOG
PAUSE_IMAGE=$PAUSE_IMAGE
BUSYBOX_IMAGE=$BUSYBOX_IMAGE
PROBE_IMAGE=$PROBE_IMAGE
EOF
}

RUNTIME=containerd
if [ "${2:-}" = --runtime ]; then
	RUNTIME=${3:-}
	case "$RUNTIME" in
	containerd | crio) ;;
	*) echo "node: --runtime $RUNTIME: allowed values are containerd, crio" >&2; exit 2 ;;
	esac
	# agent-up --runtime crio: the agent connects to CRI-O's NRI socket.
	[ "$RUNTIME" = containerd ] || NRI_SOCK=/var/run/nri/crio-nri.sock
fi

case "${1:-up}" in
up) cmd_up ;;
restart-crio) bash "$REPO/install/crio.sh" restart ;;
down) cmd_down ;;
agent-up) cmd_agent_up ;;
status) cmd_status ;;
env) cmd_env ;;
restart-containerd)
	need_root
	write_config
	if pid=$(containerd_pid); then stop_pid "$pid"; fi
	start_containerd
	;;
*)
	echo "usage: install/node.sh up [--runtime containerd|crio]|down|agent-up|status|env|restart-containerd|restart-crio" >&2
	exit 2
	;;
esac
