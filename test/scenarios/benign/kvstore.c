// kvstore: a database-like workload: a fixed-record key-value file with
// random reads and writes (pread/pwrite), a write-ahead log with fsync, and
// checkpoints written to a temporary file and renamed into place.
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REC 128
#define NREC 2048

int main(int argc, char **argv) {
	const char *base = argc > 1 ? argv[1] : "/tmp/vigil-kv";
	int ops = argc > 2 ? atoi(argv[2]) : 3000;
	char path[512], wal[512], tmp[512];
	snprintf(path, sizeof path, "%s.db", base);
	snprintf(wal, sizeof wal, "%s.wal", base);
	snprintf(tmp, sizeof tmp, "%s.db.tmp", base);
	int db = open(path, O_RDWR | O_CREAT, 0600);
	int lg = open(wal, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (db < 0 || lg < 0)
		return 1;
	if (ftruncate(db, (off_t)REC * NREC) != 0)
		return 1;
	uint64_t seed = 42;
	char rec[REC];
	unsigned long hits = 0;
	for (int i = 0; i < ops; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		off_t k = (off_t)(seed >> 33) % NREC;
		if (i % 4 == 0) {
			memset(rec, 'a' + i % 26, sizeof rec);
			snprintf(rec, 32, "key%ld v%d", (long)k, i);
			write(lg, rec, 32);
			pwrite(db, rec, REC, k * REC);
			if (i % 64 == 0)
				fdatasync(lg);
		} else if (pread(db, rec, REC, k * REC) == REC && rec[0] == 'k') {
			hits++;
		}
		if (i % 1000 == 999) {
			int t = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			char buf[REC * 64];
			for (off_t o = 0; o < (off_t)REC * NREC; o += sizeof buf) {
				ssize_t n = pread(db, buf, sizeof buf, o);
				if (n > 0)
					write(t, buf, n);
			}
			fsync(t);
			close(t);
			rename(tmp, path);
			close(db);
			db = open(path, O_RDWR);
			ftruncate(lg, 0);
		}
	}
	printf("%lu hits\n", hits);
	close(db);
	close(lg);
	unlink(path);
	unlink(wal);
	return 0;
}
