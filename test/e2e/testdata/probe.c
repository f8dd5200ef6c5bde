// probe: the known-syscall workload of vigil's end-to-end tests. It uses no
// libc, so after its execve the complete syscall sequence is exactly:
//
//   close(-1), close(-2), ..., close(-N)   N = PROBE_N, each fails EBADF
//   write(1, "probe done\n", 11)
//   exit_group(0)
//
// Built with -nostdlib -static; x86_64 only.
#define PROBE_N 500

static long sys1(long nr, long a) {
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a) : "rcx", "r11", "memory");
	return ret;
}

static long sys3(long nr, long a, long b, long c) {
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return ret;
}

void _start(void) {
	static const char msg[] = "probe done\n";
	for (long i = 1; i <= PROBE_N; i++)
		sys1(3 /* close */, -i);
	sys3(1 /* write */, 1, (long)msg, sizeof msg - 1);
	sys1(231 /* exit_group */, 0);
	for (;;) {}
}
