package bpf

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"vigil.dev/vigil/internal/privtest"
)

// TestRingInterruptBeforePark: an interrupt (Close, or the end of the
// reader's context) that comes after the reader's last look but before it
// arms its deadline still wakes it: the wait returns at once instead of
// parking for its whole timeout (up to the idle wait, 250 ms, before).
func TestRingInterruptBeforePark(t *testing.T) {
	r := newTestRing(t)

	// Not interrupted: an empty ring parks for the timeout.
	start := time.Now()
	if err := r.wait(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Fatalf("an empty ring's wait returned after %v, want about its 50ms timeout", d)
	}

	for name, wait := range map[string]func(time.Duration) error{"wait": r.wait, "waitWake": r.waitWake} {
		r.resetDeadlines()
		r.interrupt() // before the wait arms its deadline
		start := time.Now()
		if err := wait(3 * time.Second); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s interrupted before it parked returned after %v, want at once", name, d)
		}
	}

	// A new run (resetDeadlines) parks again.
	r.resetDeadlines()
	start = time.Now()
	if err := r.waitWake(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("after resetDeadlines, waitWake returned after %v, want about its 50ms timeout", d)
	}
}

// TestRingSleep: a look's sleep waits its time on the timer, again and
// again (each read clears the expiry), allocates nothing, and an
// interrupt ends it at once.
func TestRingSleep(t *testing.T) {
	r := newTestRing(t)
	r.resetDeadlines()
	for i := 0; i < 3; i++ {
		start := time.Now()
		if err := r.sleep(20 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 19*time.Millisecond || d > time.Second {
			t.Fatalf("sleep %d of 20ms took %v", i, d)
		}
	}
	if n := testing.AllocsPerRun(20, func() { r.sleep(100 * time.Microsecond) }); n != 0 {
		t.Errorf("%v allocations per sleep, want 0", n)
	}
	r.interrupt()
	start := time.Now()
	if err := r.sleep(3 * time.Second); err == nil {
		t.Error("an interrupted sleep returned no error")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("an interrupted sleep returned after %v, want at once", d)
	}
}

// BenchmarkRingSleep is the CPU of the process per look of an idle
// reader (a 1 ms sleep on the timer), the runtime's work included.
func BenchmarkRingSleep(b *testing.B) {
	r := newTestRing(b)
	r.resetDeadlines()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		if err := r.sleep(time.Millisecond); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/look")
}

func processCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestRingSleepExpiryBeforeWait: a timer that expires between its arming
// and the wait (the reader descheduled for longer than the interval, as
// on a loaded node) still ends the sleep. The poller drops a readiness it
// saw before the wait began, so a sleep that parked without reading the
// timer first waited forever, and the agent stopped reading its ring (its
// e2e tests saw no events and /healthz failed under load).
func TestRingSleepExpiryBeforeWait(t *testing.T) {
	r := newTestRing(t)
	r.resetDeadlines()
	// The timer expires during the pause, and the runtime's poller, idle
	// meanwhile, takes the expiry's readiness before the wait begins.
	r.armed = func() { time.Sleep(20 * time.Millisecond) }
	for i := 0; i < 5; i++ {
		done := make(chan error, 1)
		go func() { done <- r.sleep(time.Millisecond) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("sleep %d: %v", i, err)
			}
		case <-time.After(2 * time.Second):
			r.interrupt()
			<-done
			t.Fatalf("sleep %d of 1ms whose timer expired before the wait: still parked after 2s", i)
		}
	}
}

// newTestRing is a reader of a new 64 KiB ring buffer, closed (with its
// map) when the test ends; it skips when not root.
func newTestRing(tb testing.TB) *ring {
	tb.Helper()
	privtest.Require(tb)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 1 << 16})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	r, err := newRing(m)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.close)
	return r
}
