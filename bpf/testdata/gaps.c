// gaps makes the calls whose arguments live in user memory beyond a
// pointer, for the tests of gaps_test.go. Each mode prints one line with
// what it did:
//   gaps clone3 FLAGS     clone3 with FLAGS (hex) | SIGCHLD; the child exits:
//                         "clone3 <ret>" (the child's pid, or -errno)
//   gaps thread           pthread_create and join (glibc makes threads with
//                         clone3): "thread"
//   gaps sendmmsg PORT    two datagrams to 127.0.0.1:PORT from an
//                         unconnected UDP socket, in one sendmmsg, each
//                         with its address in msg_name: "sendmmsg <ret>"
//   gaps connected PORT   connect to 127.0.0.1:PORT, then the same
//                         sendmmsg without addresses: "connected <ret>"
//   gaps nop              nothing (an exec whose environment is the test)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void *thread_main(void *arg)
{
	return arg;
}

static int send2(int fd, struct sockaddr_in *to)
{
	char a[] = "one", b[] = "two";
	struct iovec iov[2] = {{a, sizeof(a)}, {b, sizeof(b)}};
	struct mmsghdr m[2];
	memset(m, 0, sizeof(m));
	for (int i = 0; i < 2; i++) {
		m[i].msg_hdr.msg_iov = &iov[i];
		m[i].msg_hdr.msg_iovlen = 1;
		if (to) {
			m[i].msg_hdr.msg_name = to;
			m[i].msg_hdr.msg_namelen = sizeof(*to);
		}
	}
	return sendmmsg(fd, m, 2, 0);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "clone3") == 0) {
		struct clone_args ca;
		memset(&ca, 0, sizeof(ca));
		ca.flags = strtoull(argv[2], NULL, 16);
		ca.exit_signal = SIGCHLD;
		long pid = syscall(SYS_clone3, &ca, sizeof(ca));
		if (pid == 0)
			_exit(0);
		if (pid > 0)
			waitpid(pid, NULL, 0);
		printf("clone3 %ld\n", pid < 0 ? -(long)errno : pid);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "thread") == 0) {
		pthread_t th;
		if (pthread_create(&th, NULL, thread_main, NULL) || pthread_join(th, NULL))
			return 1;
		printf("thread\n");
		return 0;
	}
	if (argc == 3 && (strcmp(argv[1], "sendmmsg") == 0 || strcmp(argv[1], "connected") == 0)) {
		struct sockaddr_in to;
		memset(&to, 0, sizeof(to));
		to.sin_family = AF_INET;
		to.sin_port = htons(atoi(argv[2]));
		to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int fd = socket(AF_INET, SOCK_DGRAM, 0);
		if (fd < 0)
			return 1;
		int connected = strcmp(argv[1], "connected") == 0;
		if (connected && connect(fd, (struct sockaddr *)&to, sizeof(to)))
			return 1;
		printf("%s %d\n", argv[1], send2(fd, connected ? NULL : &to));
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "nop") == 0)
		return 0;
	fprintf(stderr, "usage: gaps clone3 FLAGS | thread | sendmmsg PORT | connected PORT | nop\n");
	return 2;
}
