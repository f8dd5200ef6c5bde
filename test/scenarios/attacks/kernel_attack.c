// kernel_attack: the calls of kernel exploits, each made to fail or to do
// nothing: bpf with no attributes, finit_module of a bad fd, init_module of
// nothing, keyctl, userfaultfd, perf_event_open with no attributes.
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <string.h>

int main(int argc, char **argv) {
	const char *what = argc > 1 ? argv[1] : "all";
	int all = strcmp(what, "all") == 0;
	if (all || !strcmp(what, "bpf"))
		syscall(SYS_bpf, 5 /* BPF_PROG_LOAD */, NULL, 0);
	if (all || !strcmp(what, "module")) {
		syscall(SYS_finit_module, -1, "", 0);
		syscall(SYS_init_module, NULL, 0, "");
	}
	if (all || !strcmp(what, "exploit-prep")) {
		syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0);
		int fd = syscall(SYS_userfaultfd, 0);
		if (fd >= 0)
			close(fd);
		syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
	}
	return 0;
}
