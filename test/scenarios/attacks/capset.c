// capset: drops every capability of this process with capset.
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2] = {{0}};
	syscall(SYS_capget, &h, d);
	d[0].effective = d[0].permitted = d[0].inheritable = 0;
	d[1].effective = d[1].permitted = d[1].inheritable = 0;
	return syscall(SYS_capset, &h, d) == 0 ? 0 : 1;
}
