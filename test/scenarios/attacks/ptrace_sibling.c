// ptrace_sibling: forks a sleeping child, attaches to it with ptrace, reads
// a word of its memory, detaches and kills it.
#include <signal.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
	pid_t child = fork();
	if (child == 0) {
		sleep(5);
		_exit(0);
	}
	usleep(50000);
	if (ptrace(PTRACE_ATTACH, child, 0, 0) == 0) {
		waitpid(child, NULL, 0);
		ptrace(PTRACE_PEEKDATA, child, (void *)&main, 0);
		ptrace(PTRACE_DETACH, child, 0, 0);
	}
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return 0;
}
