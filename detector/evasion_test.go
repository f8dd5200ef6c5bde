package detector

import (
	"fmt"
	"testing"

	"vigil.dev/vigil/event"
)

// step is one syscall of a synthetic attack: its name and how it differs
// from ev's defaults (pid 100, comm "app", ret 0).
type step struct {
	name string
	mod  func(e *event.Event)
}

const (
	oWronly = 0x1
	oDir    = 0x10000
	atCwd   = uint64(0xffffffffffffff9c) // AT_FDCWD as the register holds it
)

// openAt is openat(dirfd, path, flags) returning ret.
func openAt(dirfd uint64, path string, flags uint64, ret int64) step {
	return step{"openat", func(e *event.Event) { e.Args[0], e.Path, e.Args[2], e.Ret = dirfd, path, flags, ret }}
}

func chdir(path string, ret int64) step {
	return step{"chdir", func(e *event.Event) { e.Path, e.Ret = path, ret }}
}

func pidStep(pid uint32, s step) step {
	return step{s.name, func(e *event.Event) {
		if s.mod != nil {
			s.mod(e)
		}
		e.PID, e.TID = pid, pid
	}}
}

func unixConnect(path string) step {
	return step{"connect", func(e *event.Event) {
		e.Args[0] = 3
		e.Addr = event.Addr{Family: event.AFUnix, Path: path}
	}}
}

// run feeds steps to e in cgroup cg and returns the rules that fired on
// each step.
func run(t *testing.T, e *Engine, cg uint64, steps []step) [][]Verdict {
	t.Helper()
	out := make([][]Verdict, len(steps))
	for i, s := range steps {
		x := ev(t, i+1, s.name, s.mod)
		x.CgroupID = cg
		out[i] = e.Observe(x)
	}
	return out
}

func rulesOf(vs []Verdict) []string {
	var r []string
	for _, v := range vs {
		r = append(r, v.Rule)
	}
	return r
}

// TestPathEvasions replays spellings of sensitive paths that name the same
// file as the canonical one: each must raise the rules the canonical
// spelling raises, on its last step.
func TestPathEvasions(t *testing.T) {
	hook := []string{"kernel-hook-access", "sysctl-write"}
	hostRoot := []string{"host-root-via-proc"}
	for _, tc := range []struct {
		name  string
		steps []step
		want  []string
		path  string // the path the verdict's evidence must show
	}{
		{"canonical core_pattern", []step{openAt(atCwd, "/proc/sys/kernel/core_pattern", oWronly, 3)}, hook, "/proc/sys/kernel/core_pattern"},
		{"double slash", []step{openAt(atCwd, "//proc/sys/kernel/core_pattern", oWronly, 3)}, hook, "/proc/sys/kernel/core_pattern"},
		{"slashes inside", []step{openAt(atCwd, "/proc//sys///kernel/core_pattern", oWronly, 3)}, hook, "/proc/sys/kernel/core_pattern"},
		{"dot-dot", []step{openAt(atCwd, "/proc/sys/kernel/../kernel/core_pattern", oWronly, 3)}, hook, "/proc/sys/kernel/core_pattern"},
		{"dot", []step{openAt(atCwd, "/proc/sys/./kernel/core_pattern", oWronly, 3)}, hook, "/proc/sys/kernel/core_pattern"},
		{"dot-dot above the root", []step{openAt(atCwd, "/../../proc/sys/kernel/core_pattern", oWronly, 3)}, hook, "/proc/sys/kernel/core_pattern"},
		{"relative after chdir", []step{chdir("/tmp", 0), openAt(atCwd, "../proc/sys/kernel/core_pattern", oWronly, 3)}, hook, "/proc/sys/kernel/core_pattern"},
		{"canonical proc1 root", []step{openAt(atCwd, "/proc/1/root/etc/hostname", 0, 3)}, hostRoot, "/proc/1/root/etc/hostname"},
		{"cd /proc/1 && cat root/etc/hostname", []step{chdir("/proc/1", 0), openAt(atCwd, "root/etc/hostname", 0, 3)}, hostRoot, "/proc/1/root/etc/hostname"},
		{"relative chdirs", []step{chdir("/proc", 0), chdir("./1/", 0), openAt(atCwd, "root/etc/hostname", 0, 3)}, hostRoot, "/proc/1/root/etc/hostname"},
		{"relative chdir into root", []step{chdir("/proc/1", 0), chdir("root/etc", 0)}, hostRoot, "/proc/1/root/etc"},
		{"stat relative to cwd", []step{chdir("/proc/1", 0), {"newfstatat", func(e *event.Event) { e.Args[0], e.Path = atCwd, "root/etc/hostname" }}}, hostRoot, "/proc/1/root/etc/hostname"},
		{"openat on a dirfd of /proc/1", []step{openAt(atCwd, "/proc/1", oDir, 3), openAt(3, "root/etc/hostname", 0, 4)}, hostRoot, "/proc/1/root/etc/hostname"},
		{"dirfd opened relative", []step{chdir("/proc", 0), openAt(atCwd, "1", oDir, 5), openAt(5, "root/etc/hostname", 0, 4)}, hostRoot, "/proc/1/root/etc/hostname"},
		{"dirfd of a dirfd", []step{openAt(atCwd, "/proc", oDir, 3), openAt(3, "1", oDir, 4), openAt(4, "./root/etc/hostname", 0, 5)}, hostRoot, "/proc/1/root/etc/hostname"},
		{"fchdir", []step{openAt(atCwd, "/proc/1", oDir, 3), {"fchdir", func(e *event.Event) { e.Args[0] = 3 }}, openAt(atCwd, "root/etc/hostname", 0, 4)}, hostRoot, "/proc/1/root/etc/hostname"},
		{"dirfd moved by dup2 to a high fd", []step{
			openAt(atCwd, "/proc/1", oDir, 3),
			{"dup2", func(e *event.Event) { e.Args[0], e.Args[1], e.Ret = 3, 70000, 70000 }},
			{"close", func(e *event.Event) { e.Args[0] = 3 }},
			openAt(70000, "root/etc/hostname", 0, 4)}, hostRoot, "/proc/1/root/etc/hostname"},
		{"dirfd copied by dup", []step{
			openAt(atCwd, "/proc/1", oDir, 3),
			{"dup", func(e *event.Event) { e.Args[0], e.Ret = 3, 9 }},
			openAt(9, "root/etc/hostname", 0, 4)}, hostRoot, "/proc/1/root/etc/hostname"},
		{"dirfd copied by dup3", []step{
			openAt(atCwd, "/proc/1", oDir, 3),
			{"dup3", func(e *event.Event) { e.Args[0], e.Args[1], e.Ret = 3, 11, 11 }},
			openAt(11, "root/etc/hostname", 0, 4)}, hostRoot, "/proc/1/root/etc/hostname"},
		{"dirfd copied by fcntl F_DUPFD_CLOEXEC", []step{
			openAt(atCwd, "/proc/1", oDir, 3),
			{"fcntl", func(e *event.Event) { e.Args[0], e.Args[1], e.Ret = 3, 1030, 12 }},
			openAt(12, "root/etc/hostname", 0, 4)}, hostRoot, "/proc/1/root/etc/hostname"},
		{"cwd inherited by a child", []step{
			chdir("/proc/1", 0),
			{"clone", func(e *event.Event) { e.Args[0], e.Ret = 0x1200011, 101 }},
			pidStep(101, openAt(atCwd, "root/etc/hostname", 0, 3))}, hostRoot, "/proc/1/root/etc/hostname"},
		{"dirfd inherited by a child", []step{
			openAt(atCwd, "/proc/1", oDir, 3),
			{"fork", func(e *event.Event) { e.Ret = 102 }},
			pidStep(102, openAt(3, "root/etc/hostname", 0, 4))}, hostRoot, "/proc/1/root/etc/hostname"},
		{"dirfd survives exec without O_CLOEXEC", []step{
			openAt(atCwd, "/proc/1", oDir, 3),
			{"execve", func(e *event.Event) { e.Path = "/usr/bin/cat" }},
			openAt(3, "root/etc/hostname", 0, 4)}, hostRoot, "/proc/1/root/etc/hostname"},
		{"unix socket with dot-dot", []step{unixConnect("/run/../run/containerd/containerd.sock")}, []string{"runtime-socket-access"}, ""},
		{"unix socket with double slash", []step{unixConnect("//run/containerd//containerd.sock")}, []string{"runtime-socket-access"}, ""},
		{"relative unix socket", []step{chdir("/run/containerd", 0), unixConnect("containerd.sock")}, []string{"runtime-socket-access"}, ""},
		{"relative unix socket above", []step{chdir("/var/lib", 0), unixConnect("../../run/docker.sock")}, []string{"runtime-socket-access"}, ""},
		{"relative symlink target", []step{{"symlinkat", func(e *event.Event) {
			e.Path, e.Args[1], e.Path2 = "../../proc/1/root", atCwd, "/tmp/a/link"
		}}}, []string{"symlink-to-sensitive-path"}, "/proc/1/root"},
		{"relative exec", []step{chdir("/tmp", 0), {"execve", func(e *event.Event) { e.Path = "xmrig" }}}, []string{"miner-binary-exec"}, "/tmp/xmrig"},
		{"renameat relative to dirfd", []step{
			openAt(atCwd, "/etc", oDir, 3),
			{"renameat2", func(e *event.Event) { e.Args[0], e.Path, e.Args[2], e.Path2 = 3, "shadow", 3, "x" }}},
			[]string{"credential-files"}, "/etc/shadow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			out := run(t, e, 7, tc.steps)
			last := out[len(out)-1]
			got := rulesOf(last)
			for _, w := range tc.want {
				if !contains(got, w) {
					t.Errorf("rule %s did not fire on the last step (fired: %v)", w, got)
				}
			}
			for i, vs := range out[:len(out)-1] {
				if len(vs) > 0 {
					t.Errorf("step %d fired early: %v", i, rulesOf(vs))
				}
			}
			for _, v := range last {
				if tc.path != "" && v.Evidence[0].Path != tc.path {
					t.Errorf("%s: evidence path %q, want %q", v.Rule, v.Evidence[0].Path, tc.path)
				}
			}
		})
	}
}

// TestPathsNotGuessed checks that state the process no longer has does not
// resolve paths: closed fds, close-on-exec fds after an exec, failed
// chdirs, and fds of unknown processes.
func TestPathsNotGuessed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"closed dirfd", []step{openAt(atCwd, "/etc", oDir, 3), {"close", func(e *event.Event) { e.Args[0] = 3 }}, openAt(3, "shadow", 0, 4)}},
		{"close_range", []step{openAt(atCwd, "/etc", oDir, 3), {"close_range", func(e *event.Event) { e.Args[0], e.Args[1] = 3, ^uint64(0) }}, openAt(3, "shadow", 0, 4)}},
		{"O_CLOEXEC dirfd after exec", []step{openAt(atCwd, "/etc", oDir|0x80000, 3), {"execve", func(e *event.Event) { e.Path = "/usr/bin/cat" }}, openAt(3, "shadow", 0, 4)}},
		{"FD_CLOEXEC dirfd after exec", []step{openAt(atCwd, "/etc", oDir, 3),
			{"fcntl", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2] = 3, 2, 1 }},
			{"execve", func(e *event.Event) { e.Path = "/usr/bin/cat" }}, openAt(3, "shadow", 0, 4)}},
		{"fd reused by a socket", []step{openAt(atCwd, "/etc", oDir, 3), {"socket", func(e *event.Event) { e.Ret = 3 }}, openAt(3, "shadow", 0, 4)}},
		{"failed chdir", []step{chdir("/etc", -2), openAt(atCwd, "shadow", 0, 4)}},
		{"another process's dirfd", []step{openAt(atCwd, "/etc", oDir, 3), pidStep(555, openAt(3, "shadow", 0, 4))}},
		{"fchdir to an unknown fd", []step{chdir("/etc", 0), {"fchdir", func(e *event.Event) { e.Args[0] = 42 }}, openAt(atCwd, "shadow", 0, 4)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			for i, vs := range run(t, e, 7, tc.steps) {
				if len(vs) > 0 {
					t.Errorf("step %d fired %v: %s", i, rulesOf(vs), vs[0].Message)
				}
			}
		})
	}
}

// TestNormalizedEvidenceAndCallerEvent: the verdict shows the normalised
// path and the one the process gave; the caller's event is left alone.
func TestNormalizedEvidenceAndCallerEvent(t *testing.T) {
	e := newEngine(t, Config{})
	e.Observe(ev(t, 1, "chdir", func(e *event.Event) { e.Path = "/proc/1" }))
	x := ev(t, 2, "openat", func(e *event.Event) { e.Args[0], e.Path, e.Ret = atCwd, "root//etc/hostname", 3 })
	vs := e.Observe(x)
	if len(vs) != 1 || vs[0].Rule != "host-root-via-proc" {
		t.Fatalf("verdicts %v", rulesOf(vs))
	}
	evd := vs[0].Evidence[0]
	if evd.Path != "/proc/1/root/etc/hostname" || evd.UserPath != "root//etc/hostname" {
		t.Errorf("evidence path %q, given %q", evd.Path, evd.UserPath)
	}
	if vs[0].Message != "app openat /proc/1/root/etc/hostname" {
		t.Errorf("message %q", vs[0].Message)
	}
	if x.Path != "root//etc/hostname" {
		t.Errorf("the caller's event changed: %q", x.Path)
	}
	if sh := &e.shards[x.CgroupID%uint64(len(e.shards))]; sh.scratch.Path != "" || sh.scratch.Argv != nil {
		t.Errorf("the engine keeps the event: %+v", sh.scratch)
	}
}

// TestFromFirstExecKeepsTheRuntimesChdir: the runtime's chdir into the
// container's working directory comes before the first exec.
func TestFromFirstExecKeepsTheRuntimesChdir(t *testing.T) {
	e := newEngine(t, Config{FromFirstExec: true})
	out := run(t, e, 7, []step{
		chdir("/proc/1", 0),
		{"execve", func(e *event.Event) { e.Path = "/bin/cat" }},
		openAt(atCwd, "root/etc/hostname", 0, 3),
	})
	if !contains(rulesOf(out[2]), "host-root-via-proc") {
		t.Errorf("fired %v", rulesOf(out[2]))
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct{ base, p, want string }{
		{"", "/", "/"},
		{"", "/a/b", "/a/b"},
		{"", "//a", "/a"},
		{"", "/a/", "/a"},
		{"", "/a/./b", "/a/b"},
		{"", "/a/../b", "/b"},
		{"", "/..", "/"},
		{"", "/a/.", "/a"},
		{"", "/a/..", "/"},
		{"", "/.a/..b/...", "/.a/..b/..."},
		{"", "rel/./x", "rel/x"},
		{"", "../x", "../x"},
		{"/proc/1", "root", "/proc/1/root"},
		{"/proc/1", "../2/./root/", "/proc/2/root"},
		{"/", "etc", "/etc"},
		{"/a", "", ""},
	} {
		if got := resolve(tc.base, tc.p); got != tc.want {
			t.Errorf("resolve(%q, %q) = %q, want %q", tc.base, tc.p, got, tc.want)
		}
		if got := resolve(tc.base, tc.p); tc.want != "" && tc.want[0] == '/' && !isClean(got) {
			t.Errorf("isClean(%q) = false", got)
		}
	}
	for _, p := range []string{"", "a", "//", "/a//b", "/a/", "/./a", "/a/.", "/a/..", "/../a"} {
		if isClean(p) {
			t.Errorf("isClean(%q) = true", p)
		}
	}
}

// TestCleanPathsAllocateNothing: normalising a clean absolute path, and the
// fd table following an open/close cycle, allocate nothing.
func TestCleanPathsAllocateNothing(t *testing.T) {
	e := newEngine(t, Config{Shards: 1})
	open := ev(t, 1, "openat", func(e *event.Event) { e.Args[0], e.Path, e.Ret = atCwd, "/usr/lib/x86_64-linux-gnu/libc.so.6", 3 })
	stat := ev(t, 2, "newfstatat", func(e *event.Event) { e.Args[0], e.Path = atCwd, "/etc/ld.so.cache" })
	closeEv := ev(t, 3, "close", func(e *event.Event) { e.Args[0] = 3 })
	for i := 0; i < 3; i++ {
		e.Observe(open)
		e.Observe(stat)
		e.Observe(closeEv)
	}
	if n := testing.AllocsPerRun(200, func() {
		e.Observe(open)
		e.Observe(stat)
		e.Observe(closeEv)
	}); n != 0 {
		t.Errorf("%v allocations per open/stat/close", n)
	}
	if n := testing.AllocsPerRun(200, func() { resolve("", "/proc/sys/kernel/core_pattern") }); n != 0 {
		t.Errorf("%v allocations per clean path", n)
	}
}

// TestFdTableBounds: an fd table holds at most maxFds fds and maxFdBytes
// bytes, dropping the least recently used; a forked child shares the
// parent's table until one of them writes.
func TestFdTableBounds(t *testing.T) {
	p := &procState{}
	p.reset()
	for fd := int32(0); fd < maxFds+100; fd++ {
		p.writableFds().set(fd, fmt.Sprintf("/d/%d", fd), false)
	}
	if n := p.fds.l.len(); n != maxFds {
		t.Errorf("%d fds kept, want %d", n, maxFds)
	}
	if p.fdPath(0) != "" || p.fdPath(maxFds+99) != fmt.Sprintf("/d/%d", maxFds+99) {
		t.Errorf("the oldest fd should go first")
	}
	long := "/" + string(make([]byte, 0)) + fmt.Sprintf("%04000d", 0)
	for fd := int32(0); fd < 100; fd++ {
		p.writableFds().set(fd, long, false)
	}
	if p.fds.bytes > maxFdBytes {
		t.Errorf("%d bytes kept, bound %d", p.fds.bytes, maxFdBytes)
	}
	p.writableFds().set(5000, "/"+fmt.Sprintf("%05000d", 0), false)
	if p.fdPath(5000) != "" {
		t.Errorf("a path over %d bytes is kept", maxPathLen)
	}

	var ps procs
	parent := ps.get(1, true)
	parent.writableFds().set(3, "/proc/1", false)
	child := ps.get(2, true)
	child.merge(parent)
	if child.fds != parent.fds || parent.fds.refs != 2 {
		t.Fatalf("the child does not share the table")
	}
	child.writableFds().set(3, "/etc", false)
	if parent.fdPath(3) != "/proc/1" || child.fdPath(3) != "/etc" || parent.fds.refs != 1 {
		t.Errorf("copy on write: parent %q child %q refs %d", parent.fdPath(3), child.fdPath(3), parent.fds.refs)
	}
}

// TestExecutableNotComm: a process is judged by what it executed, whatever
// it calls itself (prctl PR_SET_NAME changes comm).
func TestExecutableNotComm(t *testing.T) {
	reverse := func(exe, comm string) []step {
		return []step{
			{"execve", func(e *event.Event) { e.Path, e.Comm = exe, "x" }},
			{"prctl", func(e *event.Event) { e.Args[0], e.Comm = 15, comm }}, // PR_SET_NAME
			{"socket", func(e *event.Event) { e.Comm, e.Ret = comm, 3 }},
			{"connect", func(e *event.Event) { e.Comm, e.Args[0] = comm, 3; e.Addr = inet("203.0.113.9", 4444) }},
			{"dup2", func(e *event.Event) { e.Comm, e.Args[0], e.Args[1], e.Ret = comm, 3, 1, 1 }},
		}
	}
	wx := func(exe, comm string) []step {
		return []step{
			{"execve", func(e *event.Event) { e.Path, e.Comm = exe, "x" }},
			{"prctl", func(e *event.Event) { e.Args[0], e.Comm = 15, comm }},
			{"mmap", func(e *event.Event) { e.Comm, e.Args[2], e.Args[3] = comm, 7, 0x22 }},
		}
	}
	for _, tc := range []struct {
		name  string
		steps []step
		rule  string
		fires bool
	}{
		{"bash renamed to a kernel thread's name", reverse("/bin/bash", "kworker/0:1"), "shell-redirects-to-socket", true},
		{"busybox renamed", reverse("/bin/busybox", "nginx"), "shell-redirects-to-socket", true},
		{"app renamed to bash", reverse("/usr/bin/app", "bash"), "shell-redirects-to-socket", false},
		{"bash's forked child renamed", append(reverse("/bin/bash", "bash")[:1], []step{
			{"clone", func(e *event.Event) { e.Args[0], e.Ret = 0x1200011, 101 }},
			pidStep(101, step{"prctl", func(e *event.Event) { e.Args[0], e.Comm = 15, "sleep" }}),
			pidStep(101, step{"socket", func(e *event.Event) { e.Comm, e.Ret = "sleep", 3 }}),
			pidStep(101, step{"connect", func(e *event.Event) { e.Comm, e.Args[0] = "sleep", 3; e.Addr = inet("203.0.113.9", 4444) }}),
			pidStep(101, step{"dup2", func(e *event.Event) { e.Comm, e.Args[0], e.Args[1], e.Ret = "sleep", 3, 0, 0 }}),
		}...), "shell-redirects-to-socket", true},
		{"an unseen exec falls back to comm", reverse("", "bash")[1:], "shell-redirects-to-socket", true},
		{"app renamed to an allowed JIT", wx("/tmp/payload", "java"), "write-execute-memory", true},
		{"allowed JIT under another name", wx("/usr/lib/jvm/bin/java", "C2 CompilerThre"), "write-execute-memory", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{Lists: map[string][]string{"wx_allowed_exes": {"*/java"}, "wx_allowed_comms": {"java"}}})
			out := run(t, e, 7, tc.steps)
			fired := contains(rulesOf(out[len(out)-1]), tc.rule)
			if fired != tc.fires {
				t.Errorf("%s fired = %v, want %v (fired %v)", tc.rule, fired, tc.fires, rulesOf(out[len(out)-1]))
			}
		})
	}
}

// TestForkFloodKeepsState: a process starts a reverse shell (connects out,
// puts the socket on its stdio), forks 5000 short-lived children, then
// execs a shell: the verdict still fires. Children that exit through
// exit_group are forgotten at once; killed ones (no exit record) age out
// of the bounded table instead of wiping it.
func TestForkFloodKeepsState(t *testing.T) {
	for _, exit := range []string{"exit_group", "killed"} {
		t.Run(exit, func(t *testing.T) {
			e := newEngine(t, Config{Shards: 1})
			seq := 0
			obs := func(pid uint32, name string, mod func(e *event.Event)) []Verdict {
				seq++
				x := ev(t, seq, name, mod)
				x.PID, x.TID = pid, pid
				return e.Observe(x)
			}
			obs(100, "socket", func(e *event.Event) { e.Ret = 3 })
			obs(100, "connect", func(e *event.Event) { e.Args[0] = 3; e.Addr = inet("203.0.113.9", 4444) })
			obs(100, "dup2", func(e *event.Event) { e.Args[0], e.Args[1], e.Ret = 3, 0, 0 })
			obs(100, "dup2", func(e *event.Event) { e.Args[0], e.Args[1], e.Ret = 3, 1, 1 })
			for i := uint32(0); i < 5000; i++ {
				child := 1000 + i
				obs(100, "clone", func(e *event.Event) { e.Args[0], e.Ret = 0x1200011, int64(child) })
				obs(child, "openat", func(e *event.Event) { e.Args[0], e.Path, e.Ret = atCwd, "/etc/hosts", 4 })
				obs(child, "getuid", func(e *event.Event) { e.Ret = 1000 })
				if exit == "exit_group" {
					obs(child, "exit_group", nil)
				}
			}
			vs := obs(100, "execve", func(e *event.Event) { e.Path, e.Comm = "/bin/sh", "sh" })
			if !contains(rulesOf(vs), "reverse-shell") {
				t.Errorf("reverse-shell did not fire after the fork flood (fired %v)", rulesOf(vs))
			}
			cg := e.shards[0].cgs[7]
			if n := cg.procs.l.len(); n > maxProcs {
				t.Errorf("%d processes tracked, bound %d", n, maxProcs)
			}
		})
	}
}

// TestVerdictStateOutlivesProcesses: throttling is per-cgroup state, kept
// when the process table forgets the process.
func TestVerdictStateOutlivesProcesses(t *testing.T) {
	e := newEngine(t, Config{Shards: 1})
	seq := 0
	obs := func(pid uint32, name string, mod func(e *event.Event)) []Verdict {
		seq++
		x := ev(t, seq, name, mod)
		x.PID, x.TID = pid, pid
		return e.Observe(x)
	}
	if vs := obs(100, "bpf", nil); len(vs) != 1 {
		t.Fatalf("first bpf: %v", rulesOf(vs))
	}
	for i := uint32(0); i < maxProcs+10; i++ {
		obs(1000+i, "getuid", nil)
	}
	if e.shards[0].cgs[7].procs.get(100, false) != nil {
		t.Fatalf("pid 100 should have been evicted")
	}
	if vs := obs(100, "bpf", nil); len(vs) != 0 {
		t.Errorf("the throttle was forgotten with the process: %v", rulesOf(vs))
	}
}

func TestLRU(t *testing.T) {
	var l lru[int, int]
	l.max = 3
	var evicted []int
	l.onEvict = func(k int, _ *int) { evicted = append(evicted, k) }
	for i := 1; i <= 3; i++ {
		v, fresh := l.put(i)
		if !fresh {
			t.Fatal("not fresh")
		}
		*v = i * 10
	}
	l.get(1)    // 2 is now the oldest
	l.put(4)    // evicts 2
	l.remove(3) // removed
	l.put(5)
	l.put(6) // evicts 1
	if fmt.Sprint(evicted) != "[2 3 1]" {
		t.Errorf("evicted %v", evicted)
	}
	var order []int
	l.each(func(k int, _ *int) { order = append(order, k) })
	if fmt.Sprint(order) != "[4 5 6]" || l.len() != 3 {
		t.Errorf("order %v", order)
	}
	if v := l.peek(4); v == nil {
		t.Errorf("4 missing")
	}
	l.clearAll()
	if l.len() != 0 || l.get(4) != nil {
		t.Errorf("clearAll left %d", l.len())
	}
}
