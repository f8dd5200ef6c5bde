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
			time.Sleep(50 * time.Millisecond)
			r0 := reads.Load()
			time.Sleep(200 * time.Millisecond)
			if n := reads.Load() - r0; n != 0 {
				t.Fatalf("an idle writer read its clock %d times in 200ms (woken for nothing), want 0", n)
			}
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
			if d := time.Since(t0); d > 500*time.Millisecond {
				t.Errorf("the partial batch was written after %v, want about FlushInterval (20ms)", d)
			}
			for w.Stats().Syncs == syncs0 {
				if time.Since(t0) > 2*time.Second {
					t.Fatalf("what was written is not synced after 2s (fsync %v)", fsync)
				}
				time.Sleep(2 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
			r1 := reads.Load()
			time.Sleep(200 * time.Millisecond)
			if n := reads.Load() - r1; n != 0 {
				t.Errorf("after its write the writer read its clock %d times in 200ms, want 0 (asleep again)", n)
			}
		})
	}
}
