// forge attacks the tracer's strings and budget, for the tests of
// forge_test.go. Each mode prints what the kernel really did, one line per
// successful call, for the test to compare with the records:
//   forge open N A B        N openat of a buffer that a second thread flips
//                           between paths A and B: "open <path of the fd>"
//   forge fifo N FIFO B     N openat of FIFO, which blocks until a second
//                           thread, having written B into the buffer,
//                           opens FIFO for writing: "open <path of the fd>"
//   forge unix-block N L B  N connect to a unix socket at L that the probe
//                           listens on with a full backlog; a second thread
//                           writes B into the sockaddr, then accepts: "unix"
//   forge connect N PA PB   N connect to 127.0.0.1 of a sockaddr whose port
//                           a second thread flips between PA and PB:
//                           "connect <port of getpeername>"
//   forge bind              bind of a UDP socket to 127.0.0.1:0:
//                           "bind <port of getsockname>"
//   forge unix PATH         connect to the unix socket at PATH: "unix"
//   forge chroot DIR        open of "/inside" after chroot(DIR), then of
//                           "etc/hostname" under a directory fd of the old
//                           root: "chroot"
//   forge flood THREADS     getppid in THREADS threads until killed
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

static char path[2][256];
static char buf[256];
static struct sockaddr_in sa;
static unsigned short ports[2];
static atomic_int stop;

// Rewrite the buffer the main thread passes, as fast as possible.
static void *flip_path(void *arg)
{
	(void)arg;
	for (unsigned i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++)
		memcpy(buf, path[i & 1], sizeof(buf));
	return NULL;
}

static void *flip_port(void *arg)
{
	(void)arg;
	for (unsigned i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++)
		*(volatile unsigned short *)&sa.sin_port = htons(ports[i & 1]);
	return NULL;
}

static char *fifo_path;

// blocked_in reports whether the main thread is blocked in syscall nr
// (its /proc/self/task/PID/syscall starts with the number).
static int blocked_in(long nr)
{
	char p[64], line[64] = {0}, want[32];
	snprintf(p, sizeof(p), "/proc/self/task/%d/syscall", getpid());
	FILE *f = fopen(p, "r");
	if (!f)
		return 0;
	size_t n = fread(line, 1, sizeof(line) - 1, f);
	fclose(f);
	line[n] = 0;
	snprintf(want, sizeof(want), "%ld ", nr);
	return strncmp(line, want, strlen(want)) == 0;
}

// Once the main thread blocks in open(fifo), rewrite its buffer, then let
// the open complete by opening the other end. It waits until the main
// thread is really in openat (a busy machine may start it late), and never
// blocks itself: the other end is opened without blocking.
static void *fifo_writer(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100000 && !blocked_in(SYS_openat); i++)
		usleep(100);
	usleep(1000);
	memcpy(buf, path[1], sizeof(buf));
	for (int i = 0; i < 100000; i++) {
		int fd = open(fifo_path, O_WRONLY | O_NONBLOCK);
		if (fd >= 0) {
			close(fd);
			break;
		}
		usleep(100);
	}
	return NULL;
}

static struct sockaddr_un un;
static char decoy[108];
static int listener;

// Once the main thread blocks in connect (the backlog is full), rewrite its
// sockaddr, then make room.
static void *unix_acceptor(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100000 && !blocked_in(SYS_connect); i++)
		usleep(100);
	usleep(1000);
	memcpy(un.sun_path, decoy, sizeof(decoy));
	close(accept(listener, NULL, NULL));
	return NULL;
}

static void *flood(void *arg)
{
	(void)arg;
	for (;;)
		syscall(SYS_getppid);
	return NULL;
}

static void print_fd(int fd)
{
	char link[64], target[512];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	target[n < 0 ? 0 : n] = 0;
	printf("open %s\n", target);
}

int main(int argc, char **argv)
{
	pthread_t t;
	if (argc == 5 && strcmp(argv[1], "open") == 0) {
		strncpy(path[0], argv[3], sizeof(path[0]) - 1);
		strncpy(path[1], argv[4], sizeof(path[1]) - 1);
		memcpy(buf, path[0], sizeof(buf));
		pthread_create(&t, NULL, flip_path, NULL);
		for (int i = 0, n = atoi(argv[2]); i < n; i++) {
			int fd = syscall(SYS_openat, AT_FDCWD, buf, O_RDONLY, 0);
			if (fd < 0)
				continue;
			print_fd(fd);
			close(fd);
		}
		atomic_store(&stop, 1);
		pthread_join(t, NULL);
		return 0;
	}
	if (argc == 5 && strcmp(argv[1], "fifo") == 0) {
		fifo_path = argv[3];
		strncpy(path[0], argv[3], sizeof(path[0]) - 1);
		strncpy(path[1], argv[4], sizeof(path[1]) - 1);
		for (int i = 0, n = atoi(argv[2]); i < n; i++) {
			memcpy(buf, path[0], sizeof(buf));
			pthread_create(&t, NULL, fifo_writer, NULL);
			int fd = syscall(SYS_openat, AT_FDCWD, buf, O_RDONLY, 0);
			pthread_join(t, NULL);
			if (fd < 0)
				return 1;
			print_fd(fd);
			close(fd);
		}
		return 0;
	}
	if (argc == 5 && strcmp(argv[1], "unix-block") == 0) {
		struct sockaddr_un l = {.sun_family = AF_UNIX};
		strncpy(l.sun_path, argv[3], sizeof(l.sun_path) - 1);
		strncpy(decoy, argv[4], sizeof(decoy) - 1);
		listener = socket(AF_UNIX, SOCK_STREAM, 0);
		if (bind(listener, (struct sockaddr *)&l, sizeof(l)) != 0 || listen(listener, 0) != 0)
			return 1;
		for (int i = 0, n = atoi(argv[2]); i < n; i++) {
			int filler = socket(AF_UNIX, SOCK_STREAM, 0);
			if (connect(filler, (struct sockaddr *)&l, sizeof(l)) != 0)
				return 1;
			un = l;
			int s = socket(AF_UNIX, SOCK_STREAM, 0);
			pthread_create(&t, NULL, unix_acceptor, NULL);
			int r = syscall(SYS_connect, s, &un, sizeof(un));
			pthread_join(t, NULL);
			if (r != 0)
				return 1;
			close(accept(listener, NULL, NULL));
			close(filler);
			close(s);
			printf("unix\n");
		}
		return 0;
	}
	if (argc == 5 && strcmp(argv[1], "connect") == 0) {
		ports[0] = atoi(argv[3]);
		ports[1] = atoi(argv[4]);
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa.sin_port = htons(ports[0]);
		pthread_create(&t, NULL, flip_port, NULL);
		for (int i = 0, n = atoi(argv[2]); i < n; i++) {
			int s = socket(AF_INET, SOCK_STREAM, 0);
			if (syscall(SYS_connect, s, &sa, sizeof(sa)) == 0) {
				struct sockaddr_in peer;
				socklen_t len = sizeof(peer);
				getpeername(s, (struct sockaddr *)&peer, &len);
				printf("connect %d\n", ntohs(peer.sin_port));
			}
			close(s);
		}
		atomic_store(&stop, 1);
		pthread_join(t, NULL);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "bind") == 0) {
		int s = socket(AF_INET, SOCK_DGRAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (syscall(SYS_bind, s, &a, sizeof(a)) != 0)
			return 1;
		socklen_t len = sizeof(a);
		getsockname(s, (struct sockaddr *)&a, &len);
		printf("bind %d\n", ntohs(a.sin_port));
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "unix") == 0) {
		int s = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		strncpy(a.sun_path, argv[2], sizeof(a.sun_path) - 1);
		if (syscall(SYS_connect, s, &a, sizeof(a)) != 0)
			return 1;
		printf("unix\n");
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "chroot") == 0) {
		int old = open("/", O_DIRECTORY | O_RDONLY);
		if (old < 0 || chroot(argv[2]) != 0 || chdir("/") != 0)
			return 1;
		if (syscall(SYS_openat, AT_FDCWD, "/inside", O_RDONLY, 0) < 0)
			return 1;
		if (syscall(SYS_openat, old, "etc/hostname", O_RDONLY, 0) < 0)
			return 1;
		printf("chroot\n");
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "flood") == 0) {
		for (int i = 1, n = atoi(argv[2]); i < n; i++)
			pthread_create(&t, NULL, flood, NULL);
		flood(NULL);
	}
	return 2;
}
