// shocker: name_to_handle_at and open_by_handle_at (the "shocker" container
// escape) on a file of its own.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
	char path[] = "/tmp/vigil-shocker-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return 1;
	close(fd);
	struct file_handle *h = malloc(sizeof *h + MAX_HANDLE_SZ);
	h->handle_bytes = MAX_HANDLE_SZ;
	int mount_id;
	if (name_to_handle_at(AT_FDCWD, path, h, &mount_id, 0) == 0) {
		int mfd = open("/tmp", O_RDONLY | O_DIRECTORY);
		int f = open_by_handle_at(mfd, h, O_RDONLY);
		if (f >= 0)
			close(f);
		close(mfd);
	}
	unlink(path);
	return 0;
}
