//go:build ignore

// syscalls.bpf.c: one record per completed syscall of the tracked cgroups.
//
// Hooks (kernel/entry/common.c, include/trace/events/syscalls.h,
// include/trace/events/sched.h):
//   tp_btf/sys_exit            every syscall return: the record, arguments
//                              read from the saved user registers
//   tp_btf/sched_process_exec  a successful execve: the old image never sees
//                              its return, so the record comes from here
//   tp_btf/sched_process_exit  exit/exit_group never return either
//   tp_btf/cgroup_rmdir        keeps the final counters of a removed cgroup
//
// One program runs on the hot path (sys_exit). An untracked task pays a
// pointer walk to its cgroup, and stops there when the cgroup has no BPF
// local storage at all (the common case: no helper call). Records without
// strings are built on the stack; records with paths, argv or addresses in
// a per-CPU scratch buffer.
//
// Counting: each tracked cgroup has a struct cg_state. Every syscall takes a
// sequence number (seen == seq), then is either written to the ring buffer
// (emitted) or counted as dropped when the ring is full or the cgroup is over
// its budget (then also counted as throttled). So at any quiet moment
// seen == emitted + dropped, and the sequence gaps in the stream are exactly
// the drops.
//
// Classes (cg_state.flags, set by user space when tracking begins):
// CG_REALTIME records wake the reader at once (BPF_RB_FORCE_WAKEUP), other
// cgroups keep the adaptive wakeup (wake_flag). A CG_BLOCK cgroup is slowed
// instead of losing records: a record over its budget is written all the
// same, and the process that made the syscall is stopped (SIGSTOP, noted in
// vigil_paused) before it returns to user space when its budget is spent,
// when the ring is half full and the cgroup has spent more than half its
// burst, or when the ring is three quarters full; user space (the pacer)
// continues it (SIGCONT) once the ring has drained and the budget has
// recovered. Its threads still in a syscall on other CPUs finish that one
// syscall, so the ring keeps a quarter of its size as headroom for them. A
// record the full ring refuses is still counted as dropped. The class holds
// only while a pacer runs (vigil_pacer, a heartbeat): without one, nothing
// is stopped and the cgroup is budgeted as any other. Its debt is bounded:
// past twice its burst (processes that keep running although stopped:
// continued by the container itself, or not stoppable), its records are
// dropped as throttled, and the process is stopped again.
//
// Budget: each cgroup may write budget_burst records at once and one more
// every budget_ns (a token bucket kept as a theoretical arrival time, GCRA),
// so that one flooding container cannot fill the one ring that every
// container shares: its excess is its own loss, counted as throttled.
//
// Strings the kernel used: user memory read at syscall exit may have been
// rewritten by another thread since the kernel read it. So a successful
// open's path is the path of the file the kernel opened (the new fd's
// struct file, its dentries walked up to the task's root), and a successful
// connect's or bind's address is the socket's own (struct sock). The user's
// string follows as a *_USER item only when it differs.

#include "headers/vmlinux.h"
#include "headers/bpf_helpers.h"
#include "headers/bpf_tracing.h"
#include "headers/bpf_core_read.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_NR 1024       // syscall numbers are below this on every ABI
#define PATH_BYTES 256    // bound of one decoded path
#define ARGV_BYTES 512    // bound of the decoded execve argv (NUL-separated)
#define ARGV_MAX 16       // bound of argv entries read on a failed execve
#define ARG_BYTES 128     // bound of one argv entry on a failed execve
#define ENV_MAX 512       // bound of the environment entries scanned at exec
#define ENV_BYTES 512     // bound of the loader's variables delivered (NUL-separated)
#define ENV_ENTRY 256     // bound of one of them
#define ENV_CHUNK 16      // envp pointers read at once
#define SOCK_BYTES 112    // >= sizeof(struct sockaddr_un) (110)
#define SCRATCH 4096      // per-CPU record buffer; a power of two
#define TASK_COMM 16
#define PATH_DEPTH 64     // bound of the dentries walked for a file's path
#define NAME_MAX 255      // include/uapi/linux/limits.h
#define TMP_OFF 3072      // a file's path is built backwards here, above any record
#define PATH_PREFIX 16    // room left for "(unreachable)" or "..."
#define EINPROGRESS 115
#define AF_UNIX 1         // include/linux/socket.h
#define AF_INET 2
#define AF_INET6 10

// Record flags (mirrored in record.go).
#define F_COMM 1          // a comm[16] follows the arguments
#define F_NORET 2         // the syscall never returned (exit, exec's old image)
#define F_TRUNC 4         // a string hit its bound

// String item kinds (record.go reads them through bpf2go -type item_kind).
enum item_kind {
	S_PATH = 1,
	S_PATH2 = 2,
	S_ARGV = 3,
	S_SOCK = 4,
	S_PATH_USER = 5,  // the user's path of an open when it differs from S_PATH
	S_SOCK_USER = 6,  // the user's sockaddr when it differs from S_SOCK
	S_CLONE = 7,      // clone3: struct clone_item, read from its struct clone_args
	S_ENV = 8,        // a successful execve: the dynamic loader's variables of the new environment
};

// S_CLONE's bytes (include/uapi/linux/sched.h: struct clone_args).
struct clone_item {
	__u64 flags;
};

// Classes of a tracked cgroup (cg_state.flags, mirrored in class.go).
#define CG_REALTIME 1     // wake the reader for each record
#define CG_BLOCK 2        // stop the process rather than drop its records
#define SIGSTOP 19        // include/uapi/asm-generic/signal.h (x86 and arm64)
#define JOBCTL_STOP_PENDING (1UL << 17) // include/linux/sched/jobctl.h
#define SIGNAL_STOP_STOPPED 1           // include/linux/sched/signal.h
#define PF_EXITING 0x4                  // include/linux/sched.h
#define PACER_STALE 5000000000ULL       // ns: a pacer silent this long is gone

// Decoders, chosen per syscall number by user space (sysmeta map).
enum dec {
	D_NONE = 0,
	D_PATH0,    // path at arg0
	D_PATH1,    // path at arg1 (the *at family)
	D_PATH01,   // paths at arg0 and arg1 (rename, link, symlink, mount, pivot_root)
	D_PATH13,   // paths at arg1 and arg3 (renameat, renameat2, linkat)
	D_PATH02,   // paths at arg0 and arg2 (symlinkat)
	D_EXEC,     // failed execve: filename arg0, argv arg1
	D_EXECAT,   // failed execveat: filename arg1, argv arg2
	D_SOCK1,    // sockaddr at arg1, length arg2 (connect, bind)
	D_SOCK4,    // sockaddr at arg4, length arg5 (sendto)
	D_ACCEPT,   // peer sockaddr at arg1, *length at arg2 (accept, accept4)
	D_MSG,      // msghdr at arg1: msg_name/msg_namelen (sendmsg; sendmmsg, whose
	            // first struct mmsghdr starts with one: include/linux/socket.h)
	D_OPEN0,    // open, creat: the opened file's path; the user's path at arg0
	D_OPEN1,    // openat, openat2: likewise, the user's path at arg1
	D_CONNECT,  // the socket's peer address; the user's sockaddr at arg1
	D_BIND,     // the socket's own address; the user's sockaddr at arg1
	D_CLONE3,   // struct clone_args at arg0, its size at arg1 (clone3)
};

// bpf2go -type finds a type only in the object's BTF: this unused pointer
// puts these there, so that Go reads their values and layout, not copies.
struct record_types {
	enum dec dec;
	enum item_kind kind;
	struct clone_item clone;
};
const struct record_types *unused_record_types __attribute__((unused));

struct rec_hdr {
	__u64 ktime;
	__u64 cgid;
	__u64 seq;
	__s64 ret;
	__u32 pid;
	__u32 tid;
	__s32 nr;     // syscall number as the task made it (any value, even invalid)
	__u8 nargs;
	__u8 flags;   // low nibble: F_*; high nibble: string items after args (and comm)
	__u16 cpu;    // the CPU that wrote it: the reader mirrors each CPU's comm cache
	// __u64 args[nargs]; [char comm[16]]; items: {u8 kind, u8 pad, u16 len, bytes[len], pad to 8}
};

struct str_hdr {
	__u8 kind;
	__u8 pad;
	__u16 len;
	__u32 pad2;
};

struct cg_state {
	__u64 seq;       // seen: sequence numbers handed out
	__u64 emitted;   // records written
	__u64 dropped;   // records lost to a full ring or to the budget
	__u64 tracked_ns;
	__u64 throttled; // of dropped, those over the cgroup's budget
	__u64 tat;       // budget: when the records granted so far are paid for
	__u64 cgid;      // the cgroup's id: from its first record on, or set by user space
	__u64 flags;     // CG_*, set by user space
	__u64 paused;    // CG_BLOCK: stop signals sent to wait for the reader
};

// The final counters of tracked cgroups that were removed (their storage
// goes with them), so the runtime can read exact totals after the fact.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct cg_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vigil_final SEC(".maps");

// The list of tracked cgroup ids, kept by user space only (cgroup storage
// cannot be iterated): what `vigil status` and a restarted agent read.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vigil_tracked SEC(".maps");

struct sysmeta {
	__u8 nargs;
	__u8 dec;
};

struct last_comm {
	__u64 comm[2];  // the comm last sent from this CPU
	__u64 gen;      // vigil_gen when it was sent
	__u64 tid;      // for this thread
};

// The tracked cgroups: cgroup local storage, so the filter is a pointer
// walk from the task to its cgroup's storage (NULL for an untracked cgroup)
// rather than a hash lookup, and the state goes away with the cgroup.
struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct cg_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vigil_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20); // user space sets the size at load
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vigil_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_NR);
	__type(key, __u32);
	__type(value, struct sysmeta);
} vigil_sysmeta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[SCRATCH]);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct last_comm);
} last_comm SEC(".maps");

// Wakeup policy, set at load: wake the reader when wake_ns passed since the
// last wakeup, or when the backlog crossed wake_bytes (then at most once per
// wake_min_ns). Never per record under load: a busy reader polls on its own
// (each wakeup costs the traced task an irq_work and an IPI, 10-20 us on a
// VM), and a sleeping one is woken by the first record after a pause.
volatile const __u64 wake_ns = 2000000;
volatile const __u64 wake_bytes = 1 << 20;
volatile const __u64 wake_min_ns = 100000;
__u64 last_wake;

// The budget of each tracked cgroup, set at load: one record every budget_ns
// on average, budget_tau (burst * budget_ns) ahead at most. 0: no budget.
volatile const __u64 budget_ns = 5000;
volatile const __u64 budget_tau = 250000000;

// The processes (tgid) the block class stopped, with their cgroup id:
// user space continues each and removes it.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vigil_paused SEC(".maps");

// The pacer's heartbeat: CLOCK_MONOTONIC ns of its last pass, written by
// user space (0: no pacer, as a closing Monitor or an uninstall leaves it).
// A CG_BLOCK process is stopped only while a pacer lives to continue it.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vigil_pacer SEC(".maps");

// pacer_alive says whether a pacer's heartbeat is recent.
static __always_inline int pacer_alive(__u64 now)
{
	__u32 zero = 0;
	__u64 *hb = bpf_map_lookup_elem(&vigil_pacer, &zero);
	return hb && *hb && (__s64)(now - *hb) < (__s64)PACER_STALE;
}

// Bumped by a (re)starting reader so that every thread resends its comm.
// Pinned: a new reader must reach programs that an old agent attached.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vigil_gen SEC(".maps");

static __always_inline __u64 wake_flag(__u64 now, __u64 cgflags)
{
	if (cgflags & CG_REALTIME)
		return BPF_RB_FORCE_WAKEUP;
	__u64 since = now - last_wake;
	if (since >= wake_ns ||
	    (since >= wake_min_ns && bpf_ringbuf_query(&vigil_events, BPF_RB_AVAIL_DATA) >= wake_bytes)) {
		last_wake = now;
		return BPF_RB_FORCE_WAKEUP;
	}
	return BPF_RB_NO_WAKEUP;
}

// The syscall number and arguments as the task entered the syscall
// (arch/x86/include/asm/syscall.h). regs is a BTF pointer in these programs,
// so these are direct, CO-RE relocated loads, not helper calls.
#if defined(__TARGET_ARCH_x86)
#define SYSCALL_NR(regs) ((long)(regs)->orig_ax)
#define ARG0(regs) ((regs)->di)
#define ARG1(regs) ((regs)->si)
#define ARG2(regs) ((regs)->dx)
#define ARG3(regs) ((regs)->r10)
#define ARG4(regs) ((regs)->r8)
#define ARG5(regs) ((regs)->r9)
#elif defined(__TARGET_ARCH_arm64)
// arch/arm64/include/asm/ptrace.h; vmlinux.h is dumped on x86, so the arm64
// layout is declared here and CO-RE matches it by name on an arm64 kernel.
// x0 holds the return value at exit: the first argument is orig_x0.
struct pt_regs___vigil_arm64 {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
	__u64 orig_x0;
	__s32 syscallno;
} __attribute__((preserve_access_index));
#define A64(regs) ((struct pt_regs___vigil_arm64 *)(regs))
#define SYSCALL_NR(regs) ((long)BPF_CORE_READ(A64(regs), syscallno))
#define ARG0(regs) BPF_CORE_READ(A64(regs), orig_x0)
#define ARG1(regs) BPF_CORE_READ(A64(regs), regs[1])
#define ARG2(regs) BPF_CORE_READ(A64(regs), regs[2])
#define ARG3(regs) BPF_CORE_READ(A64(regs), regs[3])
#define ARG4(regs) BPF_CORE_READ(A64(regs), regs[4])
#define ARG5(regs) BPF_CORE_READ(A64(regs), regs[5])
#else
#error "vigil's BPF supports x86_64 and arm64"
#endif

// put_str appends one string item read from user (or kernel) memory at off;
// it returns the new offset. The masks keep every access provably inside
// the scratch buffer for the verifier.
static __always_inline __u32 put_str(__u8 *buf, __u32 off, __u8 kind, const void *src, int user, __u16 *nstr, __u8 *flags)
{
	if (!src)
		return off;
	off &= (SCRATCH / 2 - 1);
	struct str_hdr *h = (void *)(buf + off);
	long n = user ? bpf_probe_read_user_str(buf + off + sizeof(*h), PATH_BYTES, src)
		      : bpf_probe_read_kernel_str(buf + off + sizeof(*h), PATH_BYTES, src);
	if (n <= 0)
		return off;
	if (n == PATH_BYTES)
		*flags |= F_TRUNC;
	n -= 1; // without the NUL
	h->kind = kind;
	h->pad = 0;
	h->len = n;
	h->pad2 = 0;
	(*nstr)++;
	return off + sizeof(*h) + ((n + 7) & ~7);
}

// put_raw appends len bytes of user memory as one item (socket addresses).
static __always_inline __u32 put_raw(__u8 *buf, __u32 off, __u8 kind, const void *src, __u64 len, __u16 *nstr)
{
	if (!src || len == 0)
		return off;
	if (len > SOCK_BYTES)
		len = SOCK_BYTES;
	off &= (SCRATCH / 2 - 1);
	struct str_hdr *h = (void *)(buf + off);
	if (bpf_probe_read_user(buf + off + sizeof(*h), len & 127, src)) // 127 >= SOCK_BYTES
		return off;
	h->kind = kind;
	h->pad = 0;
	h->len = len;
	h->pad2 = 0;
	(*nstr)++;
	return off + sizeof(*h) + ((len + 7) & ~7);
}

// put_argv_user appends a failed execve's argv, read pointer by pointer.
static __always_inline __u32 put_argv_user(__u8 *buf, __u32 off, const char *const *argv, __u16 *nstr, __u8 *flags)
{
	if (!argv)
		return off;
	off &= (SCRATCH / 2 - 1);
	struct str_hdr *h = (void *)(buf + off);
	__u32 used = 0;
	for (int i = 0; i < ARGV_MAX; i++) {
		const char *p = 0;
		if (bpf_probe_read_user(&p, sizeof(p), &argv[i]) || !p)
			break;
		if (used > ARGV_BYTES - ARG_BYTES) {
			*flags |= F_TRUNC;
			break;
		}
		long n = bpf_probe_read_user_str(buf + off + sizeof(*h) + (used & (ARGV_BYTES - 1)), ARG_BYTES, p);
		if (n <= 0)
			break;
		if (n == ARG_BYTES)
			*flags |= F_TRUNC;
		used += n;
		if (i == ARGV_MAX - 1)
			*flags |= F_TRUNC;
	}
	h->kind = S_ARGV;
	h->pad = 0;
	h->len = used;
	h->pad2 = 0;
	(*nstr)++;
	return off + sizeof(*h) + ((used + 7) & ~7);
}

static __always_inline void *get_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch, &zero);
}

// put_clone_args appends clone3's flags, read from its
// struct clone_args (kernel/fork.c: copy_clone_args_from_user; a size
// below CLONE_ARGS_SIZE_VER0, 64, is refused there and here). Only at the
// parent's return (or a failure): the child returns with the same pointer,
// but into memory the parent may have reused by then (a thread shares it),
// so what it points at is not the call's.
static __always_inline __u32 put_clone_args(__u8 *buf, __u32 off, const void *uargs, __u64 size, __u16 *nstr)
{
	__u64 flags;
	if (!uargs || size < 64 || bpf_probe_read_user(&flags, sizeof(flags), uargs)) // flags is the first field
		return off;
	off &= (SCRATCH / 2 - 1);
	struct str_hdr *h = (void *)(buf + off);
	struct clone_item *c = (void *)(buf + off + sizeof(*h));
	c->flags = flags;
	h->kind = S_CLONE;
	h->pad = 0;
	h->len = sizeof(*c);
	h->pad2 = 0;
	(*nstr)++;
	return off + sizeof(*h) + sizeof(*c);
}

// env_scan is the state of put_loader_env's loop over a new image's envp.
struct env_scan {
	__u64 envp;            // user address of envp[0]
	__u32 width;           // of a pointer: 8, or 4 in a compat (32-bit) image
	__u32 envc;            // entries to scan
	__u32 at;              // where the item's bytes start in the scratch buffer
	__u32 used;            // bytes written there
	__u8 flags;            // F_TRUNC when a bound was hit
	__u64 ptrs[ENV_CHUNK]; // a chunk of envp
};

// loader_var says whether an environment entry (its first bytes, NUL
// padded) sets a variable of the dynamic loader that changes what code it
// loads (glibc elf/rtld.c: process_envvars; musl ldso/dynlink.c).
static __always_inline int loader_var(const char *e)
{
	if (e[0] != 'L' || e[1] != 'D' || e[2] != '_')
		return 0;
	const char *r = e + 3;
	if (r[0] == 'P' && r[1] == 'R' && r[2] == 'E' && r[3] == 'L' && r[4] == 'O' && r[5] == 'A' && r[6] == 'D' && r[7] == '=')
		return 1;
	if (r[0] == 'A' && r[1] == 'U' && r[2] == 'D' && r[3] == 'I' && r[4] == 'T' && r[5] == '=')
		return 1;
	return r[0] == 'L' && r[1] == 'I' && r[2] == 'B' && r[3] == 'R' && r[4] == 'A' && r[5] == 'R' && r[6] == 'Y' &&
	       r[7] == '_' && r[8] == 'P' && r[9] == 'A' && r[10] == 'T' && r[11] == 'H' && r[12] == '=';
}

// env_entry is one step of the loop: it reads envp[i] (a chunk of
// pointers at a time) and the entry's first bytes, and copies the entry
// into the item when it sets a loader variable. 1 ends the loop.
static long env_entry(__u32 i, void *ctx)
{
	struct env_scan *s = ctx;
	if (i >= s->envc)
		return 1;
	__u32 k = i % ENV_CHUNK;
	__u32 size = s->width == 8 ? sizeof(s->ptrs) : sizeof(s->ptrs) / 2;
	if (k == 0 && bpf_probe_read_user(s->ptrs, size, (void *)(s->envp + (__u64)i * s->width)))
		return 1;
	__u64 p = s->width == 8 ? s->ptrs[k] : ((__u32 *)s->ptrs)[k];
	char head[24] = {};
	if (!p || bpf_probe_read_user_str(head, 17, (void *)p) < 4 || !loader_var(head))
		return 0;
	if (s->used > ENV_BYTES - ENV_ENTRY) {
		s->flags |= F_TRUNC;
		return 1;
	}
	__u8 *buf = get_scratch();
	if (!buf)
		return 1;
	long n = bpf_probe_read_user_str(buf + (s->at & (SCRATCH / 2 - 1)) + (s->used & (ENV_BYTES - 1)), ENV_ENTRY, (void *)p);
	if (n <= 0)
		return 0;
	if (n == ENV_ENTRY)
		s->flags |= F_TRUNC;
	s->used += n;
	return 0;
}

// put_loader_env appends the entries of a new image's environment that set
// LD_PRELOAD, LD_AUDIT or LD_LIBRARY_PATH (NUL-separated, each bounded), so
// that a library injected through the environment rather than the command
// line is seen. The new image's envp is on its stack above argc and argv
// (fs/binfmt_elf.c: create_elf_tables leaves bprm->p at argc), and nothing
// ran in the new image yet to change it. A 32-bit image's pointers are 4
// bytes: told by argc's slot (a 64-bit read of it holds argv[0] too). At
// most ENV_MAX entries are scanned (bpf_loop: one verification of the step,
// whatever the bound); past it the record is marked truncated.
static __always_inline __u32 put_loader_env(__u8 *buf, __u32 off, struct linux_binprm *bprm, __u16 *nstr, __u8 *flags)
{
	__u64 sp = BPF_CORE_READ(bprm, p);
	__u32 argc = BPF_CORE_READ(bprm, argc);
	__u32 envc = BPF_CORE_READ(bprm, envc);
	__u64 slot = 0;
	if (!envc || bpf_probe_read_user(&slot, sizeof(slot), (void *)sp))
		return off;
	struct env_scan s = {};
	if (slot == argc)
		s.width = 8;
	else if ((__u32)slot == argc)
		s.width = 4;
	else
		return off;
	s.envp = sp + (__u64)s.width * (argc + 2);
	s.envc = envc;
	if (envc > ENV_MAX) {
		s.envc = ENV_MAX;
		*flags |= F_TRUNC;
	}
	off &= (SCRATCH / 2 - 1);
	s.at = off + sizeof(struct str_hdr);
	bpf_loop(ENV_MAX, env_entry, &s, 0);
	*flags |= s.flags;
	if (!s.used)
		return off;
	struct str_hdr *h = (void *)(buf + off);
	h->kind = S_ENV;
	h->pad = 0;
	h->len = s.used;
	h->pad2 = 0;
	(*nstr)++;
	return off + sizeof(*h) + ((s.used + 7) & ~7);
}

// count_lost counts a syscall that got no record for want of a buffer (it
// cannot happen: the scratch map is a per-CPU array of one entry).
static __always_inline int count_lost(struct cg_state *st)
{
	__sync_fetch_and_add(&st->seq, 1);
	__sync_fetch_and_add(&st->dropped, 1);
	return 0;
}

// pause_proc stops the current process of a CG_BLOCK cgroup before it returns
// to user space (kernel/trace/bpf_trace.c: bpf_send_signal, a group-wide
// stop) and notes it in vigil_paused, which the pacer empties as it
// continues them. A process noted already is stopped again: it runs because
// something other than the pacer continued it (the pacer removes the note
// before its SIGCONT), so a container that continues its own stopped
// processes cannot take them out of pacing. A process whose stop is under
// way (its group stop in progress or done: kernel/signal.c) is not
// signalled twice; while the group's SIGSTOP is still pending, each thread
// that gets here stops the group itself (a thread's own SIGSTOP, which the
// group's SIGCONT flushes like the group's). With the map full nothing is
// stopped, since nobody would continue it: the debt bound then drops the
// cgroup's excess.
static __always_inline void pause_proc(struct task_struct *task, struct cg_state *st)
{
	__u32 tgid = task->tgid;
	__u64 cgid = st->cgid;
	if (task->flags & PF_EXITING) // bpf_send_signal refuses it: nothing to continue
		return;
	if (bpf_map_update_elem(&vigil_paused, &tgid, &cgid, BPF_ANY))
		return;
	struct signal_struct *sig = task->signal;
	if ((sig->flags & SIGNAL_STOP_STOPPED) || (task->jobctl & JOBCTL_STOP_PENDING))
		return;
	if (sig->shared_pending.signal.sig[0] & (1UL << (SIGSTOP - 1))) {
		// The group's SIGSTOP waits for the one thread the kernel woke
		// for it (complete_signal), which may not run for a while on a
		// busy CPU; the others would go on writing records meanwhile.
		// This thread takes the stop on its own way out instead.
		if (!(task->pending.signal.sig[0] & (1UL << (SIGSTOP - 1))) &&
		    bpf_send_signal_thread(SIGSTOP) == 0)
			__sync_fetch_and_add(&st->paused, 1);
		return;
	}
	if (bpf_send_signal(SIGSTOP) == 0)
		__sync_fetch_and_add(&st->paused, 1);
}

// over_budget charges one record to the cgroup's budget (GCRA: tat is the
// time by which the records granted so far are paid for, one per budget_ns;
// a record is granted while tat stays within budget_tau of now). A record
// over budget is counted as dropped and throttled, and takes its sequence
// number, exactly like a record the full ring refused. The charge is one
// atomic add on the line that seq's atomic has just brought to this CPU;
// the reset after an idle spell is a plain store (a race there forgives at
// most a record per CPU). A CG_BLOCK cgroup's record over budget keeps its
// charge and is written while a pacer runs and the debt (tat - now) is
// under twice the burst: *pace tells the caller to stop the process. Past
// that bound the record is dropped like any other over budget (so tat stays
// within 2 * budget_tau of now), and the process is stopped again.
static __always_inline int over_budget(struct task_struct *task, struct cg_state *st, __u64 now, int *pace)
{
	if (!budget_ns)
		return 0;
	if ((__s64)(st->tat - now) < 0)
		st->tat = now;
	__u64 prev = __sync_fetch_and_add(&st->tat, budget_ns);
	__s64 debt = prev - now;
	if (debt <= (__s64)(budget_tau - budget_ns))
		return 0;
	if ((st->flags & CG_BLOCK) && pacer_alive(now)) {
		if (debt <= (__s64)(2 * budget_tau - budget_ns)) {
			*pace = 1;
			return 0;
		}
		pause_proc(task, st);
	}
	__sync_fetch_and_add(&st->tat, -budget_ns);
	__sync_fetch_and_add(&st->seq, 1);
	__sync_fetch_and_add(&st->dropped, 1);
	__sync_fetch_and_add(&st->throttled, 1);
	return 1;
}

// The thread's comm goes into a record when this CPU's last record was of
// another thread, or of this thread under another comm, or from before a
// reader (re)started. The comm is read straight from the task (no helper
// call, no per-task storage). The cache is updated only once the record is
// in the ring, and each record names its CPU, so the reader keeps an exact
// mirror of every CPU's cache: one CPU's records reach the ring in order.
struct comm_check {
	struct last_comm *lc; // this CPU's cache
	__u64 comm[2];
	__u64 gen;
	__u64 tid;
	int send;
};

static __always_inline void check_comm(struct task_struct *task, struct comm_check *cc)
{
	__u32 zero = 0;
	__u64 *gen = bpf_map_lookup_elem(&vigil_gen, &zero);
	cc->lc = bpf_map_lookup_elem(&last_comm, &zero);
	cc->send = 0;
	if (!gen || !cc->lc)
		return;
	cc->comm[0] = *(__u64 *)&task->comm[0];
	cc->comm[1] = *(__u64 *)&task->comm[8];
	cc->gen = *gen;
	cc->tid = task->pid;
	struct last_comm *lc = cc->lc;
	cc->send = !(lc->tid == cc->tid && lc->gen == cc->gen && lc->comm[0] == cc->comm[0] && lc->comm[1] == cc->comm[1]);
}

// comm_sent updates the cache once a record carrying the comm is in the ring.
static __always_inline void comm_sent(struct comm_check *cc)
{
	if (!cc->send)
		return;
	cc->lc->comm[0] = cc->comm[0];
	cc->lc->comm[1] = cc->comm[1];
	cc->lc->gen = cc->gen;
	cc->lc->tid = cc->tid;
}

// put_comm appends the comm to a scratch record at off when it must be sent.
static __always_inline __u32 put_comm(struct task_struct *task, __u8 *buf, __u32 off, __u8 *flags, struct comm_check *cc)
{
	check_comm(task, cc);
	if (!cc->send)
		return off;
	off &= (SCRATCH / 2 - 1);
	__builtin_memcpy(buf + off, cc->comm, TASK_COMM);
	*flags |= F_COMM;
	return off + TASK_COMM;
}

// ring_full_for says whether the ring is too full for a CG_BLOCK cgroup to
// go on: half full when it has spent more than half its burst (the debt at
// which the pacer continues it), three quarters full for any. So a cgroup
// within its budget is not stopped for a ring the others fill until the
// ring would otherwise drop its records.
static __always_inline int ring_full_for(struct cg_state *st, __u64 now)
{
	__u64 size = bpf_ringbuf_query(&vigil_events, BPF_RB_RING_SIZE);
	__u64 avail = bpf_ringbuf_query(&vigil_events, BPF_RB_AVAIL_DATA);
	if (avail < size / 2)
		return 0;
	if (avail >= size / 2 + size / 4)
		return 1;
	return budget_ns && (__s64)(st->tat - now) > (__s64)(budget_tau / 2);
}

// sent counts a record as emitted or dropped and notes the comm the reader
// now knows. A CG_BLOCK cgroup's process is stopped when its budget is
// spent (pace) or the ring is too full for it (ring_full_for), while a pacer
// runs, so that its next records wait instead of being dropped.
static __always_inline void sent(struct task_struct *task, struct cg_state *st, __u64 now, long err, int pace, struct comm_check *cc)
{
	if (err) {
		__sync_fetch_and_add(&st->dropped, 1);
	} else {
		__sync_fetch_and_add(&st->emitted, 1);
		comm_sent(cc);
	}
	if ((st->flags & CG_BLOCK) && (pace || (ring_full_for(st, now) && pacer_alive(now))))
		pause_proc(task, st);
}

// emit finishes a record in buf (header filled, size bytes long) and
// writes it, counting it as emitted or dropped.
static __always_inline void emit(struct task_struct *task, struct cg_state *st, struct rec_hdr *r, __u32 size, int pace, struct comm_check *cc)
{
	size &= (SCRATCH - 1);
	if (size < sizeof(*r))
		return;
	long err = bpf_ringbuf_output(&vigil_events, r, size, wake_flag(r->ktime, st->flags));
	sent(task, st, r->ktime, err, pace, cc);
}

// tracked returns the state of the current task's cgroup v2 if it is
// tracked (include/linux/cgroup-defs.h: css_set.dfl_cgrp). A cgroup that
// holds no BPF local storage of any map is not tracked: one load decides,
// before the helper (kernel/bpf/bpf_cgrp_storage.c) and its per-CPU lock.
// The state keeps the cgroup's id, read from its kernfs node once.
static __always_inline struct cg_state *tracked(struct task_struct *task)
{
	struct cgroup *cgrp = task->cgroups->dfl_cgrp;
	if (!cgrp->bpf_cgrp_storage)
		return 0;
	struct cg_state *st = bpf_cgrp_storage_get(&vigil_cgroups, cgrp, 0, 0);
	if (st && !st->cgid)
		st->cgid = cgrp->kn->id;
	return st;
}

// begin fills a record's header; now is its timestamp, taken before the
// budget check. The ids are the task's own fields, not a helper call.
static __always_inline struct rec_hdr *begin(struct task_struct *task, struct cg_state *st, __u8 *buf, __u64 now, long nr, long ret, __u8 flags)
{
	struct rec_hdr *r = (void *)buf;
	r->ktime = now;
	r->cgid = st->cgid;
	r->seq = __sync_fetch_and_add(&st->seq, 1) + 1;
	r->ret = ret;
	r->pid = task->tgid;
	r->tid = task->pid;
	r->nr = nr;
	r->nargs = 6;
	r->flags = flags;
	r->cpu = bpf_get_smp_processor_id();
	return r;
}

// fast_record writes a record without strings (most syscalls): built on
// the stack and copied into the ring at its own size (a getppid record is
// 48 bytes, one with six arguments 96), no per-CPU scratch lookup. The bytes
// written to the ring are what the workload pays for: every record line is
// a store to memory the reader reads on another CPU.
#define FAST_SIZE (sizeof(struct rec_hdr) + 6 * 8 + TASK_COMM)

static __always_inline int fast_record(struct task_struct *task, struct cg_state *st, __u64 now, struct pt_regs *regs, long nr, long ret, __u8 nargs, int pace)
{
	__u64 buf[FAST_SIZE / 8];
	struct rec_hdr *r = begin(task, st, (void *)buf, now, nr, ret, 0);
	r->nargs = nargs;
	__u64 *args = &buf[sizeof(*r) / 8];
	args[0] = ARG0(regs);
	args[1] = ARG1(regs);
	args[2] = ARG2(regs);
	args[3] = ARG3(regs);
	args[4] = ARG4(regs);
	args[5] = ARG5(regs);
	__u32 size = sizeof(*r) + nargs * 8;
	struct comm_check cc;
	check_comm(task, &cc);
	if (cc.send) {
		args[nargs] = cc.comm[0];
		args[nargs + 1] = cc.comm[1];
		r->flags = F_COMM;
		size += TASK_COMM;
	}
	if (size > FAST_SIZE)
		size = FAST_SIZE;
	long err = bpf_ringbuf_output(&vigil_events, buf, size, wake_flag(now, st->flags));
	sent(task, st, now, err, pace, &cc);
	return 0;
}

// The objects behind an fd are read through read-only casts (kernel/bpf/
// helpers.c: bpf_rdonly_cast): plain loads the verifier guards like probe
// reads, without a helper call each.
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
#define CAST(type, p) ((struct type *)bpf_rdonly_cast((void *)(p), bpf_core_type_id_kernel(struct type)))

// fd_file is the struct file of the current task's fd, or NULL
// (include/linux/fdtable.h: files->fdt->fd[fd]).
static __always_inline struct file *fd_file(long fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	struct file *f = 0;
	if (fd < 0 || fd >= fdt->max_fds)
		return 0;
	bpf_probe_read_kernel(&f, sizeof(f), &fdt->fd[fd]);
	if (!f)
		return 0;
	return CAST(file, f);
}

// same_bytes compares n (at most 256) bytes of two items in buf, 8 at a time.
static __always_inline int same_bytes(__u8 *buf, __u32 a, __u32 b, __u32 n)
{
	for (int i = 0; i < PATH_BYTES / 8; i++) {
		__u32 at = i * 8;
		if (at >= n)
			break;
		__u64 x = *(__u64 *)(buf + ((a + at) & (SCRATCH - 1) & ~7));
		__u64 y = *(__u64 *)(buf + ((b + at) & (SCRATCH - 1) & ~7));
		if (n - at < 8) {
			__u64 mask = (1ULL << ((n - at) * 8)) - 1;
			x &= mask;
			y &= mask;
		}
		if (x != y)
			return 0;
	}
	return 1;
}

// put_file_path appends the path of an open file as the task sees it
// (fs/d_path.c: prepend_path): its dentries up to the mount's root, across
// mounts (struct mount: fs/mount.h) up to the task's root. A file outside the
// task's root (reached through /proc/<pid>/root, a passed fd, a detached
// mount or a pseudo filesystem) gets the path from the top of its mount tree
// after "(unreachable)", as getcwd(2) does; a path over PATH_BYTES keeps its
// end after "...". It returns the new offset; the item starts at off.
static __always_inline __u32 put_file_path(__u8 *buf, __u32 off, struct file *f, __u16 *nstr, __u8 *flags)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fs_struct *fs = task->fs;
	struct dentry *root_d = fs->root.dentry;
	struct vfsmount *root_m = fs->root.mnt;
	struct dentry *d = f->f_path.dentry;
	struct vfsmount *vm = f->f_path.mnt;
	struct mount *mnt = CAST(mount, (unsigned long)vm - bpf_core_field_offset(struct mount, mnt));
	__u8 *tmp = buf + TMP_OFF;
	__u32 pos = PATH_BYTES; // tmp[pos, PATH_BYTES) holds the path so far
	int end = 0;            // 1: at the task's root, 2: outside it, 3: no room
	for (int i = 0; i < PATH_DEPTH; i++) {
		if (d == root_d && vm == root_m) {
			end = 1;
			break;
		}
		if (d == vm->mnt_root) {
			struct mount *parent = mnt->mnt_parent;
			if (parent == mnt) {
				end = 2;
				break;
			}
			d = mnt->mnt_mountpoint;
			mnt = CAST(mount, parent);
			vm = &mnt->mnt;
			continue;
		}
		struct dentry *up = d->d_parent;
		if (up == d) {
			end = 2;
			break;
		}
		__u32 len = d->d_name.len;
		if (len > NAME_MAX || len + 1 + PATH_PREFIX > pos) {
			end = 3;
			break;
		}
		pos = (pos - len) & (2 * PATH_BYTES - 1);
		bpf_probe_read_kernel(tmp + pos, len & NAME_MAX, d->d_name.name);
		pos = (pos - 1) & (2 * PATH_BYTES - 1);
		tmp[pos] = '/';
		d = up;
	}
	if (pos == PATH_BYTES) {
		pos = PATH_BYTES - 1;
		tmp[pos] = '/';
	}
	if (end == 2) {
		pos = (pos - 13) & (2 * PATH_BYTES - 1);
		__builtin_memcpy(tmp + pos, "(unreachable)", 13);
	} else if (end != 1) {
		pos = (pos - 3) & (2 * PATH_BYTES - 1);
		__builtin_memcpy(tmp + pos, "...", 3);
		*flags |= F_TRUNC;
	}
	__u32 n = PATH_BYTES - pos;
	off &= (SCRATCH / 2 - 1);
	struct str_hdr *h = (void *)(buf + off);
	if (n > PATH_BYTES || bpf_probe_read_kernel(buf + off + sizeof(*h), n & (2 * PATH_BYTES - 1), tmp + (pos & (2 * PATH_BYTES - 1))))
		return off;
	h->kind = S_PATH;
	h->pad = 0;
	h->len = n;
	h->pad2 = 0;
	(*nstr)++;
	return off + sizeof(*h) + ((n + 7) & ~7);
}

// put_open appends a successful open's file path, then the user's path if
// it differs.
static __always_inline __u32 put_open(__u8 *buf, __u32 off, long fd, const void *user, __u16 *nstr, __u8 *flags)
{
	struct file *f = fd_file(fd);
	if (!f)
		return put_str(buf, off, S_PATH, user, 1, nstr, flags);
	__u16 k = *nstr;
	__u32 koff = off & (SCRATCH / 2 - 1);
	off = put_file_path(buf, off, f, nstr, flags);
	if (*nstr == k)
		return put_str(buf, off, S_PATH, user, 1, nstr, flags);
	__u32 kn = ((struct str_hdr *)(buf + koff))->len;
	__u16 u = 0;
	__u8 ufl = 0;
	__u32 end = put_str(buf, off, S_PATH_USER, user, 1, &u, &ufl);
	if (!u)
		return off;
	__u32 n = ((struct str_hdr *)(buf + (off & (SCRATCH / 2 - 1))))->len;
	if (n == kn && same_bytes(buf, koff + sizeof(struct str_hdr), (off & (SCRATCH / 2 - 1)) + sizeof(struct str_hdr), n))
		return off;
	*flags |= ufl;
	(*nstr)++;
	return end;
}

// put_sock_addr appends a socket's address as a struct sockaddr of its
// family (include/net/sock.h: sock_common; net/unix/af_unix.h: unix_sock):
// with peer, the address it is connected to, else its bound one. It returns
// the new offset; nothing is appended for another family or an unnamed unix
// socket.
static __always_inline __u32 put_sock_addr(__u8 *buf, __u32 off, struct file *f, int peer, __u16 *nstr)
{
	struct socket *sock = CAST(socket, f->private_data);
	struct sock *sk = sock->sk;
	__u16 fam = sk->__sk_common.skc_family;
	off &= (SCRATCH / 2 - 1);
	struct str_hdr *h = (void *)(buf + off);
	__u8 *a = buf + off + sizeof(*h);
	__u32 n;
	if (fam == AF_INET) {
		struct sockaddr_in *in = (void *)a;
		__builtin_memset(in, 0, sizeof(*in));
		in->sin_family = AF_INET;
		if (peer) {
			in->sin_port = sk->__sk_common.skc_dport;
			in->sin_addr.s_addr = sk->__sk_common.skc_daddr;
		} else {
			in->sin_port = __builtin_bswap16(sk->__sk_common.skc_num); // host order (LE targets only)
			in->sin_addr.s_addr = sk->__sk_common.skc_rcv_saddr;
		}
		n = sizeof(*in);
	} else if (fam == AF_INET6) {
		struct sockaddr_in6 *in6 = (void *)a;
		__builtin_memset(in6, 0, sizeof(*in6));
		in6->sin6_family = AF_INET6;
		if (peer) {
			in6->sin6_port = sk->__sk_common.skc_dport;
			__builtin_memcpy(&in6->sin6_addr, &sk->__sk_common.skc_v6_daddr, 16);
		} else {
			in6->sin6_port = __builtin_bswap16(sk->__sk_common.skc_num);
			__builtin_memcpy(&in6->sin6_addr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
		}
		n = sizeof(*in6);
	} else if (fam == AF_UNIX) {
		struct unix_sock *u = CAST(unix_sock, sk);
		if (peer)
			u = CAST(unix_sock, u->peer);
		struct unix_address *ua = u->addr;
		if (!ua)
			return off;
		n = ua->len;
		if (n < 2 || n > SOCK_BYTES)
			return off;
		if (bpf_probe_read_kernel(a, n & 127, &ua->name))
			return off;
	} else {
		return off;
	}
	h->kind = S_SOCK;
	h->pad = 0;
	h->len = n;
	h->pad2 = 0;
	(*nstr)++;
	return off + sizeof(*h) + ((n + 7) & ~7);
}

// put_sock appends, for a connect (peer) or bind that succeeded or is in
// progress, the socket's address, then the user's sockaddr if it differs
// in family, port or address (inet6: flow info and scope are not compared).
static __always_inline __u32 put_sock(__u8 *buf, __u32 off, long fd, int peer, const void *user, __u64 len, __u16 *nstr)
{
	struct file *f = fd_file(fd);
	__u16 k = *nstr;
	__u32 koff = off & (SCRATCH / 2 - 1);
	if (f)
		off = put_sock_addr(buf, off, f, peer, nstr);
	if (*nstr == k)
		return put_raw(buf, off, S_SOCK, user, len, nstr);
	__u16 u = 0;
	__u32 end = put_raw(buf, off, S_SOCK_USER, user, len, &u);
	if (!u)
		return off;
	__u32 uoff = off & (SCRATCH / 2 - 1);
	__u32 kn = ((struct str_hdr *)(buf + koff))->len;
	__u32 n = ((struct str_hdr *)(buf + uoff))->len;
	__u8 *ka = buf + koff + sizeof(struct str_hdr);
	__u8 *ua = buf + uoff + sizeof(struct str_hdr);
	int same;
	__u16 fam = *(__u16 *)ka;
	if (fam == AF_INET)
		same = n >= 8 && *(__u64 *)ka == *(__u64 *)ua;
	else if (fam == AF_INET6)
		same = n >= 24 && *(__u32 *)ka == *(__u32 *)ua &&
		       *(__u64 *)(ka + 8) == *(__u64 *)(ua + 8) && *(__u64 *)(ka + 16) == *(__u64 *)(ua + 16);
	else
		same = n >= kn && same_bytes(buf, koff + sizeof(struct str_hdr), uoff + sizeof(struct str_hdr), kn);
	if (same)
		return off;
	(*nstr)++;
	return end;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(vigil_sys_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct cg_state *st = tracked(task);
	if (!st)
		return 0;
	long nr = SYSCALL_NR(regs);
	__u64 now = bpf_ktime_get_ns();
	int pace = 0;
	// A number outside the table (an invalid syscall, or -1 when a tracer
	// skipped the call) still completed: it is recorded with all arguments.
	if (nr < 0 || nr >= MAX_NR) {
		if (over_budget(task, st, now, &pace))
			return 0;
		return fast_record(task, st, now, regs, nr, ret, 6, pace);
	}
	__u32 key = nr;
	struct sysmeta *m = bpf_map_lookup_elem(&vigil_sysmeta, &key);
	if (!m) {
		if (over_budget(task, st, now, &pace))
			return 0;
		return fast_record(task, st, now, regs, nr, ret, 6, pace);
	}
	// A successful execve returns in the new image: its record came from
	// sched_process_exec, with the strings of the new image.
	if (ret == 0 && (m->dec == D_EXEC || m->dec == D_EXECAT))
		return 0;
	if (over_budget(task, st, now, &pace))
		return 0;
	__u8 nargs = m->nargs & 7;
	if (nargs > 6)
		nargs = 6;
	if (m->dec == D_NONE)
		return fast_record(task, st, now, regs, nr, ret, nargs, pace);
	__u8 *buf = get_scratch();
	if (!buf)
		return count_lost(st);

	struct rec_hdr *r = begin(task, st, buf, now, nr, ret, 0);
	r->nargs = nargs;
	__u64 *args = (void *)(buf + sizeof(*r));
	__u64 a0 = ARG0(regs);
	__u64 a1 = ARG1(regs);
	__u64 a2 = ARG2(regs);
	__u64 a3 = ARG3(regs);
	__u64 a4 = ARG4(regs);
	__u64 a5 = ARG5(regs);
	args[0] = a0;
	args[1] = a1;
	args[2] = a2;
	args[3] = a3;
	args[4] = a4;
	args[5] = a5;
	__u32 off = sizeof(*r) + nargs * 8;

	struct comm_check cc;
	off = put_comm(task, buf, off, &r->flags, &cc);

	__u16 nstr = 0;
	__u8 fl = 0;
	switch (m->dec) {
	case D_NONE:
		break;
	case D_PATH0:
		off = put_str(buf, off, S_PATH, (void *)a0, 1, &nstr, &fl);
		break;
	case D_PATH1:
		off = put_str(buf, off, S_PATH, (void *)a1, 1, &nstr, &fl);
		break;
	case D_PATH01:
		off = put_str(buf, off, S_PATH, (void *)a0, 1, &nstr, &fl);
		off = put_str(buf, off, S_PATH2, (void *)a1, 1, &nstr, &fl);
		break;
	case D_PATH13:
		off = put_str(buf, off, S_PATH, (void *)a1, 1, &nstr, &fl);
		off = put_str(buf, off, S_PATH2, (void *)a3, 1, &nstr, &fl);
		break;
	case D_PATH02:
		off = put_str(buf, off, S_PATH, (void *)a0, 1, &nstr, &fl);
		off = put_str(buf, off, S_PATH2, (void *)a2, 1, &nstr, &fl);
		break;
	case D_EXEC:
		off = put_str(buf, off, S_PATH, (void *)a0, 1, &nstr, &fl);
		off = put_argv_user(buf, off, (void *)a1, &nstr, &fl);
		break;
	case D_EXECAT:
		off = put_str(buf, off, S_PATH, (void *)a1, 1, &nstr, &fl);
		off = put_argv_user(buf, off, (void *)a2, &nstr, &fl);
		break;
	case D_SOCK1:
		off = put_raw(buf, off, S_SOCK, (void *)a1, a2, &nstr);
		break;
	case D_OPEN0:
	case D_OPEN1: {
		void *user = (void *)(m->dec == D_OPEN0 ? a0 : a1);
		if (ret >= 0)
			off = put_open(buf, off, ret, user, &nstr, &fl);
		else
			off = put_str(buf, off, S_PATH, user, 1, &nstr, &fl);
		break;
	}
	case D_CONNECT:
	case D_BIND:
		if (ret == 0 || (m->dec == D_CONNECT && ret == -EINPROGRESS))
			off = put_sock(buf, off, a0, m->dec == D_CONNECT, (void *)a1, a2, &nstr);
		else
			off = put_raw(buf, off, S_SOCK, (void *)a1, a2, &nstr);
		break;
	case D_SOCK4:
		off = put_raw(buf, off, S_SOCK, (void *)a4, a5, &nstr);
		break;
	case D_ACCEPT: {
		int len = 0;
		if (ret >= 0 && a1 && a2 && !bpf_probe_read_user(&len, sizeof(len), (void *)a2) && len > 0)
			off = put_raw(buf, off, S_SOCK, (void *)a1, len, &nstr);
		break;
	}
	case D_MSG: {
		struct user_msghdr mh;
		if (a1 && !bpf_probe_read_user(&mh, sizeof(mh), (void *)a1))
			off = put_raw(buf, off, S_SOCK, mh.msg_name, mh.msg_namelen, &nstr);
		break;
	}
	case D_CLONE3:
		if (ret != 0) // the parent's return, or a failure: see put_clone_args
			off = put_clone_args(buf, off, (void *)a0, a1, &nstr);
		break;
	}
	r->flags |= fl | (nstr << 4);
	emit(task, st, r, off, pace, &cc);
	return 0;
}

// A successful execve: the record of the syscall, with the new image's
// filename and argv (from the new mm's arg area).
SEC("tp_btf/sched_process_exec")
int BPF_PROG(vigil_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct cg_state *st = tracked(task);
	if (!st)
		return 0;
	__u8 *buf = get_scratch();
	if (!buf)
		return count_lost(st);
	__u64 now = bpf_ktime_get_ns();
	int pace = 0;
	if (over_budget(task, st, now, &pace))
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(p);
	long nr = SYSCALL_NR(regs);
	struct rec_hdr *r = begin(task, st, buf, now, nr, 0, 0);
	__u64 *args = (void *)(buf + sizeof(*r));
	args[0] = ARG0(regs);
	args[1] = ARG1(regs);
	args[2] = ARG2(regs);
	args[3] = ARG3(regs);
	args[4] = ARG4(regs);
	args[5] = ARG5(regs);
	__u32 off = sizeof(*r) + 6 * 8;
	struct comm_check cc;
	off = put_comm(task, buf, off, &r->flags, &cc);

	__u16 nstr = 0;
	__u8 fl = 0;
	off = put_str(buf, off, S_PATH, BPF_CORE_READ(bprm, filename), 0, &nstr, &fl);

	struct mm_struct *mm = BPF_CORE_READ(p, mm);
	__u64 start = BPF_CORE_READ(mm, arg_start);
	__u64 end = BPF_CORE_READ(mm, arg_end);
	__u64 len = end - start;
	if (len > ARGV_BYTES) {
		len = ARGV_BYTES;
		fl |= F_TRUNC;
	}
	off &= (SCRATCH / 2 - 1);
	struct str_hdr *h = (void *)(buf + off);
	if (len > 0 && !bpf_probe_read_user(buf + off + sizeof(*h), len & (ARGV_BYTES * 2 - 1), (void *)start)) {
		h->kind = S_ARGV;
		h->pad = 0;
		h->len = len;
		h->pad2 = 0;
		nstr++;
		off += sizeof(*h) + ((len + 7) & ~7);
	}
	off = put_loader_env(buf, off, bprm, &nstr, &fl);
	r->flags |= fl | (nstr << 4);
	emit(task, st, r, off, pace, &cc);
	return 0;
}

// exit and exit_group never return: their record comes from do_exit, for
// the thread that made the call (a thread killed inside another syscall
// did not complete that syscall and gets no record).
SEC("tp_btf/sched_process_exit")
int BPF_PROG(vigil_exit, struct task_struct *p)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct cg_state *st = tracked(task);
	if (!st)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(p);
	long nr = SYSCALL_NR(regs);
	if (nr < 0 || nr >= MAX_NR)
		return 0;
	__u32 key = nr;
	struct sysmeta *m = bpf_map_lookup_elem(&vigil_sysmeta, &key);
	// user space marks exit and exit_group with nargs 0x80
	if (!m || !(m->nargs & 0x80))
		return 0;
	__u8 *buf = get_scratch();
	if (!buf)
		return count_lost(st);
	__u64 now = bpf_ktime_get_ns();
	int pace = 0;
	if (over_budget(task, st, now, &pace))
		return 0;
	struct rec_hdr *r = begin(task, st, buf, now, nr, 0, F_NORET);
	r->nargs = 1;
	__u64 *args = (void *)(buf + sizeof(*r));
	args[0] = ARG0(regs);
	__u32 off = sizeof(*r) + 8;
	struct comm_check cc;
	off = put_comm(task, buf, off, &r->flags, &cc);
	// An exiting process is not stopped: its records end here.
	if (bpf_ringbuf_output(&vigil_events, r, off & (SCRATCH - 1), wake_flag(now, st->flags))) {
		__sync_fetch_and_add(&st->dropped, 1);
	} else {
		__sync_fetch_and_add(&st->emitted, 1);
		comm_sent(&cc);
	}
	return 0;
}

// A removed cgroup has no task left, so its counters are final: keep them
// (kernel/cgroup/cgroup.c: cgroup_rmdir, before the storage is freed).
SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(vigil_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	struct cg_state *st = bpf_cgrp_storage_get(&vigil_cgroups, cgrp, 0, 0);
	if (!st)
		return 0;
	__u64 id = cgrp->kn->id;
	bpf_map_update_elem(&vigil_final, &id, st, BPF_ANY);
	return 0;
}
