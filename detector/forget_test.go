package detector

import (
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

// The engine's state is per cgroup, and Forget drops it all: what a
// container leaves behind when it ends is nothing, whatever it did
// (events, samples, the gate of its first exec).
func TestForgetDropsEveryCgroupsState(t *testing.T) {
	e := newEngine(t, Config{FromFirstExec: true})
	const n = 300
	for cg := uint64(1); cg <= n; cg++ {
		for i, name := range []string{"execve", "openat", "read", "close", "getpid"} {
			e.Observe(ev(t, i+1, name, func(ev *event.Event) { ev.CgroupID = cg; ev.Path = "/etc/hostname" }))
		}
		e.Sample(Sample{CgroupID: cg + n, Time: t0.Add(time.Second), CPUUsageNs: 1e6, Threads: 1})
		e.Started(cg + 2*n)
	}
	if got := e.Cgroups(); got != 3*n {
		t.Fatalf("%d cgroups held, want %d (events, samples, started)", got, 3*n)
	}
	for cg := uint64(1); cg <= 3*n; cg++ {
		e.Forget(cg)
	}
	if got := e.Cgroups(); got != 0 {
		t.Fatalf("%d cgroups held after each was forgotten, want 0", got)
	}
}
