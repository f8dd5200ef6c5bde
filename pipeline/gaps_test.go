package pipeline

import (
	"testing"

	"vigil.dev/vigil/event"
)

// throttled is a cgroup over its budget: of every three numbers the
// tracer hands out, only the first reaches the pipeline.
func throttled(n int) []event.Event {
	evs := make([]event.Event, 0, n)
	for i := 0; i < n; i++ {
		evs = append(evs, event.Event{CgroupID: 9, Seq: uint64(3*i + 1), Nr: 110})
	}
	return evs
}

// TestThrottledGaps: a cgroup that misses numbers every few records, far
// more runs than maxMissing, gets each run as one gap, in order, and none
// twice.
func TestThrottledGaps(t *testing.T) {
	const n = 20*maxMissing + 7
	sink := &capture{}
	p := run(t, Config{Sinks: []Sink{sink}}, throttled(n), func(p *Pipeline) { p.Begin(9, 0) })
	if len(sink.gaps) != n-1 {
		t.Fatalf("%d gaps, want %d", len(sink.gaps), n-1)
	}
	for i, g := range sink.gaps {
		if want := (Gap{CgroupID: 9, FromSeq: uint64(3*i + 2), Count: 2}); g != want {
			t.Fatalf("gap %d is %+v, want %+v", i, g, want)
		}
	}
	if st := p.Stats(); st.Lost != uint64(2*(n-1)) || st.Events != n {
		t.Errorf("stats %+v: want %d events, %d lost", st, n, 2*(n-1))
	}
}

// TestThrottledGapsNoAllocations: once its list of missing runs is full,
// a throttled cgroup's records allocate nothing on the worker.
func TestThrottledGapsNoAllocations(t *testing.T) {
	p := New(Config{})
	b := &batch{evs: throttled(BatchSize)}
	next := uint64(1)
	feed := func() {
		for i := range b.evs {
			b.evs[i].Seq = next
			next += 3
		}
		evs := b.evs
		p.process(b)
		b.evs = evs
	}
	for i := 0; i < 4; i++ {
		feed()
	}
	if a := testing.AllocsPerRun(100, feed); a != 0 {
		t.Errorf("%v allocations per batch of %d throttled records, want 0", a, BatchSize)
	}
	c := p.cgs[9]
	if len(c.missing) != maxMissing || cap(c.spans) > 4*maxMissing {
		t.Errorf("%d runs waiting in an array of %d, want %d in at most %d", len(c.missing), cap(c.spans), maxMissing, 4*maxMissing)
	}
	if got, want := p.Stats().Lost, 2*(next/3-1-maxMissing); got != want {
		t.Errorf("lost %d, want %d", got, want)
	}
}
