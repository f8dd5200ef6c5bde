package plugin

import (
	"context"
	"testing"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/event"
)

// TestEnrichRunAsEnrich: a run of one cgroup's events enriched at once
// gets the container and leaves the sequence counters (highest number,
// numbers skipped) exactly as one Enrich per event, records out of order
// and gaps included; an unknown cgroup's run loses a stale container.
func TestEnrichRunAsEnrich(t *testing.T) {
	ctx := context.Background()
	seqs := []uint64{1, 2, 3, 7, 5, 6, 8, 12, 12, 9, 13, 20, 14}
	one, _, _ := newTestPlugin(annotations.NodeConfig{})
	run, _, _ := newTestPlugin(annotations.NodeConfig{})
	for _, p := range []*Plugin{one, run} {
		pod, ctr := testPod(map[string]string{"ebpf-monitor": "true"}), testCtr("c1", nil)
		p.CreateContainer(ctx, pod, ctr)
		if err := p.StartContainer(ctx, pod, ctr); err != nil {
			t.Fatal(err)
		}
	}
	evs := make([]event.Event, len(seqs))
	for i, s := range seqs {
		evs[i] = event.Event{CgroupID: 101, Seq: s, Container: &event.Container{ID: "stale"}}
		ev := evs[i]
		one.Enrich(&ev)
	}
	run.EnrichRun(evs[:4])
	run.EnrichRun(evs[4:])
	for i := range evs {
		if evs[i].Container == nil || evs[i].Container.ID != "c1" {
			t.Fatalf("event %d: container %+v", i, evs[i].Container)
		}
	}
	a, b := one.byCgroup[101], run.byCgroup[101]
	if a.lastSeq.Load() != 20 || b.lastSeq.Load() != 20 || a.gaps.Load() != b.gaps.Load() {
		t.Fatalf("per event: last %d gaps %d; by runs: last %d gaps %d", a.lastSeq.Load(), a.gaps.Load(), b.lastSeq.Load(), b.gaps.Load())
	}
	unknown := []event.Event{{CgroupID: 7, Seq: 1, Container: &event.Container{ID: "stale"}}, {CgroupID: 7, Seq: 2}}
	run.EnrichRun(unknown)
	if unknown[0].Container != nil || unknown[1].Container != nil {
		t.Errorf("unknown cgroup enriched: %+v %+v", unknown[0].Container, unknown[1].Container)
	}
}
