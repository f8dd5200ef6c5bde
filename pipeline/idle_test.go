package pipeline

import (
	"context"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

func (c *capture) counts() (flushes, gaps int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushes, len(c.gaps)
}

// TestIdleTimerOnlyWhileWorkWaits: an idle worker's timer does not fire
// (its ticker flushed the sinks ten times a second with nothing to
// flush); after work it fires within idleEvery, and keeps firing while a
// missing run waits to be settled, so the run becomes a gap with no
// further input; then it stops again.
func TestIdleTimerOnlyWhileWorkWaits(t *testing.T) {
	sink := &capture{}
	p := New(Config{Sinks: []Sink{sink}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)

	time.Sleep(3 * idleEvery)
	if f, _ := sink.counts(); f != 0 {
		t.Fatalf("idle worker flushed the sinks %d times in %v, want 0", f, 3*idleEvery)
	}

	p.Begin(7, 0)
	for _, seq := range []uint64{1, 2, 4} { // 3 never comes
		ev := event.Event{CgroupID: 7, Seq: seq, Nr: 39}
		p.Event(&ev)
	}
	p.EndBatch()
	// Within idleEvery; waited for longer, as a loaded machine runs the
	// worker late.
	waitFor(t, "a flush after events", func() bool { f, _ := sink.counts(); return f > 0 })
	deadline := time.Now().Add(settleAfter + 5*idleEvery)
	for {
		if _, g := sink.counts(); g == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the missing record is no gap %v after it was missed (settles after %v)", settleAfter+5*idleEvery, settleAfter)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(2 * idleEvery) // the pass after the settling one
	f0, _ := sink.counts()
	time.Sleep(4 * idleEvery)
	if f, _ := sink.counts(); f != f0 {
		t.Errorf("the worker kept flushing after everything settled: %d flushes in %v, want 0", f-f0, 4*idleEvery)
	}
}

// TestFinishWaitEndsWithoutInput: a finished cgroup whose last records
// never come gets its trailing gap after FinishWait with nothing else
// flowing (the idle pass comes back while it waits).
func TestFinishWaitEndsWithoutInput(t *testing.T) {
	sink := &capture{}
	p := New(Config{Sinks: []Sink{sink}, FinishWait: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	if !oneEventFinished(p, 9, 5) {
		t.Fatal("the finished cgroup still waits 2 s after Finish, want its trailing gap after 300ms")
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.gaps) != 1 || sink.gaps[0].FromSeq != 2 || sink.gaps[0].Count != 4 {
		t.Errorf("gaps %+v, want one trailing gap from 2, 4 records", sink.gaps)
	}
}

// TestWorkAfterFinishedCgroupNotDelayed: once only a finished cgroup's
// memory waits (its expiry is goneFor away), new work still gets its idle
// pass within idleEvery: its flush and the gap of its missing record do
// not wait for the expiry (they waited up to 30 s after any container
// ended).
func TestWorkAfterFinishedCgroupNotDelayed(t *testing.T) {
	sink := &capture{}
	p := New(Config{Sinks: []Sink{sink}, FinishWait: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)

	// Container A runs and ends: after FinishWait it is only remembered.
	if !oneEventFinished(p, 11, 1) {
		t.Fatal("container A not finished 2 s after Finish (FinishWait 50ms)")
	}
	time.Sleep(2 * idleEvery) // the pass that arms the expiry's timer
	f0, _ := sink.counts()

	// Container B loses record 3 of 1, 2, 4.
	p.Begin(12, 0)
	for _, seq := range []uint64{1, 2, 4} {
		ev := event.Event{CgroupID: 12, Seq: seq, Nr: 39}
		p.Event(&ev)
	}
	p.EndBatch()
	start := time.Now()
	waitFor(t, "flush of container B's events", func() bool { f, _ := sink.counts(); return f > f0 })
	waitFor(t, "gap for container B's missing record", func() bool { _, g := sink.counts(); return g == 1 })
	// waitFor gives up after 5 s; the expiry's timer was 30 s away. On a
	// loaded machine the pass may come late, never at the expiry.
	if d := time.Since(start); d > settleAfter+3*time.Second {
		t.Errorf("container B's gap came %v after its events, want about %v", d, settleAfter)
	}
}

// oneEventFinished hands p one record (seq 1) of cgroup cg, then finishes
// the cgroup at last, and reports whether the finish was done within 2 s.
func oneEventFinished(p *Pipeline, cg, last uint64) bool {
	p.Begin(cg, 0)
	ev := event.Event{CgroupID: cg, Seq: 1, Nr: 39}
	p.Event(&ev)
	p.EndBatch()
	finished := make(chan struct{})
	p.Finish(cg, last, func() { close(finished) })
	select {
	case <-finished:
		return true
	case <-time.After(2 * time.Second):
		return false
	}
}
