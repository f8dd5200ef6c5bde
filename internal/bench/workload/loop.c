// loop: the syscall workloads of vigil's tracer benchmarks.
//   loop getppid N          N getppid (the worst case: the cheapest syscall)
//   loop orc N FILE         N open/read/close of FILE
//   loop paced N NS         N getppid, one every NS nanoseconds (busy wait
//                           on the vDSO clock: no other syscalls)
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	long n = atol(argv[2]);
	if (strcmp(argv[1], "getppid") == 0) {
		for (long i = 0; i < n; i++)
			syscall(SYS_getppid);
	} else if (strcmp(argv[1], "orc") == 0 && argc == 4) {
		char buf[256];
		for (long i = 0; i < n; i++) {
			int fd = open(argv[3], O_RDONLY);
			read(fd, buf, sizeof(buf));
			close(fd);
		}
	} else if (strcmp(argv[1], "paced") == 0 && argc == 4) {
		long long step = atoll(argv[3]), next = now();
		for (long i = 0; i < n; i++) {
			next += step;
			syscall(SYS_getppid);
			while (now() < next)
				;
		}
	} else {
		return 2;
	}
	return 0;
}
