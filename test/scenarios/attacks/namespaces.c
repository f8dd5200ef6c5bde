// namespaces: unshare of a user namespace (only this process's, which then
// exits) and setns into this process's own network namespace (a no-op).
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
	const char *what = argc > 1 ? argv[1] : "all";
	int all = strcmp(what, "all") == 0;
	if (all || !strcmp(what, "userns"))
		unshare(CLONE_NEWUSER);
	if (all || !strcmp(what, "setns")) {
		int fd = open("/proc/self/ns/net", O_RDONLY);
		if (fd >= 0) {
			setns(fd, CLONE_NEWNET);
			close(fd);
		}
	}
	return 0;
}
