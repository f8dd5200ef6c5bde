package bench

import (
	"testing"

	"vigil.dev/vigil/internal/privtest"
)

// TestRunControl runs the response-ladder benchmark briefly: every action
// must take effect for every trigger (the figures are the benchmark's to
// report, not this test's to judge).
func TestRunControl(t *testing.T) {
	privtest.Require(t)
	rep, err := RunControl(ControlOptions{Triggers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Actions) != 4 {
		t.Fatalf("actions %+v", rep.Actions)
	}
	for _, a := range rep.Actions {
		if a.Failed != 0 || a.P50Ms <= 0 {
			t.Errorf("%s: %d of %d triggers failed (p50 %.3f ms)", a.Action, a.Failed, a.Triggers, a.P50Ms)
		}
	}
	if rep.Events == 0 || rep.Decision.P99Ns <= 0 {
		t.Errorf("no events or decisions measured: %+v", rep)
	}
}
