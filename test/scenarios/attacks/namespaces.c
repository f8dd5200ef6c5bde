// namespaces: unshare of a user namespace (only this process's, which then
// exits), setns into this process's own network namespace (a no-op), and
// (only when asked: clone3) clone3 of a child in new user and mount
// namespaces, with the flags in its struct clone_args; the child exits.
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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
	if (!strcmp(what, "clone3")) {
		struct clone_args ca;
		memset(&ca, 0, sizeof(ca));
		ca.flags = CLONE_NEWUSER | CLONE_NEWNS;
		ca.exit_signal = SIGCHLD;
		long pid = syscall(SYS_clone3, &ca, sizeof(ca));
		if (pid == 0)
			_exit(0);
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
	return 0;
}
