// symlink_race: in its own temporary directory, points a link at
// /etc/shadow and swaps links in a tight loop (a TOCTOU race), then cleans up.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
	char dir[] = "/tmp/vigil-race-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char a[64], b[64], f[64];
	snprintf(a, sizeof a, "%s/a", dir);
	snprintf(b, sizeof b, "%s/b", dir);
	snprintf(f, sizeof f, "%s/file", dir);
	FILE *fp = fopen(f, "w");
	if (fp)
		fclose(fp);
	symlink("/etc/shadow", b);
	for (int i = 0; i < 400; i++) {
		unlink(a);
		symlink(i % 2 ? "/etc/shadow" : f, a);
		rename(a, b);
	}
	unlink(a);
	unlink(b);
	unlink(f);
	rmdir(dir);
	return 0;
}
