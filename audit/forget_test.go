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

// A writer reopened over an earlier log holds the counters of the
// cgroups that log wrote to (so that containers alive across a restart
// carry on): Held lists them, so the agent can forget those that are gone.
func TestHeldAfterReopen(t *testing.T) {
	opts := testOptions(t)
	w, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	for cg := uint64(1); cg <= 3; cg++ {
		w.AppendEvent(&event.Event{CgroupID: cg, Seq: 1, Nr: 39})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	held := map[uint64]bool{}
	for _, cg := range w.Held() {
		held[cg] = true
	}
	for cg := uint64(1); cg <= 3; cg++ {
		if !held[cg] {
			t.Fatalf("reopened writer holds %v, want cgroups 1..3 recovered", w.Held())
		}
	}
	w.Forget(1)
	w.Forget(2)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, cg := range w.Held() {
		if cg == 1 || cg == 2 {
			t.Errorf("cgroup %d still held after Forget: %v", cg, w.Held())
		}
	}
}
