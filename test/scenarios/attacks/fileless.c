// fileless: copies /bin/true into a memfd and executes it from there.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void) {
	int in = open("/bin/true", O_RDONLY);
	int m = memfd_create("payload", 0);
	if (in < 0 || m < 0)
		return 1;
	char buf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof buf)) > 0)
		write(m, buf, n);
	close(in);
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", m);
	char *argv[] = {"payload", NULL};
	char *envp[] = {NULL};
	execve(path, argv, envp);
	return 1;
}
