package pipeline

import (
	"fmt"
	"reflect"
	"sync"
	"testing"

	"vigil.dev/vigil/event"
)

// ctrSink records the container each event reached the sinks with.
type ctrSink struct {
	capture
	mu   sync.Mutex
	ctrs []string
}

func (s *ctrSink) Event(ev *event.Event) {
	s.mu.Lock()
	id := "-"
	if ev.Container != nil {
		id = ev.Container.ID
	}
	s.ctrs = append(s.ctrs, id)
	s.mu.Unlock()
}

// TestEnrichByRuns: the worker enriches each run of one cgroup's events
// in a batch with one call, before any of them reaches the audit log, the
// sinks or the detector, and every event gets its run's container.
func TestEnrichByRuns(t *testing.T) {
	cgs := []uint64{1, 1, 1, 2, 2, 1, 3, 3, 3, 3}
	var evs []event.Event
	next := map[uint64]uint64{}
	for _, cg := range cgs {
		next[cg]++
		evs = append(evs, event.Event{CgroupID: cg, Seq: next[cg]})
	}
	var runs []string
	sink := &ctrSink{}
	enrich := func(run []event.Event) {
		runs = append(runs, fmt.Sprintf("%d x%d", run[0].CgroupID, len(run)))
		c := &event.Container{ID: fmt.Sprintf("c%d", run[0].CgroupID)}
		for i := range run {
			if run[i].CgroupID != run[0].CgroupID {
				t.Errorf("run of cgroup %d holds an event of cgroup %d", run[0].CgroupID, run[i].CgroupID)
			}
			run[i].Container = c
		}
	}
	p := New(Config{Enrich: enrich, Sinks: []Sink{sink}})
	for i := range evs {
		ev := evs[i]
		p.Event(&ev)
	}
	p.EndBatch() // one batch
	p.process(<-p.batches)
	if want := []string{"1 x3", "2 x2", "1 x1", "3 x4"}; !reflect.DeepEqual(runs, want) {
		t.Errorf("runs %v, want %v", runs, want)
	}
	var want []string
	for _, cg := range cgs {
		want = append(want, fmt.Sprintf("c%d", cg))
	}
	if !reflect.DeepEqual(sink.ctrs, want) {
		t.Errorf("containers at the sinks %v, want %v", sink.ctrs, want)
	}
}
