// cpu_miner: a miner-like CPU burner. Four threads hash in a tight loop with
// no syscalls for a bounded time (MINER_SECONDS, default 6), then exit.
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile int stop;
static volatile uint64_t sink;

static void *spin(void *arg) {
	uint64_t h = (uintptr_t)arg * 0x9e3779b97f4a7c15ull;
	while (!stop) {
		for (int i = 0; i < 1000000; i++) {
			h ^= h >> 33;
			h *= 0xff51afd7ed558ccdull;
			h ^= h >> 29;
		}
	}
	sink = h;
	return NULL;
}

int main(void) {
	const char *s = getenv("MINER_SECONDS");
	int secs = s ? atoi(s) : 6;
	if (secs < 1 || secs > 10)
		secs = 6;
	pthread_t t[4];
	for (long i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, spin, (void *)i);
	struct timespec ts = {secs, 0};
	nanosleep(&ts, NULL);
	stop = 1;
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	printf("mined nothing for %d s\n", secs);
	return 0;
}
