package audit

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestIdleWriterNotWoken: with nothing pending, the writer's goroutine is
// not woken (its ticker ran the timed work, which reads the clock, every
// FlushInterval/2); an appended record still gets its partial batch
// written within about FlushInterval, and then the writer sleeps again.
// With Fsync an interval, what was written is synced within it.
func TestIdleWriterNotWoken(t *testing.T) {
	for _, fsync := range []FsyncPolicy{FsyncBatch, FsyncPolicy(30 * time.Millisecond)} {
		t.Run(fsync.String(), func(t *testing.T) {
			var reads atomic.Int64
			o := testOptions(t)
			o.FlushInterval = 20 * time.Millisecond
			o.SegmentAge = -1
			o.Fsync = fsync
			o.Now = func() time.Time { reads.Add(1); return time.Now() }
			w, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			// What opening left (a first sync of an interval) is done
			// once the clock stays unread for a while; a loaded machine
			// runs the writer late. A writer woken by a ticker never
			// gets there.
			quiet(t, &reads, "an idle writer")
			syncs0 := w.Stats().Syncs
			t0 := time.Now()
			if err := w.Append(KindPolicy, 0, "", map[string]int{"i": 1}); err != nil {
				t.Fatal(err)
			}
			for w.Stats().Written < 1 {
				if time.Since(t0) > 2*time.Second {
					t.Fatalf("after 2s the record is not written; FlushInterval is 20ms")
				}
				time.Sleep(2 * time.Millisecond)
			}
			if d := time.Since(t0); d > time.Second {
				t.Errorf("the partial batch was written after %v, want about FlushInterval (20ms)", d)
			}
			for w.Stats().Syncs == syncs0 {
				if time.Since(t0) > 2*time.Second {
					t.Fatalf("what was written is not synced after 2s (fsync %v)", fsync)
				}
				time.Sleep(2 * time.Millisecond)
			}
			quiet(t, &reads, "the writer after its write")
		})
	}
}

// quiet waits until reads stays still for 200 ms, and fails when it does
// not within 3 s: the writer then keeps waking for nothing.
func quiet(t *testing.T, reads *atomic.Int64, who string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); ; {
		r0 := reads.Load()
		time.Sleep(200 * time.Millisecond)
		if reads.Load() == r0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s kept reading its clock for 3 s (woken for nothing), want it asleep", who)
		}
	}
}
