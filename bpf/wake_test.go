package bpf

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/event"
)

// TestWakeGateMapsRunningProgram: the gate writes the last_wake the
// attached sys_exit program reads and writes: the program's forced wakeup
// stores its time there, and a second Monitor on the same pins (the
// pinned programs reused) maps the same variable as the first.
func TestWakeGateMapsRunningProgram(t *testing.T) {
	pin := testPinDir(t)
	m := loadMonitor(t, Config{PinDir: pin})
	if m.gate == nil {
		t.Fatal("no wake gate")
	}
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-%d-gate", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Remove()
	if err := m.Track(cg.ID); err != nil {
		t.Fatal(err)
	}
	defer m.Untrack(cg.ID)
	atomic.StoreUint64(m.gate.last, 0)
	before := monotonicNow()
	cmd := exec.Command("true")
	cmd.SysProcAttr = cg.SysProcAttr()
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if got := atomic.LoadUint64(m.gate.last); got < before || got > monotonicNow() {
		t.Fatalf("last_wake after a record = %d, want the record's wakeup time in [%d, now]", got, before)
	}

	m2 := loadMonitor(t, Config{PinDir: pin})
	if !m2.Reused() || len(m2.Replaced()) > 0 {
		t.Fatalf("second load: reused %v, replaced %v; want the pinned programs reused", m2.Reused(), m2.Replaced())
	}
	if m2.gate == nil {
		t.Fatal("no wake gate on the reused tracer")
	}
	atomic.StoreUint64(m2.gate.last, 12345)
	if got := atomic.LoadUint64(m.gate.last); got != 12345 {
		t.Fatalf("the reused tracer's gate wrote elsewhere: the first sees %d, want 12345", got)
	}
}

// TestWakeGateHoldsWakeups: while records flow and a busy reader looks on
// its timer, the kernel forces no wakeups on the ring (without the gate
// it forced one every WakeInterval), no record is lost, and after the
// flow stops the first new record still wakes an idle reader at once.
func TestWakeGateHoldsWakeups(t *testing.T) {
	cfg := Config{PollInterval: 2 * time.Millisecond, MaxPollInterval: 2 * time.Millisecond,
		WakeInterval: 5 * time.Millisecond, IdleAfter: 10 * time.Millisecond}
	m := loadMonitor(t, cfg)
	if m.gate == nil {
		t.Fatal("no wake gate")
	}
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-%d-hold", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Remove()
	if err := m.Track(cg.ID); err != nil {
		t.Fatal(err)
	}
	defer m.Untrack(cg.ID)

	// A second waiter on the ring counts the kernel's wakeups (edge
	// triggered: one readiness per wakeup).
	fd, err := unix.Dup(m.ring.fd)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET}); err != nil {
		t.Fatal(err)
	}
	var wakes atomic.Int64
	stopCount := make(chan struct{})
	counted := make(chan struct{})
	go func() {
		defer close(counted)
		evs := make([]unix.EpollEvent, 1)
		for {
			select {
			case <-stopCount:
				return
			default:
			}
			if n, _ := unix.EpollWait(ep, evs, 20); n > 0 {
				wakes.Add(1)
			}
		}
	}()
	defer func() { close(stopCount); <-counted }()

	var got atomic.Int64
	run := func(gate *wakeGate) (int64, int64, time.Duration) {
		m.gate = gate
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- m.Run(ctx, func(ev *event.Event) {
				if ev.CgroupID == cg.ID {
					got.Add(1)
				}
			})
		}()
		time.Sleep(30 * time.Millisecond) // the reader idles
		got.Store(0)
		w0 := wakes.Load()
		// Records for about 400 ms.
		cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 5000 ]; do i=$((i+1)); : > /dev/null; done")
		cmd.SysProcAttr = cg.SysProcAttr()
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		took := time.Since(t0)
		time.Sleep(50 * time.Millisecond)
		w := wakes.Load() - w0
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return w, got.Load(), took
	}
	gate := m.gate
	c0, err := m.Counters(cg.ID)
	if err != nil {
		t.Fatal(err)
	}
	open, n1, took1 := run(nil)
	held, n2, took2 := run(gate)
	c1, err := m.Counters(cg.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel wakeups: %d without the gate (%v of records), %d with it (%v); records %d + %d", open, took1, held, took2, n1, n2)
	if n1+n2 != int64(c1.Emitted-c0.Emitted) || c1.Dropped != c0.Dropped {
		t.Errorf("records read %d, emitted %d, dropped %d: want all read", n1+n2, c1.Emitted-c0.Emitted, c1.Dropped-c0.Dropped)
	}
	if open < int64(took1/(2*cfg.WakeInterval)) {
		t.Fatalf("without the gate: %d wakeups in %v, want about one per %v (the test sees none?)", open, took1, cfg.WakeInterval)
	}
	// The first record after the idle spell wakes the reader; the flow's
	// records do not (a few may, where a look found none).
	if held > 3+int64(took2/(10*cfg.WakeInterval)) {
		t.Errorf("with the gate: %d wakeups in %v, want at most a few", held, took2)
	}
	if held < 1 {
		t.Errorf("with the gate: no wakeup at all, want the one of the first record after the idle spell")
	}
}
