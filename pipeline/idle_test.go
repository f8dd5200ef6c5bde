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
	time.Sleep(2 * idleEvery)
	if f, _ := sink.counts(); f == 0 {
		t.Fatalf("no flush %v after events, want one within %v", 2*idleEvery, idleEvery)
	}
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
	p.Begin(9, 0)
	ev := event.Event{CgroupID: 9, Seq: 1, Nr: 39}
	p.Event(&ev)
	p.EndBatch()
	finished := make(chan struct{})
	p.Finish(9, 5, func() { close(finished) })
	select {
	case <-finished:
	case <-time.After(2 * time.Second):
		t.Fatal("the finished cgroup still waits 2 s after Finish, want its trailing gap after 300ms")
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.gaps) != 1 || sink.gaps[0].FromSeq != 2 || sink.gaps[0].Count != 4 {
		t.Errorf("gaps %+v, want one trailing gap from 2, 4 records", sink.gaps)
	}
}
