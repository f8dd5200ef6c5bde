package detector

import (
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

// Evasions of the detection issue's known gaps: code loaded from a memfd
// without an exec, a file made with O_TMPFILE and linked into place, a
// keyring loop spread over short processes, ps printing environments.

const (
	protR, protRW, protRX = 1, 3, 5
	mapShared, mapPriv    = 1, 2
	mapFixedDenywrite     = 0x810 // MAP_FIXED|MAP_DENYWRITE, as ld.so maps segments
	oTmpfileRW            = 0x410002
)

func memfdOf(pid uint32, fd int64) rstep {
	return sys(pid, "memfd_create", func(e *event.Event) { e.Args[1], e.Ret = 1, fd })
}

func writeOf(pid uint32, name string, fd uint64, n int64) rstep {
	return sys(pid, name, func(e *event.Event) {
		e.Args[0], e.Args[2], e.Ret = fd, uint64(n), n
		if name == "copy_file_range" || name == "splice" {
			e.Args[0], e.Args[2] = 9, fd
		}
	})
}

func mmapOf(pid uint32, addr, length, prot, flags uint64, fd int64) rstep {
	return sys(pid, "mmap", func(e *event.Event) {
		e.Args[0], e.Args[1], e.Args[2], e.Args[3], e.Args[4] = addr, length, prot, flags, uint64(fd)
		if fd < 0 {
			e.Args[3] |= 0x20 // MAP_ANONYMOUS
		}
		e.Ret = int64(addr)
		if addr == 0 {
			e.Ret = 0x7f0000000000
		}
	})
}

func mprotectOf(pid uint32, addr, length, prot uint64) rstep {
	return sys(pid, "mprotect", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2] = addr, length, prot })
}

// openFdLink is open("/proc/self/fd/N"): the kernel's path of a memfd is
// "(unreachable)/", the process's spelling names the fd.
func openFdLink(pid uint32, link string, ret int64) rstep {
	return sys(pid, "openat", func(e *event.Event) {
		e.Path, e.PathUser, e.Flags, e.Args[0], e.Args[2], e.Ret = "(unreachable)/", link, event.UserDiffers, 0xffffff9c, 0o2000000, ret
	})
}

func tmpfileOf(pid uint32, dir string, ino string, fd int64) rstep {
	return sys(pid, "openat", func(e *event.Event) {
		e.Path, e.PathUser, e.Flags, e.Args[0], e.Args[2], e.Ret = dir+"/#"+ino, dir, event.UserDiffers, 0xffffff9c, oTmpfileRW, fd
	})
}

func linkatOf(pid uint32, dirfd uint64, from, to string, flags uint64) rstep {
	return sys(pid, "linkat", func(e *event.Event) {
		e.Args[0], e.Args[2], e.Args[4], e.Path, e.Path2 = dirfd, 0xffffff9c, flags, from, to
	})
}

func keyctlBurst(first, procs uint32, each int) []rstep {
	var s []rstep
	for p := first; p < first+procs; p++ {
		s = append(s, forkOf(first-1, p), execOf(p, "/usr/bin/keyctl", "keyctl", "newring", "r", "@s"))
		for range each {
			s = append(s, sys(p, "keyctl", func(e *event.Event) { e.Args[0], e.Args[1], e.Ret = 1, 0x7ffc1000, 1 }))
		}
		s = append(s, sys(p, "exit_group", nil))
	}
	return s
}

func init() {
	const addr = 0x7f1000000000
	for name, c := range map[string]behaviourCase{
		// a library written into a memfd and dlopen'd through
		// /proc/self/fd/N: ld.so maps its segments privately, no exec.
		// Near-misses: a memfd as shared memory; a JIT's W^X double
		// mapping, mapped executable from the start or made so with
		// mprotect (.NET); an ordinary dlopen of a library file.
		"memfd-code-mapping/dlopen": {rule: "memfd-code-mapping",
			fire: []rstep{execOf(100, "/usr/bin/python3"), memfdOf(100, 3), writeOf(100, "write", 3, 16384),
				openFdLink(100, "/proc/self/fd/3", 4), mmapOf(100, addr, 0x5000, protR, mapPriv|0x800, 4),
				mmapOf(100, addr+0x1000, 0x2000, protRX, mapPriv|mapFixedDenywrite, 4)},
			miss: []rstep{execOf(100, "/usr/bin/pulseaudio"), memfdOf(100, 3), sys(100, "ftruncate", func(e *event.Event) { e.Args[0], e.Args[1] = 3, 65536 }),
				mmapOf(100, 0, 65536, protRW, mapShared, 3), writeOf(100, "write", 5, 64),
				execOf(200, "/app/MyService"), memfdOf(200, 7), sys(200, "ftruncate", func(e *event.Event) { e.Args[0], e.Args[1] = 7, 1<<41 }),
				mmapOf(200, addr, 0x10000, 0, mapShared, 7), mprotectOf(200, addr, 0x1000, protRX),
				mmapOf(200, addr+0x100000, 0x1000, protRW, mapShared, 7), mmapOf(200, addr+0x200000, 0x1000, protRX, mapShared, 7),
				execOf(300, "/usr/bin/python3"), openOf(300, "/usr/lib/x86_64-linux-gnu/libffi.so.8", 0o2000000),
				mmapOf(300, addr, 0x8000, protRX, mapPriv|mapFixedDenywrite, 3)}},
		// shellcode written into a memfd and mapped for execution by the
		// loader itself, with sendfile from a downloaded file
		"memfd-code-mapping/mmap": {rule: "memfd-code-mapping",
			fire: []rstep{execOf(100, "/tmp/loader"), memfdOf(100, 5), writeOf(100, "sendfile", 5, 4096),
				mmapOf(100, 0, 4096, protRX, mapShared, 5)},
			miss: []rstep{execOf(100, "/tmp/loader"), memfdOf(100, 5), mmapOf(100, 0, 4096, protRW, mapShared, 5),
				writeOf(100, "write", 6, 4096), mmapOf(100, 0, 4096, protR, mapShared, 5)}},
		// mapped readable first, then made executable: filled through its
		// fd after the mapping, or mapped privately
		"memfd-code-mapping/mprotect": {rule: "memfd-code-mapping",
			fire: []rstep{execOf(100, "/tmp/loader"), memfdOf(100, 5), mmapOf(100, addr, 4096, protR, mapShared, 5),
				writeOf(100, "pwrite64", 5, 4096), mprotectOf(100, addr, 4096, protRX),
				execOf(200, "/tmp/loader"), memfdOf(200, 5), mmapOf(200, addr, 4096, protRW, mapPriv, 5), mprotectOf(200, addr, 4096, protRX)},
			miss: []rstep{execOf(100, "/tmp/loader"), memfdOf(100, 5), mmapOf(100, addr, 4096, protR, mapShared, 5),
				writeOf(100, "pwrite64", 5, 4096), sys(100, "munmap", func(e *event.Event) { e.Args[0], e.Args[1] = addr, 4096 }),
				mmapOf(100, addr, 4096, protRW, 0, -1), mprotectOf(100, addr, 4096, protRX)}},
		// the parent fills the memfd, its child maps it
		"memfd-code-mapping/forked": {rule: "memfd-code-mapping",
			fire: []rstep{execOf(100, "/usr/bin/perl"), memfdOf(100, 3), writeOf(100, "writev", 3, 8192), forkOf(100, 101),
				mmapOf(101, 0, 8192, protRX, mapShared, 3)},
			miss: []rstep{execOf(100, "/usr/bin/perl"), memfdOf(100, 3), writeOf(100, "writev", 3, 8192), forkOf(100, 101),
				mmapOf(101, 0, 8192, protR, mapShared, 3), sys(101, "close", func(e *event.Event) { e.Args[0] = 3 }),
				openOf(101, "/usr/lib/x86_64-linux-gnu/libm.so.6", 0o2000000), mmapOf(101, 0, 8192, protRX, mapPriv, 3)}},
		// O_TMPFILE: a file with no name, written, then linked into place
		// through its fd (AT_EMPTY_PATH) and run. Near-miss: a system
		// binary opened read-only and linked so.
		"drift-exec/tmpfile-empty-path": {rule: "drift-exec",
			fire: []rstep{execOf(100, "/usr/bin/perl"), tmpfileOf(100, "/tmp", "9978260", 3), writeOf(100, "write", 3, 8192),
				linkatOf(100, 3, "", "/usr/local/bin/app", atEmptyPath), forkOf(100, 101), execOf(101, "/usr/local/bin/app")},
			miss: []rstep{execOf(100, "/usr/bin/python3"), openOf(100, "/usr/bin/true", 0o2000000),
				linkatOf(100, 3, "", "/tmp/t", atEmptyPath), forkOf(100, 101), execOf(101, "/tmp/t")}},
		// ... or through /proc/self/fd/N with AT_SYMLINK_FOLLOW
		"drift-exec/tmpfile-proc-fd": {rule: "drift-exec",
			fire: []rstep{execOf(100, "/usr/bin/python3"), tmpfileOf(100, "/tmp", "9978261", 4), writeOf(100, "write", 4, 8192),
				linkatOf(100, 0xffffff9c, "/proc/self/fd/4", "/tmp/x", 0x400), forkOf(100, 101), execOf(101, "/tmp/x")},
			miss: []rstep{execOf(100, "/usr/bin/python3"), openOf(100, "/usr/bin/true", 0o2000000),
				linkatOf(100, 0xffffff9c, "/proc/self/fd/3", "/tmp/x", 0x400), forkOf(100, 101), execOf(101, "/tmp/x")}},
		// a keyring loop spread over 100 short processes, 4 calls each;
		// 40 PAM sessions (runuser, su) within 12 s stay under
		"keyring-container-burst": {rule: "keyring-container-burst",
			fire: append([]rstep{execOf(99, "/bin/sh")}, keyctlBurst(100, 100, 4)...),
			miss: func() []rstep {
				var s []rstep
				for i := range uint32(40) {
					s = append(s, runuserDrop(1000+10*i, "/usr/sbin/runuser")...)
				}
				return s
			}()},
		// ps's e option prints every listed process's environment
		"proc-environ-read/ps-e": {rule: "proc-environ-read",
			fire: []rstep{execOf(100, "/usr/bin/ps", "ps", "eww", "-p", "1"), openOf(100, "/proc/1/environ", 0),
				execOf(101, "/bin/ps", "ps", "auxe"), openOf(101, "/proc/4242/environ", 0),
				execOf(102, "/usr/bin/ps", "ps", "-p", "1", "e"), openOf(102, "/proc/1/environ", 0)},
			miss: []rstep{execOf(100, "/usr/bin/ps", "ps", "aux"), openOf(100, "/proc/4242/environ", 0),
				execOf(101, "/usr/bin/ps", "ps", "-ef"), openOf(101, "/proc/1/environ", 0),
				execOf(102, "/usr/bin/ps", "ps", "-eo", "pid,user,etime,cmd"), openOf(102, "/proc/1/environ", 0),
				execOf(103, "/usr/bin/ps", "ps", "--sort", "-pcpu", "-e"), openOf(103, "/proc/1/environ", 0)}},
	} {
		behaviourCases[name] = c
	}
	for name, class := range map[string]Class{
		"python-miner": ClassCPU, "memfd-dlopen": ClassPrivesc, "memfd-mprotect": ClassPrivesc, "tmpfile-drop": ClassPrivesc,
		"ps-environ": ClassFSEscape,
	} {
		scenarioClass[name] = class
	}
}

// TestKeyringBurstSpreadOverProcesses: the per-process count misses a
// loop spread over short processes; the container's count does not.
func TestKeyringBurstSpreadOverProcesses(t *testing.T) {
	e := newEngine(t, Config{})
	var rules []string
	for _, v := range runSteps(t, e, 77, append([]rstep{execOf(99, "/bin/sh")}, keyctlBurst(100, 100, 4)...)) {
		rules = append(rules, v.Rule)
	}
	got := strings.Join(rules, " ")
	if strings.Contains(got, "keyring-call-burst") {
		t.Errorf("keyring-call-burst fired on 4 calls per process: %s", got)
	}
	if strings.Count(got, "keyring-container-burst") != 1 {
		t.Errorf("want one keyring-container-burst verdict (throttled), got %s", got)
	}
}

func TestPsShowsEnv(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want bool
	}{
		{[]string{"ps", "e"}, true},
		{[]string{"ps", "eww"}, true},
		{[]string{"ps", "auxe"}, true},
		{[]string{"ps", "axjfe"}, true},
		{[]string{"ps", "-p", "1", "e"}, true},
		{[]string{"ps", "1", "e"}, true},
		{[]string{"ps", "--pid", "1", "ewww"}, true},
		{[]string{"ps", "o", "pid,user", "e"}, true},
		{[]string{"ps", "aux"}, false},
		{[]string{"ps", "-e"}, false},
		{[]string{"ps", "-ef"}, false},
		{[]string{"ps", "-eo", "pid,user,etime"}, false},
		{[]string{"ps", "-o", "user,etime", "-p", "1"}, false},
		{[]string{"ps", "-o", "user"}, false},
		{[]string{"ps", "o", "user,etime"}, false},
		{[]string{"ps", "ouser"}, false},
		{[]string{"ps", "--sort", "-user"}, false},
		{[]string{"ps", "--format=user", "ax"}, false},
		{[]string{"ps", "-U", "nobody", "-u", "daemon"}, false},
		{[]string{"ps", "U", "etcd"}, false},
		{[]string{"ps"}, false},
	} {
		if got := psShowsEnv(tc.argv); got != tc.want {
			t.Errorf("psShowsEnv(%q) = %v, want %v", tc.argv, got, tc.want)
		}
	}
}

// TestPoolConnectionRule: a Python miner (the runtime accounted for by
// the CPU rules) hashing on two cores while its pool connection, opened
// before, carries a message every 4 s; the near-misses: the same CPU with
// no connection, with a connection left idle, with a connection per
// request, with a connection accepted rather than made, and a service
// whose requests are bursts of syscalls.
func TestPoolConnectionRule(t *testing.T) {
	const fd = 5
	for _, tc := range []struct {
		name string
		// conn: 0 none, 1 connected out, 2 accepted, 3 a new one per message
		conn    int
		every   time.Duration // a read or write on it this often (0 never)
		burst   int           // extra syscalls per message (a request's work)
		cores   float64
		closeAt time.Duration // the connection is closed then (0 never)
		want    bool
		// after connecting: a forked child talks on the socket (fork), or
		// threads are made (clone3, which the engine takes for forks)
		fork, threads bool
	}{
		{"python miner", 1, 4 * time.Second, 0, 1.9, 0, true, false, false},
		{"one message a slot", 1, 6 * time.Second, 0, 1.9, 0, true, false, false},
		{"data job", 0, 0, 0, 1.9, 0, false, false, false},
		{"idle database connection", 1, 0, 0, 1.9, 0, false, false, false},
		{"one exchange then compute", 1, 0, 0, 1.9, 0, false, false, false},
		{"connection per request", 3, 2 * time.Second, 0, 1.9, 0, false, false, false},
		{"accepted connection", 2, 2 * time.Second, 0, 1.9, 0, false, false, false},
		{"web service under load", 1, 100 * time.Millisecond, 8, 1.9, 0, false, false, false},
		{"miner closed its connection", 1, 4 * time.Second, 0, 1.9, 10 * time.Second, false, false, false},
		{"half a core", 1, 4 * time.Second, 0, 0.3, 0, false, false, false},
		{"pool talked to from a forked child", 1, 4 * time.Second, 0, 1.9, 0, true, true, false},
		{"threads made after connecting", 1, 4 * time.Second, 0, 1.9, 0, true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			now := t0
			seq := uint64(0)
			obs := func(name string, mod func(*event.Event)) {
				seq++
				ev := event.Event{Seq: seq, Time: now, CgroupID: 3, PID: 10, TID: 10, Comm: "python3", Nr: nr(t, name)}
				if mod != nil {
					mod(&ev)
				}
				e.Observe(&ev)
			}
			obs("execve", func(e *event.Event) { e.Path = "/usr/bin/python3" })
			dial := func() {
				obs("socket", func(e *event.Event) { e.Args[0], e.Ret = 2, fd })
				obs("connect", func(e *event.Event) { e.Args[0], e.Addr = fd, inet("127.0.0.1", 8080) })
			}
			switch tc.conn {
			case 1:
				dial()
			case 2:
				obs("accept4", func(e *event.Event) { e.Ret, e.Addr = fd, inet("127.0.0.1", 40000) })
			}
			talker := uint32(10)
			if tc.fork {
				obs("clone", func(e *event.Event) { e.Args[0], e.Ret = 0x1200011, 11 })
				talker = 11
			}
			if tc.threads {
				for i := range 40 {
					obs("clone3", func(e *event.Event) { e.Ret = int64(20 + i) })
				}
				obs("socket", func(e *event.Event) { e.Args[0], e.Ret = 2, 7 })
				obs("connect", func(e *event.Event) { e.Args[0], e.Addr = 7, inet("10.0.0.9", 5432) })
			}
			if tc.name == "one exchange then compute" {
				obs("sendto", func(e *event.Event) { e.Args[0], e.Ret = fd, 80 })
				obs("recvfrom", func(e *event.Event) { e.Args[0], e.Ret = fd, 200 })
			}
			var fired []string
			var cpu uint64
			next := tc.every
			for s := 1; s <= 4*60; s++ { // 60 s
				el := time.Duration(s) * 250 * time.Millisecond
				now = t0.Add(el)
				for tc.every > 0 && el >= next {
					next += tc.every
					if tc.closeAt > 0 && el >= tc.closeAt {
						break
					}
					if tc.conn == 3 {
						obs("close", func(e *event.Event) { e.Args[0] = fd })
						dial()
					}
					obs("recvfrom", func(e *event.Event) { e.PID, e.TID, e.Args[0], e.Ret = talker, talker, fd, 120 })
					obs("sendto", func(e *event.Event) { e.PID, e.TID, e.Args[0], e.Ret = talker, talker, fd, 90 })
					for range tc.burst {
						obs("read", func(e *event.Event) { e.Args[0], e.Ret = 9, 4096 })
					}
				}
				if tc.closeAt > 0 && el == tc.closeAt {
					obs("close", func(e *event.Event) { e.Args[0] = fd })
				}
				cpu += uint64(tc.cores * 250e6)
				for _, v := range e.Sample(Sample{CgroupID: 3, Time: now, CPUUsageNs: cpu, Threads: 3}) {
					fired = append(fired, v.Rule)
				}
			}
			got := contains(fired, "cpu-spin-with-pool-connection")
			if got != tc.want {
				t.Errorf("cpu-spin-with-pool-connection fired %v, want %v (verdicts %v)", got, tc.want, fired)
			}
		})
	}
}
