package detector

import (
	"testing"

	"vigil.dev/vigil/event"
)

// tstep is an rstep at a given kernel time (ns).
type tstep struct {
	at uint64
	rstep
}

func runTimed(t *testing.T, e *Engine, cg uint64, steps []tstep) []Verdict {
	t.Helper()
	var out []Verdict
	for j, st := range steps {
		x := ev(t, j+1, st.name, st.mod)
		x.CgroupID = cg
		x.KTime = st.at
		out = append(out, e.Observe(x)...)
	}
	return out
}

// procOf is the engine's state of pid in cgroup cg (nil when none).
func procOf(e *Engine, cg uint64, pid uint32) *procState {
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		c := sh.cgs[cg]
		sh.mu.Unlock()
		if c != nil {
			return c.procs.get(pid, false)
		}
	}
	return nil
}

// pyStdioSocket: python connects out and puts the socket on its stdio.
func pyStdioSocket(pid uint32) []rstep {
	s := []rstep{execOf(pid, "/usr/bin/python3"), sys(pid, "socket", func(e *event.Event) { e.Args[0], e.Ret = 2, 3 }),
		sys(pid, "connect", func(e *event.Event) { e.Args[0] = 3 })}
	for fd := uint64(0); fd < 3; fd++ {
		s = append(s, sys(pid, "dup2", func(e *event.Event) { e.Args[0], e.Args[1], e.Ret = 3, fd, int64(fd) }))
	}
	return s
}

// TestSlowVforkChildKeepsItsExec: a vfork child may take long before its
// exec (posix_spawn's open file action on a FIFO blocks); its state is
// the child's, not an earlier process's, and its exec is judged again.
// Another thread of the parent may go on making calls meanwhile.
func TestSlowVforkChildKeepsItsExec(t *testing.T) {
	for _, gap := range []uint64{1e6, 2.5e9, 30e9} {
		for _, busy := range []bool{false, true} {
			e := newEngine(t, Config{})
			var steps []tstep
			at := uint64(1e9)
			for _, s := range pyStdioSocket(100) {
				steps = append(steps, tstep{at, s})
				at += 1e6
			}
			steps = append(steps, tstep{at, sys(101, "chdir", func(e *event.Event) { e.Path = "/tmp" })})
			if busy {
				steps = append(steps, tstep{at + gap/2 + 1, sys(100, "close", func(e *event.Event) { e.TID, e.Args[0] = 102, 9 })})
			}
			steps = append(steps,
				tstep{at + gap, execOf(101, "/bin/sh", "/bin/sh", "-i")},
				tstep{at + gap + 1e6, vforkOf(100, 101)})
			if vs := runTimed(t, e, 1, steps); !contains(rules(vs), "reverse-shell") {
				t.Errorf("vfork child exec'ing %vs after its first call (another thread busy: %v): %v, want reverse-shell",
					float64(gap)/1e9, busy, rules(vs))
			}
		}
	}
}

// TestPidReuseByParentsLastEvent: a state seen before the forking
// parent's last event is an earlier process's, however recent.
func TestPidReuseByParentsLastEvent(t *testing.T) {
	e := newEngine(t, Config{})
	steps := []tstep{
		{1e9, execOf(300, "/usr/bin/app")}, {1e9 + 1e6, uidIs(300, 1000)}, // pid 300's earlier process, exit lost
		{1.5e9, execOf(200, "/usr/sbin/cron")}, {1.5e9 + 1e6, uidIs(200, 0)},
		{1.5e9 + 2e6, forkOf(200, 300)}, {1.5e9 + 3e6, sys(300, "setuid", func(e *event.Event) { e.Args[0] = 0 })},
	}
	for _, v := range runTimed(t, e, 1, steps) {
		if v.Rule == "setuid-root-attempt" {
			t.Errorf("a reused pid judged with the earlier process's uids: %s", v.Message)
		}
	}
}

// TestVforkExecEffects: a vfork child's exec reaches the engine before
// the fork that made it; the exec's effects apply to what the child
// inherits: a user's sudo may be root, and the close-on-exec fds are
// gone.
func TestVforkExecEffects(t *testing.T) {
	e := newEngine(t, Config{})
	resuid := sys(101, "setresuid", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2] = 0, 0, 0 })
	steps := []rstep{execOf(100, "/usr/bin/python3"), uidIs(100, 1000), sys(100, "getuid", func(e *event.Event) { e.Ret = 1000 }),
		sys(100, "openat", func(e *event.Event) { e.Path, e.Args[0], e.Args[2], e.Ret = "/etc/hosts", 0xffffff9c, oCloexec, 5 }),
		sys(100, "openat", func(e *event.Event) { e.Path, e.Args[0], e.Ret = "/var/log/app.log", 0xffffff9c, 6 }),
		execOf(101, "/usr/bin/sudo", "sudo", "id"), vforkOf(100, 101)}
	runOrdered(t, e, 1, 1e9, steps)
	child, parent := procOf(e, 1, 101), procOf(e, 1, 100)
	if child == nil || parent == nil {
		t.Fatal("no state for the parent or the child")
	}
	if got := child.uids; got != (uids{1000, -1, -1}) {
		t.Errorf("child's uids %+v after exec'ing sudo, want real 1000, effective and saved unknown", got)
	}
	for _, v := range runOrdered(t, e, 1, 2e9, []rstep{resuid}) {
		if v.Rule == "setuid-root-attempt" {
			t.Errorf("a user's sudo spawned by vfork: %s", v.Message)
		}
	}
	if p := child.fdPath(5); p != "" {
		t.Errorf("child keeps close-on-exec fd 5 (%s) past its exec", p)
	}
	if p := child.fdPath(6); p != "/var/log/app.log" {
		t.Errorf("child's fd 6 is %q, want the inherited /var/log/app.log", p)
	}
	if p := parent.fdPath(5); p != "/etc/hosts" {
		t.Errorf("parent's fd 5 is %q after its child's exec, want /etc/hosts", p)
	}

	// what the child learnt after its exec stays: a user's own program
	// that asked geteuid and asks for root still fires
	e = newEngine(t, Config{})
	exploit := []rstep{execOf(200, "/usr/bin/python3"), uidIs(200, 1000), execOf(201, "/tmp/x/exploit"), uidIs(201, 1000),
		vforkOf(200, 201), sys(201, "setresuid", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2] = 0, 0, 0 })}
	if vs := runOrdered(t, e, 2, 1e9, exploit); !contains(rules(vs), "setuid-root-attempt") {
		t.Errorf("a user's program spawned by vfork becoming root: %v, want setuid-root-attempt", rules(vs))
	}
}

// TestSocketStdioExecUnderShell: a program that connected out itself and
// put the socket on its stdio is judged whatever its parent; the commands
// a reverse shell runs (they inherit the shell's socket) are not.
func TestSocketStdioExecUnderShell(t *testing.T) {
	for _, parent := range []string{"/bin/sh", "/usr/bin/node"} {
		e := newEngine(t, Config{})
		steps := []rstep{execOf(90, parent), forkOf(90, 100)}
		steps = append(steps, pyStdioSocket(100)...)
		steps = append(steps, execOf(100, "/usr/bin/perl", "perl", "-e", "..."))
		if vs := runOrdered(t, e, 1, 1e9, steps); !contains(rules(vs), "socket-stdio-exec") {
			t.Errorf("python under %s connects and execs perl on the socket: %v, want socket-stdio-exec", parent, rules(vs))
		}
	}
	// a reverse shell's commands: the shell connected, its children
	// inherit the socket
	e := newEngine(t, Config{})
	steps := []rstep{execOf(100, "/bin/bash", "bash", "-i"), sys(100, "socket", func(e *event.Event) { e.Args[0], e.Ret = 2, 3 }),
		sys(100, "connect", func(e *event.Event) { e.Args[0] = 3 })}
	for fd := uint64(0); fd < 3; fd++ {
		steps = append(steps, sys(100, "dup2", func(e *event.Event) { e.Args[0], e.Args[1], e.Ret = 3, fd, int64(fd) }))
	}
	for i, exe := range []string{"/usr/bin/id", "/usr/bin/ls", "/usr/bin/cat"} {
		steps = append(steps, forkOf(100, uint32(101+i)), execOf(uint32(101+i), exe))
	}
	for _, v := range runOrdered(t, e, 2, 1e9, steps) {
		if v.Rule == "socket-stdio-exec" {
			t.Errorf("a reverse shell's command: %s", v.Message)
		}
	}
}
