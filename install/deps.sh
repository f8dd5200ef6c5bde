#!/usr/bin/env bash
# deps.sh installs what vigil's build, tests and `make generate` need on a
# fresh Debian machine: clang/llvm and libbpf headers for the BPF C, bpftool
# for vmlinux.h, a mounted bpffs. Idempotent and quiet when all is there.
set -euo pipefail
need=()
# busybox-static and bash: the detection scenarios (test/scenarios) run in them.
for p in clang llvm libbpf-dev bpftool gcc libc6-dev make tar busybox-static bash; do
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
# The benign corpus (test/scenarios/benign/corpus): compilers, runtimes and
# tools, each package only when its command is missing (a JDK, Node.js or
# Go installed otherwise is kept). PostgreSQL is left to the user (its
# package starts a system cluster); make eval skips what is absent.
for c in g++:g++ java:default-jdk-headless javac:default-jdk-headless jar:default-jdk-headless node:nodejs npm:npm \
	sqlite3:sqlite3 git:git xz:xz-utils zstd:zstd bzip2:bzip2 openssl:openssl ssh-keygen:openssh-client perl:perl; do
	command -v "${c%%:*}" >/dev/null 2>&1 || [[ " ${need[*]} " == *" ${c#*:} "* ]] || need+=("${c#*:}")
done
/usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# --corpus (make eval): the full corpus's heavier tools too, which the
# workloads TestEval runs do not need (NumPy, ffmpeg, ImageMagick, LuaJIT,
# PHP, nginx, redis, Python's headers for a C extension).
if [ "${1:-}" = --corpus ]; then
	for c in luajit:luajit convert:imagemagick php:php-cli ffmpeg:ffmpeg nginx:nginx-light redis-server:redis-server \
		redis-benchmark:redis-tools python3-config:python3-dev; do
		command -v "${c%%:*}" >/dev/null 2>&1 || [[ " ${need[*]} " == *" ${c#*:} "* ]] || need+=("${c#*:}")
	done
	/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || need+=(python3-numpy)
elif [ $# -gt 0 ]; then
	echo "deps: unknown argument $1 (use --corpus, or nothing)" >&2
	exit 2
fi
if [ ${#need[@]} -gt 0 ]; then
	echo "deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "$(id -u)" = 0 ] && ! mountpoint -q /sys/fs/bpf; then
	mount -t bpf bpf /sys/fs/bpf
fi
