// probe makes a known sequence of syscalls for the tracer's exactness test:
//   probe N M FILE PORT THREADS K
// N getppid, M openat of a missing path (ENOENT), open/read/close of FILE,
// a connect to 127.0.0.1:PORT (nothing listens: ECONNREFUSED), syscall
// 9999 (no such syscall: ENOSYS), THREADS
// threads that each make K getppid+openat pairs (thread i opens the missing
// path /nonexistent/vigil-probe-t<i>), then execve of itself with
// "--exec-done", which exits with status 7.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int k;

static void *worker(void *arg)
{
	char path[64];
	snprintf(path, sizeof(path), "/nonexistent/vigil-probe-t%ld", (long)arg);
	for (int i = 0; i < k; i++) {
		syscall(SYS_getppid);
		syscall(SYS_openat, AT_FDCWD, path, O_RDONLY, 0);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--exec-done") == 0)
		syscall(SYS_exit_group, 7);
	if (argc != 7)
		return 2;
	int n = atoi(argv[1]), m = atoi(argv[2]), threads = atoi(argv[5]);
	k = atoi(argv[6]);
	for (int i = 0; i < n; i++)
		syscall(SYS_getppid);
	for (int i = 0; i < m; i++)
		syscall(SYS_openat, AT_FDCWD, "/nonexistent/vigil-probe", O_RDONLY, 0);
	int fd = syscall(SYS_openat, AT_FDCWD, argv[3], O_RDONLY, 0);
	char buf[64];
	syscall(SYS_read, fd, buf, sizeof(buf));
	syscall(SYS_close, fd);
	int s = syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[4]))};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	syscall(SYS_connect, s, &sa, sizeof(sa));
	syscall(SYS_close, s);
	syscall(9999, 1, 2, 3, 4, 5, 6); // no such syscall: ENOSYS, recorded all the same
	pthread_t t[64];
	for (int i = 0; i < threads && i < 64; i++)
		pthread_create(&t[i], NULL, worker, (void *)(long)i);
	for (int i = 0; i < threads && i < 64; i++)
		pthread_join(t[i], NULL);
	char *args[] = {argv[0], "--exec-done", NULL};
	syscall(SYS_execve, "/proc/self/exe", args, environ);
	return 3;
}
