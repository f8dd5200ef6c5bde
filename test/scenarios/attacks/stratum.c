// stratum: connects to a mining pool (the harness's listener on
// 127.0.0.1:3333) and sends a stratum subscribe, then burns a little CPU.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(3333)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
		const char *msg = "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"vigil-test/1.0\"]}\n";
		write(fd, msg, strlen(msg));
		char buf[256];
		read(fd, buf, sizeof buf);
	}
	close(fd);
	volatile unsigned long x = 0;
	for (unsigned long i = 0; i < 50000000ul; i++)
		x += i * i;
	return 0;
}
