// runtime_socket: tries to reach the container runtime's API socket
// (containerd, docker); connects and closes without sending anything.
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(void) {
	const char *paths[] = {"/run/containerd/containerd.sock", "/var/run/docker.sock", NULL};
	for (int i = 0; paths[i]; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		strncpy(a.sun_path, paths[i], sizeof a.sun_path - 1);
		connect(fd, (struct sockaddr *)&a, sizeof a);
		close(fd);
	}
	return 0;
}
