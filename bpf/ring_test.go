package bpf

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"vigil.dev/vigil/internal/privtest"
)

// TestRingInterruptBeforePark: an interrupt (Close, or the end of the
// reader's context) that comes after the reader's last look but before it
// arms its deadline still wakes it: the wait returns at once instead of
// parking for its whole timeout (up to the idle wait, 250 ms, before).
func TestRingInterruptBeforePark(t *testing.T) {
	privtest.Require(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := newRing(m)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()

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
