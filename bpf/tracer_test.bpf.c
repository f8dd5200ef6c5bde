//go:build ignore

// tracer_test.bpf.c: the tracer's record logic behind a program that
// BPF_PROG_TEST_RUN can drive with made-up input (raw_tp programs take their
// arguments from the test's context), for the Go test TestRecordLogic.
// ctx: [0] 1 to act as a tracked cgroup, [1] syscall nr, [2] return value,
// [3] arg0. The state comes from the test's own cgroup, which the test
// tracks.

#include "syscalls.bpf.c"

SEC("raw_tp")
int vigil_test_record(__u64 *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct cg_state *st = tracked(task);
	if (!st || !ctx[0])
		return 1;
	__u8 *buf = get_scratch();
	if (!buf)
		return 2;
	struct rec_hdr *r = begin(task, st, buf, bpf_ktime_get_ns(), ctx[1], ctx[2], 0);
	r->nargs = 1;
	__u64 *args = (void *)(buf + sizeof(*r));
	args[0] = ctx[3];
	__u32 off = sizeof(*r) + 8;
	struct comm_check cc;
	off = put_comm(task, buf, off, &r->flags, &cc);
	emit(task, st, r, off, 0, &cc);
	return 0;
}
