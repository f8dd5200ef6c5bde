// memfd_jit: the everyday uses of memfds, none loading code from bytes:
// shared memory between a process and its child (Wayland buffers,
// PulseAudio, systemd: a sealed memfd, mapped shared and writable), and a
// JIT that keeps W^X with a double mapping (.NET's doublemapper, libffi's
// closures): it reserves the memfd shared, writes code through a writable
// view and runs it through an executable view of the same pages, made so
// with mmap or with mprotect.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__)
static const unsigned char ret[] = {0xc3};
#elif defined(__aarch64__)
static const unsigned char ret[] = {0xc0, 0x03, 0x5f, 0xd6};
#endif

static int shm(void) {
	int m = memfd_create("wayland-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (m < 0 || ftruncate(m, 1 << 20) < 0 || fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
		return 1;
	char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
	if (p == MAP_FAILED)
		return 1;
	for (int round = 0; round < 50; round++) {
		pid_t c = fork();
		if (c == 0) {
			memset(p, round, 1 << 20);
			_exit(0);
		}
		waitpid(c, NULL, 0);
		if (p[4096] != (char)round)
			return 1;
	}
	munmap(p, 1 << 20);
	return close(m);
}

static int jit(int with_mprotect) {
	size_t size = 64 << 10;
	int m = memfd_create("doublemapper", MFD_CLOEXEC);
	if (m < 0 || ftruncate(m, size) < 0)
		return 1;
	char *rx;
	if (with_mprotect) {
		rx = mmap(NULL, size, PROT_NONE, MAP_SHARED, m, 0);
		if (rx == MAP_FAILED || mprotect(rx, size, PROT_READ | PROT_EXEC) < 0)
			return 1;
	} else {
		rx = mmap(NULL, size, PROT_READ | PROT_EXEC, MAP_SHARED, m, 0);
	}
	char *rw = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
	if (rx == MAP_FAILED || rw == MAP_FAILED)
		return 1;
	for (size_t off = 0; off < size; off += 4096) {
		memcpy(rw + off, ret, sizeof ret);
		((void (*)(void))(rx + off))();
	}
	munmap(rw, size);
	munmap(rx, size);
	return close(m);
}

int main(void) {
	if (shm() || jit(0) || jit(1))
		return 1;
	puts("memfd shared memory and double-mapped code: ok");
	return 0;
}
