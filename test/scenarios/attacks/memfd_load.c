// memfd_load: code loaded from memory, without an exec: a library copied
// into a memfd and dlopen'd through /proc/self/fd/N (ld.so maps it for
// execution), or machine code written into a memfd and mapped executable
// by the program itself (mmap), or mapped readable, then made executable
// (mprotect). The code is the system's libm, or a bare return: it runs
// and does nothing else.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char *libs[] = {"/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6",
	"/lib/aarch64-linux-gnu/libm.so.6", "/usr/lib/aarch64-linux-gnu/libm.so.6", "/lib64/libm.so.6", "/usr/lib64/libm.so.6", NULL};

#if defined(__x86_64__)
static const unsigned char ret[] = {0xc3};
#elif defined(__aarch64__)
static const unsigned char ret[] = {0xc0, 0x03, 0x5f, 0xd6};
#endif

static int copy_lib(int m) {
	for (int i = 0; libs[i]; i++) {
		int in = open(libs[i], O_RDONLY | O_CLOEXEC);
		if (in < 0)
			continue;
		char buf[65536];
		ssize_t n;
		while ((n = read(in, buf, sizeof buf)) > 0)
			if (write(m, buf, n) != n)
				return -1;
		close(in);
		return 0;
	}
	return -1;
}

int main(int argc, char **argv) {
	const char *mode = argc > 1 ? argv[1] : "dlopen";
	int m = memfd_create("jit", MFD_CLOEXEC);
	if (m < 0)
		return 1;
	if (strcmp(mode, "dlopen") == 0) {
		if (copy_lib(m) < 0)
			return 1;
		char path[64];
		snprintf(path, sizeof path, "/proc/self/fd/%d", m);
		void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (!h)
			return 1;
		double (*c)(double) = (double (*)(double))dlsym(h, "cos");
		printf("cos(0) from memory: %g\n", c ? c(0) : -1);
		return 0;
	}
	if (write(m, ret, sizeof ret) != sizeof ret)
		return 1;
	void (*f)(void);
	if (strcmp(mode, "mmap") == 0) {
		f = (void (*)(void))mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_SHARED, m, 0);
	} else {
		void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, m, 0);
		if (p == MAP_FAILED || mprotect(p, 4096, PROT_READ | PROT_EXEC) < 0)
			return 1;
		f = (void (*)(void))p;
	}
	if ((void *)f == MAP_FAILED)
		return 1;
	f();
	puts("ran code from a memfd");
	return 0;
}
