package audit

import (
	"errors"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

// TestFlushWaitsForBackgroundSync: under FsyncPolicy(d) the writer's
// goroutine syncs without its lock held. A Flush meanwhile must not return
// before that sync (and the signed head it writes) is done, and when that
// sync failed, it syncs itself: when Flush returns nil, the head names
// every record appended before it.
func TestFlushWaitsForBackgroundSync(t *testing.T) {
	o := testOptions(t)
	o.Fsync = FsyncPolicy(time.Hour) // the background never syncs on its own here
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	m := newMix()
	ev := &event.Event{}
	const n = 50
	for i := 0; i < n; i++ {
		m.next(ev)
		if err := w.AppendEvent(ev); err != nil {
			t.Fatal(err)
		}
	}
	// The background's sync is under way (timed: dirty cleared, io free).
	w.io.Lock()
	w.syncing, w.dirty, w.lastSync = true, false, time.Now()
	w.io.Unlock()
	flushed := make(chan error, 1)
	go func() { flushed <- w.Flush() }()
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) while the background's sync was under way", err)
	case <-time.After(200 * time.Millisecond):
	}
	// That sync failed: dirty again. Flush must sync itself.
	w.io.Lock()
	w.syncing, w.dirty = false, true
	w.syncDone.Broadcast()
	w.io.Unlock()
	select {
	case err := <-flushed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Flush did not return after the background's sync ended")
	}
	if h := w.Head(); h.Index < n {
		t.Errorf("after Flush the signed head names record %d, want at least %d", h.Index, n)
	}
}

// TestFatalErrorDrainsHandOff: after a fatal write error the writer's
// goroutine still takes the batches handed over, counting them as lost,
// and an appender waiting for room goes on instead of waiting for Close.
func TestFatalErrorDrainsHandOff(t *testing.T) {
	o := testOptions(t)
	o.BatchRecords, o.PendingBatches, o.FlushInterval = 10, 1, -1
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.io.Lock() // the writer is busy: the hand-off fills up
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		m := newMix()
		ev := &event.Event{}
		for i := 0; i < 20; i++ {
			m.next(ev)
			if w.AppendEvent(ev) != nil {
				return // the fatal error, once it is known
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		waiting := w.waiting
		w.mu.Unlock()
		if waiting > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	w.setErr(errors.New("disk gone"))
	w.io.Unlock()
	select {
	case w.kick <- struct{}{}: // as a cut does
	default:
	}
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("the appender still waits for room after the writer's fatal error")
	}
	deadline = time.Now().Add(5 * time.Second)
	for w.Stats().Lost < 10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if lost := w.Stats().Lost; lost < 10 {
		t.Errorf("lost %d records after the fatal error, want the batch handed over (10) counted", lost)
	}
}
