package detector

import (
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

// TestFromFirstExec: the runtime's setup of a container (before the
// workload's first execve) is not inspected; the workload is, and so is a
// container marked Started after an agent restart.
func TestFromFirstExec(t *testing.T) {
	e, err := New(Config{FromFirstExec: true})
	if err != nil {
		t.Fatal(err)
	}
	pivot, _ := event.SyscallNr("pivot_root")
	execve, _ := event.SyscallNr("execve")
	ev := func(cg uint64, seq uint64, nr int, ret int64) *event.Event {
		return &event.Event{CgroupID: cg, Seq: seq, PID: 7, TID: 7, Comm: "runc:[2:INIT]", Nr: int32(nr), Ret: ret,
			Path: ".", Path2: ".", Time: time.Unix(int64(seq), 0)}
	}
	if vs := e.Observe(ev(1, 1, pivot, 0)); len(vs) != 0 {
		t.Fatalf("setup before the first exec raised %v", vs)
	}
	if vs := e.Observe(ev(1, 2, execve, -2)); len(vs) != 0 {
		t.Fatalf("a failed exec raised %v", vs)
	}
	if vs := e.Observe(ev(1, 3, pivot, 0)); len(vs) != 0 {
		t.Fatalf("a failed exec opened the gate: %v", vs)
	}
	e.Observe(ev(1, 4, execve, 0))
	if vs := e.Observe(ev(1, 5, pivot, 0)); len(vs) == 0 {
		t.Fatal("pivot_root after the workload's exec raised nothing")
	}
	e.Started(2)
	if vs := e.Observe(ev(2, 1, pivot, 0)); len(vs) == 0 {
		t.Fatal("pivot_root in a container marked started raised nothing")
	}
	// Without the option every event is inspected.
	all, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if vs := all.Observe(ev(3, 1, pivot, 0)); len(vs) == 0 {
		t.Fatal("pivot_root raised nothing without FromFirstExec")
	}
}
