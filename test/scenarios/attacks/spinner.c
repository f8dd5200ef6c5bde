// spinner: a miner written otherwise than cpu_miner: N threads (default 1),
// each hashing for WORK ms then sleeping SLEEP ms (a duty cycle, as
// xmrig's --cpu-max-threads-hint), for SECS seconds (at most 15); no other
// syscalls. Run niced it is a one-thread miner starved on a busy node.
//   spinner [THREADS [SECS [WORK_MS [SLEEP_MS]]]]
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static volatile int stop;
static volatile uint64_t sink;
static int work_ms = 1000, sleep_ms;

static uint64_t now_ms(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000ull + t.tv_nsec / 1000000;
}

static void *spin(void *arg) {
	uint64_t h = (uintptr_t)arg + 1;
	while (!stop) {
		uint64_t end = now_ms() + work_ms;
		while (now_ms() < end)
			for (int i = 0; i < 20000; i++) {
				h ^= h >> 33;
				h *= 0xff51afd7ed558ccdull;
				h ^= h >> 29;
			}
		if (sleep_ms) {
			struct timespec ts = {0, sleep_ms * 1000000L};
			nanosleep(&ts, NULL);
		}
	}
	sink = h;
	return NULL;
}

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 1, secs = argc > 2 ? atoi(argv[2]) : 8;
	work_ms = argc > 3 ? atoi(argv[3]) : 1000;
	sleep_ms = argc > 4 ? atoi(argv[4]) : 0;
	if (n < 1 || n > 8)
		n = 1;
	if (secs < 1 || secs > 15)
		secs = 8;
	if (work_ms < 1)
		work_ms = 1;
	if (sleep_ms < 0 || sleep_ms > 999)
		sleep_ms = 0;
	pthread_t t[8];
	for (long i = 0; i < n; i++)
		pthread_create(&t[i], NULL, spin, (void *)i);
	struct timespec ts = {secs, 0};
	nanosleep(&ts, NULL);
	stop = 1;
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	return 0;
}
