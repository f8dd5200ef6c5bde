#define _GNU_SOURCE
// setuid_root: drops to nobody, then tries to get root back (fails: EPERM).
#include <stdio.h>
#include <unistd.h>

int main(void) {
	if (setuid(65534) != 0)
		return 1;
	if (setuid(0) == 0 || setresuid(0, 0, 0) == 0) {
		printf("unexpected: regained root\n");
		return 1;
	}
	return 0;
}
