//go:build ignore

// The workload of one container of `vigil bench scale`: every PERIOD_US
// microseconds, BURST rounds of openat, read, close and getpid, then one
// nanosleep. No libc: a static binary of a few pages, so that ten thousand
// of them cost little more than their kernel tasks.
//
// Usage: helper PERIOD_US BURST

#if defined(__x86_64__)
#define NR_read 0
#define NR_close 3
#define NR_getpid 39
#define NR_nanosleep 35
#define NR_openat 257
#define NR_exit_group 231
__asm__(".globl _start\n_start:\n xor %rbp,%rbp\n mov %rsp,%rdi\n and $-16,%rsp\n call cmain\n hlt\n");
static long sys3(long n, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return ret;
}
#elif defined(__aarch64__)
#define NR_read 63
#define NR_close 57
#define NR_getpid 172
#define NR_nanosleep 101
#define NR_openat 56
#define NR_exit_group 94
__asm__(".globl _start\n_start:\n mov x0, sp\n bl cmain\n");
static long sys3(long n, long a, long b, long c)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
	return x0;
}
#else
#error "x86_64 or aarch64 only"
#endif

#define AT_FDCWD -100

static long num(const char *s)
{
	long v = 0;
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (*s++ - '0');
	return v;
}

void cmain(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	if (argc < 3)
		sys3(NR_exit_group, 2, 0, 0);
	long period = num(argv[1]), burst = num(argv[2]);
	struct { long sec, nsec; } ts = { period / 1000000, (period % 1000000) * 1000 };
	static char buf[64];
	for (;;) {
		for (long i = 0; i < burst; i++) {
			long fd = sys3(NR_openat, AT_FDCWD, (long)"/etc/hostname", 0);
			if (fd >= 0) {
				sys3(NR_read, fd, (long)buf, sizeof buf);
				sys3(NR_close, fd, 0, 0);
			}
			sys3(NR_getpid, 0, 0, 0);
		}
		sys3(NR_nanosleep, (long)&ts, 0, 0);
	}
}
