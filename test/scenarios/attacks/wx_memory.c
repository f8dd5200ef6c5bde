// wx_memory: maps memory writable and executable, copies a "ret" into it
// (shellcode style), and makes another mapping W+X with mprotect.
#include <string.h>
#include <sys/mman.h>

int main(void) {
	unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	p[0] = 0xc3; // ret
	unsigned char *q = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (q != MAP_FAILED)
		mprotect(q, 4096, PROT_READ | PROT_WRITE | PROT_EXEC);
	munmap(p, 4096);
	return 0;
}
