package detector

import (
	"fmt"
	"strconv"
	"strings"
)

// constants are the symbolic values rules may use in numeric conditions
// (values from the Linux UAPI headers; identical on x86_64 and arm64).
var constants = map[string]int64{
	// open flags (asm-generic/fcntl.h)
	"O_RDONLY": 0, "O_WRONLY": 0x1, "O_RDWR": 0x2, "O_CREAT": 0x40, "O_EXCL": 0x80, "O_TRUNC": 0x200,
	"O_APPEND": 0x400, "O_NOFOLLOW": 0x20000, "O_PATH": 0x200000, "O_TMPFILE": 0x410000,
	// mmap/mprotect (asm-generic/mman-common.h)
	"PROT_READ": 0x1, "PROT_WRITE": 0x2, "PROT_EXEC": 0x4, "MAP_SHARED": 0x1, "MAP_PRIVATE": 0x2,
	"MAP_FIXED": 0x10, "MAP_ANONYMOUS": 0x20,
	// clone/unshare flags (linux/sched.h)
	"CLONE_VM": 0x100, "CLONE_FS": 0x200, "CLONE_FILES": 0x400, "CLONE_THREAD": 0x10000,
	"CLONE_NEWNS": 0x20000, "CLONE_NEWCGROUP": 0x2000000, "CLONE_NEWUTS": 0x4000000,
	"CLONE_NEWIPC": 0x8000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
	"CLONE_NEWNET": 0x40000000, "CLONE_NEWTIME": 0x80,
	// ptrace requests (linux/ptrace.h)
	"PTRACE_TRACEME": 0, "PTRACE_PEEKTEXT": 1, "PTRACE_PEEKDATA": 2, "PTRACE_POKETEXT": 4,
	"PTRACE_POKEDATA": 5, "PTRACE_POKEUSER": 6, "PTRACE_SETREGS": 13, "PTRACE_ATTACH": 16,
	"PTRACE_DETACH": 17, "PTRACE_SEIZE": 0x4206,
	// socket families and types (linux/socket.h, linux/net.h)
	"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17,
	"SOCK_STREAM": 1, "SOCK_DGRAM": 2, "SOCK_RAW": 3,
	// prctl options (linux/prctl.h)
	"PR_SET_NAME": 15, "PR_SET_DUMPABLE": 4, "PR_CAP_AMBIENT": 47, "PR_SET_SECCOMP": 22,
	// misc
	"AT_FDCWD": -100, "F_DUPFD": 0, "F_DUPFD_CLOEXEC": 1030,
}

// parseNumber reads a rule number: decimal, 0x hex, 0o/0 octal, a constant
// name, or several of those joined by '|'.
func parseNumber(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty number")
	}
	if strings.Contains(s, "|") {
		var v int64
		for _, part := range strings.Split(s, "|") {
			x, err := parseNumber(part)
			if err != nil {
				return 0, err
			}
			v |= x
		}
		return v, nil
	}
	if v, ok := constants[s]; ok {
		return v, nil
	}
	if v, err := strconv.ParseInt(s, 0, 64); err == nil {
		return v, nil
	}
	if v, err := strconv.ParseUint(s, 0, 64); err == nil {
		return int64(v), nil
	}
	return 0, fmt.Errorf("%q is not a number or a known constant (like O_WRONLY, PROT_EXEC, CLONE_NEWUSER, PTRACE_ATTACH, AF_PACKET)", s)
}
