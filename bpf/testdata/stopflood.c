// stopflood floods getppid from THREADS threads while its main thread
// waits in vfork, so that a SIGSTOP sent to the process stays pending with
// no thread woken to take it (the kernel wakes the main thread, which a
// vfork wait does not let go): the stand-in for a thread chosen for the
// group's stop that does not get a CPU. For TestBlockClassPendingStop.
//
//   stopflood THREADS CALLS HOLD_MS
//
// The vfork child prints "ready", waits for a line on standard input (the
// test sends the SIGSTOP first), starts the threads, sleeps HOLD_MS and
// exits. The main thread then joins the threads and prints "done".
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile int go;
static long calls;

static void *flood(void *arg)
{
	(void)arg;
	while (!go)
		;
	for (long i = 0; i < calls; i++)
		syscall(SYS_getppid);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: stopflood THREADS CALLS HOLD_MS\n");
		return 2;
	}
	int threads = atoi(argv[1]);
	calls = atol(argv[2]);
	long hold = atol(argv[3]);
	pthread_t tid[64];
	if (threads < 1 || threads > 64)
		return 2;
	for (int i = 0; i < threads; i++)
		if (pthread_create(&tid[i], 0, flood, 0))
			return 1;
	pid_t pid = vfork();
	if (pid == 0) {
		// The child shares the parent's memory until it exits: only raw
		// system calls here.
		char c;
		syscall(SYS_write, 1, "ready\n", 6);
		syscall(SYS_read, 0, &c, 1);
		go = 1;
		struct timespec ts = {hold / 1000, (hold % 1000) * 1000000};
		syscall(SYS_nanosleep, &ts, 0);
		syscall(SYS_exit, 0);
	}
	if (pid < 0)
		return 1;
	for (int i = 0; i < threads; i++)
		pthread_join(tid[i], 0);
	printf("done\n");
	return 0;
}
