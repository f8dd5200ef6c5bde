package detector

import (
	"testing"

	"vigil.dev/vigil/event"
)

// TestWriteExecuteMemoryJIT: W+X memory is a JIT runtime's normal work
// (the JVM's code cache, V8) but not when the container wrote that
// runtime's file itself, and never for other programs.
func TestWriteExecuteMemoryJIT(t *testing.T) {
	for _, tc := range []struct {
		name    string
		exe     string
		written bool
		want    bool
	}{
		{"jvm", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java", false, false},
		{"node", "/usr/bin/node", false, false},
		{"javac (a JVM launcher)", "/usr/bin/javac", false, false},
		{"jvm the container wrote", "/tmp/x/java", true, true},
		{"other program", "/opt/app/server", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			seq := uint64(0)
			obs := func(ev event.Event) []Verdict {
				seq++
				ev.Seq, ev.Time, ev.CgroupID, ev.TID = seq, t0, 4, ev.PID
				return e.Observe(&ev)
			}
			if tc.written {
				obs(event.Event{PID: 2, Nr: nr(t, "execve"), Path: "/bin/sh", Comm: "sh"})
				obs(event.Event{PID: 2, Nr: nr(t, "openat"), Path: tc.exe, Args: [6]uint64{0, 0, 0o1101}, Ret: 3})
			}
			obs(event.Event{PID: 10, Nr: nr(t, "execve"), Path: tc.exe, Comm: "x"})
			vs := obs(event.Event{PID: 10, Nr: nr(t, "mprotect"), Args: [6]uint64{0x7f0000000000, 4096, 7}})
			got := false
			for _, v := range vs {
				got = got || v.Rule == "write-execute-memory"
			}
			if got != tc.want {
				t.Errorf("write-execute-memory fired: %v, want %v (%d verdicts)", got, tc.want, len(vs))
			}
		})
	}
}

// TestEverydaySyscallsNoVerdict: calls everyday tools make in bulk raise
// nothing: an installer renaming 300 files into place in a second (pip,
// dpkg), and a netlink socket (getifaddrs, as npm's Node.js does).
func TestEverydaySyscallsNoVerdict(t *testing.T) {
	e := newEngine(t, Config{})
	seq := uint64(0)
	var vs []Verdict
	obs := func(ev event.Event) {
		seq++
		ev.Seq, ev.Time, ev.CgroupID, ev.TID = seq, t0, 5, ev.PID
		vs = append(vs, e.Observe(&ev)...)
	}
	obs(event.Event{PID: 10, Nr: nr(t, "execve"), Path: "/usr/bin/python3.11", Comm: "pip"})
	for i := 0; i < 300; i++ {
		obs(event.Event{PID: 10, Nr: nr(t, "rename"), Path: "/venv/lib/site-packages/pip/x.py.tmp", Path2: "/venv/lib/site-packages/pip/x.py"})
	}
	obs(event.Event{PID: 11, Nr: nr(t, "execve"), Path: "/usr/bin/node", Comm: "node"})
	obs(event.Event{PID: 11, Nr: nr(t, "socket"), Args: [6]uint64{16, 3 | 0x80000, 0}, Ret: 20})
	for _, v := range vs {
		t.Errorf("verdict %s: %s", v.Rule, v.Message)
	}
}
