//go:build ignore

// floor.bpf.c: what the benchmarks measure vigil against. The same hook as
// the tracer doing nothing (the floor any tracer on it pays), the cgroup
// filter alone (what an untracked process pays), and an fexit trampoline on
// one syscall's entry point (the alternative hook, for comparison).

#include "headers/vmlinux.h"
#include "headers/bpf_helpers.h"
#include "headers/bpf_tracing.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} floor_cgroups SEC(".maps");

__u64 hits;

SEC("tp_btf/sys_exit")
int BPF_PROG(floor_empty)
{
	return 0;
}

// The tracer's filter (syscalls.bpf.c: tracked): a cgroup without BPF
// local storage stops at one load, others pay the helper.
SEC("tp_btf/sys_exit")
int BPF_PROG(floor_filter)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct cgroup *cgrp = task->cgroups->dfl_cgrp;
	if (!cgrp->bpf_cgrp_storage)
		return 0;
	if (bpf_cgrp_storage_get(&floor_cgroups, cgrp, 0, 0))
		__sync_fetch_and_add(&hits, 1);
	return 0;
}

// The filter as it was before the load that decides without the helper:
// the helper for every syscall.
SEC("tp_btf/sys_exit")
int BPF_PROG(floor_filter_helper)
{
	struct task_struct *task = bpf_get_current_task_btf();
	if (bpf_cgrp_storage_get(&floor_cgroups, task->cgroups->dfl_cgrp, 0, 0))
		__sync_fetch_and_add(&hits, 1);
	return 0;
}

__u64 clock_sum;

// The clocks a record could carry, one read per syscall: what a timestamp
// costs on this machine (a VM's clock source may be slow to read). The
// coarse clock is no option: the verifier refuses bpf_ktime_get_coarse_ns
// to tracing programs.
SEC("tp_btf/sys_exit")
int BPF_PROG(floor_ktime)
{
	clock_sum += bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(floor_ktime_boot)
{
	clock_sum += bpf_ktime_get_boot_ns();
	return 0;
}

#if defined(__TARGET_ARCH_x86)
SEC("fexit/__x64_sys_getppid")
#else
SEC("fexit/__arm64_sys_getppid")
#endif
int BPF_PROG(floor_fexit_getppid)
{
	return 0;
}
