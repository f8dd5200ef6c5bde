#!/usr/bin/env bash
# update.sh vendors the headers the BPF C needs: vmlinux.h dumped from this
# kernel's BTF (CO-RE relocates field offsets at load time, so one object
# runs on other BTF kernels too) and libbpf's helper headers from Debian's
# libbpf-dev. Run it through `make generate`.
set -euo pipefail
cd "$(dirname "$0")"
bpftool btf dump file /sys/kernel/btf/vmlinux format c >vmlinux.h.tmp
mv vmlinux.h.tmp vmlinux.h
for h in bpf_helpers.h bpf_helper_defs.h bpf_tracing.h bpf_core_read.h; do
	cp "/usr/include/bpf/$h" "$h"
done
