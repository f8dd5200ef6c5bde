package audit

import (
	"testing"

	"vigil.dev/vigil/event"
)

// The writer's per-cgroup state is bounded by the cgroups alive: each
// container that ends is forgotten, also when its last record is in the
// batch still open (then once that batch is written).
func TestForgetBoundsCgroupState(t *testing.T) {
	w, err := Open(testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const n = 500
	for round := 0; round < 3; round++ {
		for i := uint64(1); i <= n; i++ {
			cg := uint64(round)*n + i
			w.AppendEvent(&event.Event{CgroupID: cg, Seq: 1, Nr: 39})
			w.Append(KindLifecycle, cg, "c", Lifecycle{Event: "stop"})
		}
		if got := w.Stats().Cgroups; got != n {
			t.Fatalf("round %d: %d cgroups held with %d written to, want %d", round, got, n, n)
		}
		for i := uint64(1); i <= n; i++ {
			w.Forget(uint64(round)*n + i)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := w.Stats().Cgroups; got != 0 {
			t.Fatalf("round %d: %d cgroups held after all were forgotten and the batch written, want 0", round, got)
		}
	}
}
