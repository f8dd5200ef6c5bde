// capset: a process that is not permitted CAP_SYS_ADMIN asks for it. It
// first drops CAP_SYS_ADMIN from its own sets (a drop, which any process
// may do: a container started without it is in the same place), then asks
// capset for it back in every set. The kernel refuses (EPERM): capset never
// raises the permitted set.
#include <linux/capability.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2] = {{0}};
	if (syscall(SYS_capget, &h, d) != 0)
		return 1;
	unsigned bit = 1u << CAP_SYS_ADMIN; // 21: in d[0]
	d[0].effective &= ~bit;
	d[0].permitted &= ~bit;
	d[0].inheritable &= ~bit;
	if (syscall(SYS_capset, &h, d) != 0)
		return 1;
	d[0].effective |= bit;
	d[0].permitted |= bit;
	if (syscall(SYS_capset, &h, d) == 0) {
		printf("unexpected: capset raised the permitted set\n");
		return 1;
	}
	return 0;
}
