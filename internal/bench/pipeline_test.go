package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/internal/privtest"
)

// TestRunPipeline runs the pipeline benchmark briefly on one workload: the
// report must hold both modes with positive figures, vigil's events and
// stages, and survive JSON (the figures are the benchmark's to report, not
// this test's to judge).
func TestRunPipeline(t *testing.T) {
	privtest.Require(t)
	rep, err := RunPipeline(PipelineOptions{Reps: 1, Workloads: []string{"getppid"}, Modes: []string{ModeVigil}, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Workloads) != 1 || len(rep.Workloads[0].Modes) != 2 {
		t.Fatalf("want getppid with modes untraced and vigil, got %+v", rep.Workloads)
	}
	for _, m := range rep.Workloads[0].Modes {
		if m.WallMs <= 0 || m.CPUMs <= 0 || m.WallRatio <= 0 || m.CPURatio <= 0 || m.WorkloadCPUMs <= 0 {
			t.Errorf("%s: non-positive figures: %+v", m.Mode, m)
		}
	}
	v := rep.Workloads[0].Modes[1]
	if v.Mode != ModeVigil || v.Events == 0 || v.EventsPerSec <= 0 || v.TracerCPUMs <= 0 || v.TracerNsPerEvent <= 0 {
		t.Errorf("vigil mode without events or tracer CPU: %+v", v)
	}
	if s := v.Stages; s == nil || s.Decode <= 0 || s.Detect <= 0 || s.Audit <= 0 {
		t.Errorf("vigil mode without stage times: %+v", s)
	}
	if v.DeliveryP99Us <= 0 {
		t.Errorf("no delivery latency: %+v", v)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"machine", "kernel", "cpus", "reps", "workloads"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON report without %q", k)
		}
	}
	var table bytes.Buffer
	rep.WriteTable(&table)
	if !strings.Contains(table.String(), "getppid") || !strings.Contains(table.String(), "decode") {
		t.Errorf("table without the workload or the stages:\n%s", table.String())
	}
}

// TestPipelineOptionsErrors: a bad workload or mode names the allowed
// values.
func TestPipelineOptionsErrors(t *testing.T) {
	privtest.Require(t) // RunPipeline checks the kernel first
	for _, o := range []PipelineOptions{{Workloads: []string{"nope"}}, {Modes: []string{"nope"}}} {
		_, err := RunPipeline(o)
		if err == nil || !strings.Contains(err.Error(), "allowed values are") {
			t.Errorf("%+v: err %v, want one naming the allowed values", o, err)
		}
	}
}
