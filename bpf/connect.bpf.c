//go:build ignore

// connect.bpf.c: the connect guard. cgroup sock_addr programs that refuse,
// in the kernel, a guarded cgroup's connect() and unconnected sendmsg() to
// destinations its policy forbids; returning 0 makes the syscall fail with
// EPERM. The kernel runs them from sk_prot->pre_connect (tcp_v4_pre_connect
// in net/ipv4/tcp_ipv4.c, udp_pre_connect in net/ipv4/udp.c; TCP fast open
// goes through it too) and from udp_sendmsg, through
// BPF_CGROUP_RUN_PROG_INET4_CONNECT_LOCK and BPF_CGROUP_RUN_PROG_UDP4_SENDMSG_LOCK
// (include/linux/bpf-cgroup.h); the IPv6 twins are in net/ipv6/. user_ip4,
// user_ip6 and user_port are in network byte order (include/uapi/linux/bpf.h:
// struct bpf_sock_addr).
//
// A cgroup is identified by the cgroup v2 id of the calling task, or of its
// nearest ancestor with a policy, so that sub-cgroups a container makes
// stay guarded. A cgroup without a policy is allowed everything.

#include "headers/vmlinux.h"
#include "headers/bpf_helpers.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10

// What a cgroup's policy enforces.
enum guard_flags {
	// Refuse port 53 (UDP or TCP) unless the address is in guard_dns_allowed.
	GUARD_DNS_ONLY_ALLOWED = 1 << 0,
	// Refuse the destinations in guard_deny.
	GUARD_DENY_LISTED = 1 << 1,
};

struct guard_rule {
	enum guard_flags flags;
};

// An address: IPv4 in addr[0..4] with family AF_INET (IPv4-mapped IPv6
// addresses are stored and looked up as IPv4), IPv6 with AF_INET6.
struct guard_dns_key {
	__u64 cgroup_id;
	__u8 family;
	__u8 pad[7];
	__u8 addr[16];
};

struct guard_deny_key {
	__u64 cgroup_id;
	__u16 port; // host order; 0 = any port
	__u8 family;
	__u8 pad[5];
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64); // cgroup id
	__type(value, struct guard_rule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct guard_dns_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_dns_allowed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct guard_deny_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_deny SEC(".maps");

// Refusals per cgroup (the cgroup whose policy refused).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64); // cgroup id
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_refused SEC(".maps");

// Deepest cgroup level searched for an ancestor with a policy.
#define GUARD_MAX_LEVEL 16

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define guard_ntohs(x) __builtin_bswap16(x)
#define GUARD_V4MAPPED 0xffff0000 // the third word of ::ffff:a.b.c.d, as loaded
#else
#define guard_ntohs(x) (x)
#define GUARD_V4MAPPED 0x0000ffff
#endif

// find_policy returns the policy of the calling task's cgroup or of its
// nearest ancestor that has one, and that cgroup's id in *cgid.
static __always_inline struct guard_rule *find_policy(__u64 *cgid)
{
	__u64 id = bpf_get_current_cgroup_id();
	struct guard_rule *p = bpf_map_lookup_elem(&guard_policy, &id);
	if (p) {
		*cgid = id;
		return p;
	}
	// Levels count from the root (0); the nearest ancestor with a policy
	// is the deepest level below the task's own that has one.
	struct guard_rule *found = 0;
	__u64 found_id = 0;
	for (int level = 1; level < GUARD_MAX_LEVEL; level++) {
		__u64 anc = bpf_get_current_ancestor_cgroup_id(level);
		if (anc == 0 || anc == id)
			break;
		p = bpf_map_lookup_elem(&guard_policy, &anc);
		if (p) {
			found = p;
			found_id = anc;
		}
	}
	*cgid = found_id;
	return found;
}

static __always_inline void count_refusal(__u64 cgid)
{
	__u64 *n = bpf_map_lookup_elem(&guard_refused, &cgid);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&guard_refused, &cgid, &one, BPF_NOEXIST) == 0)
		return;
	n = bpf_map_lookup_elem(&guard_refused, &cgid); // another CPU added it
	if (n)
		__sync_fetch_and_add(n, 1);
}

// decide returns 1 (allow) or 0 (refuse) for a destination. addr holds the
// address as in the map keys; port is in host order.
static __always_inline int decide(struct guard_rule *p, __u64 cgid, __u8 family,
				  const __u32 addr[4], __u16 port)
{
	__u32 flags = p->flags;
	if ((flags & GUARD_DNS_ONLY_ALLOWED) && port == 53) {
		struct guard_dns_key k = { .cgroup_id = cgid, .family = family };
		__builtin_memcpy(k.addr, addr, 16);
		if (!bpf_map_lookup_elem(&guard_dns_allowed, &k))
			goto refuse;
	}
	if (flags & GUARD_DENY_LISTED) {
		struct guard_deny_key k = { .cgroup_id = cgid, .port = port, .family = family };
		__builtin_memcpy(k.addr, addr, 16);
		if (bpf_map_lookup_elem(&guard_deny, &k))
			goto refuse;
		k.port = 0;
		if (bpf_map_lookup_elem(&guard_deny, &k))
			goto refuse;
	}
	return 1;
refuse:
	count_refusal(cgid);
	return 0;
}

static __always_inline int guard4(struct bpf_sock_addr *ctx)
{
	__u64 cgid = 0;
	struct guard_rule *p = find_policy(&cgid);
	if (!p)
		return 1;
	__u32 addr[4] = { ctx->user_ip4, 0, 0, 0 };
	return decide(p, cgid, AF_INET, addr, guard_ntohs((__u16)ctx->user_port));
}

static __always_inline int guard6(struct bpf_sock_addr *ctx)
{
	__u64 cgid = 0;
	struct guard_rule *p = find_policy(&cgid);
	if (!p)
		return 1;
	__u32 addr[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	__u16 port = guard_ntohs((__u16)ctx->user_port);
	// ::ffff:a.b.c.d is IPv4 a.b.c.d (include/net/ipv6.h: ipv6_addr_v4mapped).
	if (addr[0] == 0 && addr[1] == 0 && addr[2] == GUARD_V4MAPPED) {
		__u32 v4[4] = { addr[3], 0, 0, 0 };
		return decide(p, cgid, AF_INET, v4, port);
	}
	return decide(p, cgid, AF_INET6, addr, port);
}

SEC("cgroup/connect4")
int guard_connect4(struct bpf_sock_addr *ctx)
{
	return guard4(ctx);
}

SEC("cgroup/sendmsg4")
int guard_sendmsg4(struct bpf_sock_addr *ctx)
{
	return guard4(ctx);
}

SEC("cgroup/connect6")
int guard_connect6(struct bpf_sock_addr *ctx)
{
	return guard6(ctx);
}

SEC("cgroup/sendmsg6")
int guard_sendmsg6(struct bpf_sock_addr *ctx)
{
	return guard6(ctx);
}
