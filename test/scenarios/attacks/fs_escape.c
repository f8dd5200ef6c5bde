// fs_escape: container escape attempts that fail or only read: mount and
// umount of a path that does not exist, the host root through /proc/1/root,
// core_pattern and a cgroup v1 release_agent opened read-only.
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

int main(int argc, char **argv) {
	const char *what = argc > 1 ? argv[1] : "all";
	int all = strcmp(what, "all") == 0;
	if (all || !strcmp(what, "mount")) {
		mount("none", "/nonexistent-vigil-scenario", "proc", 0, NULL);
		umount2("/nonexistent-vigil-scenario", MNT_DETACH);
	}
	if (all || !strcmp(what, "proc1root")) {
		int fd = open("/proc/1/root/etc/hostname", O_RDONLY);
		if (fd >= 0)
			close(fd);
		access("/proc/1/root/etc/shadow", R_OK);
	}
	if (all || !strcmp(what, "core_pattern")) {
		int fd = open("/proc/sys/kernel/core_pattern", O_RDONLY);
		if (fd >= 0)
			close(fd);
	}
	if (all || !strcmp(what, "release_agent")) {
		const char *paths[] = {"/sys/fs/cgroup/memory/release_agent", "/sys/fs/cgroup/release_agent",
				       "/sys/fs/cgroup/systemd/release_agent", NULL};
		for (int i = 0; paths[i]; i++) {
			int fd = open(paths[i], O_RDONLY);
			if (fd >= 0)
				close(fd);
		}
	}
	return 0;
}
