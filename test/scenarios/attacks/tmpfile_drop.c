// tmpfile_drop: drops a program with no name: a file opened with O_TMPFILE
// in /tmp (never visible in the directory), filled with a copy of
// /bin/true, linked into place through its fd (linkat AT_EMPTY_PATH), run,
// then removed.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
	int in = open("/bin/true", O_RDONLY | O_CLOEXEC);
	int t = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0755);
	if (in < 0 || t < 0)
		return 1;
	char buf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof buf)) > 0)
		if (write(t, buf, n) != n)
			return 1;
	char dst[64];
	snprintf(dst, sizeof dst, "/tmp/.vigil-tmpfile-%d", getpid());
	if (linkat(t, "", AT_FDCWD, dst, AT_EMPTY_PATH) < 0) {
		perror("linkat");
		return 1;
	}
	close(t);
	pid_t p = fork();
	if (p == 0) {
		execl(dst, "true", (char *)NULL);
		_exit(127);
	}
	int st = 0;
	waitpid(p, &st, 0);
	unlink(dst);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
