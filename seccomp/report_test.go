package seccomp

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"vigil.dev/vigil/internal/privtest"
)

// blockedServer starts a Server with a report queue of queue whose report
// callback waits until release is closed; it records the reports then.
func blockedServer(t *testing.T, fallback *Policy, queue int) (s *Server, rec *recorder, release func()) {
	t.Helper()
	rec = &recorder{}
	gate := make(chan struct{})
	report := func(n Notification) { <-gate; rec.add(n) }
	s, err := newServer(filepath.Join(t.TempDir(), "run", "seccomp.sock"), fallback, report, queue)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	var released bool
	release = func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(func() {
		release() // else Close waits for the callback forever
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s, rec, release
}

// TestServerAnswersBeforeReport: a report callback that blocks delays no
// answer; the reports arrive, in order, once it unblocks.
func TestServerAnswersBeforeReport(t *testing.T) {
	privtest.Require(t)
	requireX86(t)
	s, rec, release := blockedServer(t, &Policy{Default: Decision{Allow: true}}, reportQueue)
	dir := t.TempDir()
	var ops []op
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		ops = append(ops, op{"mkdirat", filepath.Join(dir, name)})
	}
	res := asRuncTimed(t, nil, s.Path(), "ctr", []string{specs.SeccompFdName}, []uint32{unix.SYS_MKDIRAT}, ops...)
	for i, took := range res.Took {
		if res.Errnos[i] != 0 {
			t.Errorf("mkdirat %d: %v", i, res.Errnos[i])
		}
		if took > 200*time.Millisecond {
			t.Errorf("mkdirat %d took %v with the report callback blocked, want < 200ms", i, took)
		}
	}
	if n := len(rec.all()); n != 0 {
		t.Fatalf("%d reports delivered through a blocked callback", n)
	}
	if _, _, decisions := s.Stats(); decisions != 5 {
		t.Errorf("%d decisions, want 5", decisions)
	}
	release()
	waitFor(t, "the five reports", func() bool { return len(rec.all()) == 5 })
	for _, n := range rec.all() {
		if n.Nr != unix.SYS_MKDIRAT || !n.Decision.Allow || n.Err != nil || n.Container != "ctr" {
			t.Errorf("report %+v, want ctr's allowed mkdirat", n)
		}
	}
	if d := s.ReportsDropped(); d != 0 {
		t.Errorf("%d reports dropped, want none", d)
	}
}

// TestServerReportQueueOverflow: with the callback blocked and the queue
// full, reports are dropped and counted, answers go on, and Close delivers
// what was queued without a deadlock.
func TestServerReportQueueOverflow(t *testing.T) {
	privtest.Require(t)
	requireX86(t)
	const queue, calls = 4, 50
	s, rec, release := blockedServer(t, &Policy{Default: Decision{Errno: syscall.EACCES}}, queue)
	ops := make([]op, calls)
	for i := range ops {
		ops[i] = op{"unshare", ""}
	}
	res := asRuncTimed(t, nil, s.Path(), "ctr", []string{specs.SeccompFdName}, []uint32{unix.SYS_UNSHARE}, ops...)
	for i, e := range res.Errnos {
		if e != syscall.EACCES {
			t.Errorf("unshare %d: %v, want EACCES", i, e)
		}
	}
	// One report is in the callback, queue wait; the rest are dropped. The
	// server answers before it reports, so the last answers can reach the
	// helper before their reports are queued or counted: wait for them.
	dropped := s.ReportsDropped()
	for deadline := time.Now().Add(2 * time.Second); dropped < calls-queue-1 && time.Now().Before(deadline); dropped = s.ReportsDropped() {
		time.Sleep(time.Millisecond)
	}
	if dropped < calls-queue-1 {
		t.Errorf("%d reports dropped, want at least %d", dropped, calls-queue-1)
	}
	release()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	// Close has delivered everything queued: nothing is lost uncounted.
	if got := uint64(len(rec.all())); got+dropped != calls {
		t.Errorf("%d reports delivered + %d dropped, want %d", got, dropped, calls)
	}
}
