package detector

import (
	"testing"
	"time"
)

// TestSampleAllocatesNothing: a sample that raises no verdict allocates
// nothing (the agent feeds one per container every 250 ms to 2 s; at
// 10,000 containers a map per rule per sample was tens of thousands of
// allocations a second).
func TestSampleAllocatesNothing(t *testing.T) {
	e := newEngine(t, Config{})
	now := t0
	var cpu uint64
	next := func() Sample {
		now = now.Add(250 * time.Millisecond)
		cpu += 25e6 // 0.1 cores
		return Sample{CgroupID: 9, Time: now, CPUUsageNs: cpu, Threads: 5, CPUWaitNs: cpu / 10, CPUThrottledNs: cpu / 20}
	}
	// past the first minute: the baseline rule is evaluated too
	for i := 0; i < 300; i++ {
		if vs := e.Sample(next()); len(vs) > 0 {
			t.Fatalf("sample %d: %s: %s", i, vs[0].Rule, vs[0].Message)
		}
	}
	if n := testing.AllocsPerRun(1000, func() { e.Sample(next()) }); n != 0 {
		t.Fatalf("%.1f allocations per sample, want 0", n)
	}
}
