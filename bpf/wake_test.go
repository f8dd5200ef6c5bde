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
	cg := trackedCgroup(t, m, "gate")
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

// TestWakeGateHoldsWakeups: a look that found records holds back the
// kernel's forced wakeups for WakeInterval (without the gate the first
// record of a burst forces one), an empty look lets the next record wake
// the reader again, and a reader with the gate loses no record. The gate
// is driven here by hand, with no reader between the bursts, so that the
// count does not depend on when a loaded machine schedules the reader.
func TestWakeGateHoldsWakeups(t *testing.T) {
	// A long WakeInterval: a burst ends long before a held-back wakeup is
	// due, however slowly it runs.
	cfg := Config{PollInterval: 2 * time.Millisecond, MaxPollInterval: 2 * time.Millisecond,
		WakeInterval: 2 * time.Second, IdleAfter: 3 * time.Second}
	m := loadMonitor(t, cfg)
	if m.gate == nil {
		t.Fatal("no wake gate")
	}
	cg := trackedCgroup(t, m, "hold")

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
	wakeups := func() int {
		evs := make([]unix.EpollEvent, 1)
		n := 0
		for {
			k, err := unix.EpollWait(ep, evs, 50)
			if err == unix.EINTR {
				continue
			}
			if k <= 0 {
				return n
			}
			n++
		}
	}
	var got int64
	drain := func() { m.ring.drain(func(b []byte) { got++ }) }
	burst := func() {
		t.Helper()
		cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 50 ]; do i=$((i+1)); : > /dev/null; done")
		cmd.SysProcAttr = cg.SysProcAttr()
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
	}
	c0, err := m.Counters(cg.ID)
	if err != nil {
		t.Fatal(err)
	}

	// No gate: the burst's first record forces a wakeup.
	atomic.StoreUint64(m.gate.last, 0)
	drain()
	wakeups()
	burst()
	if n := wakeups(); n < 1 {
		t.Fatalf("without the gate: %d wakeups for a burst after a pause, want at least 1", n)
	}
	drain()

	// A look found records: the next burst forces none (last_wake cleared
	// first, as if no wakeup had come for long: the look's store holds).
	atomic.StoreUint64(m.gate.last, 0)
	m.gate.held = false
	m.gate.looked(true)
	burst()
	if n := wakeups(); n != 0 {
		t.Errorf("after a look that found records: %d wakeups for a burst, want 0 (held back)", n)
	}
	drain()

	// An empty look: the next record wakes the reader again.
	m.gate.looked(false)
	if v := atomic.LoadUint64(m.gate.last); v != 0 {
		t.Fatalf("after an empty look last_wake = %d, want 0", v)
	}
	burst()
	if n := wakeups(); n < 1 {
		t.Errorf("after an empty look: %d wakeups for a burst, want at least 1", n)
	}
	drain()

	// A reader with the gate takes every record of a longer flow.
	m.gate.open()
	ctx, cancel := context.WithCancel(context.Background())
	var read atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, func(ev *event.Event) {
			if ev.CgroupID == cg.ID {
				read.Add(1)
			}
		})
	}()
	for i := 0; i < 20; i++ {
		burst()
	}
	c1, err := m.Counters(cg.ID)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if total := got + read.Load(); total != int64(c1.Emitted-c0.Emitted) || c1.Dropped != c0.Dropped {
		t.Errorf("records read %d, emitted %d, dropped %d: want all read", total, c1.Emitted-c0.Emitted, c1.Dropped-c0.Dropped)
	}
}

// trackedCgroup is a new cgroup that m tracks, untracked and removed when
// the test ends.
func trackedCgroup(t *testing.T, m *Monitor, name string) *Cgroup {
	t.Helper()
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-%d-%s", os.Getpid(), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cg.Remove() })
	if err := m.Track(cg.ID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Untrack(cg.ID) })
	return cg
}
