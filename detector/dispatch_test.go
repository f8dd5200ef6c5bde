package detector

import (
	"sort"
	"sync"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

// TestDispatcherMatchesObserve feeds the same events to Observe and to a
// Dispatcher and expects the same verdicts.
func TestDispatcherMatchesObserve(t *testing.T) {
	evs := recorded(t, "bash-dev-tcp", "symlink-race", "ptrace-sibling", "kv-database")
	// spread over several cgroups, keeping each run's order
	for i := range evs {
		evs[i].CgroupID = evs[i].CgroupID*10 + uint64(i%3)
	}
	direct := newEngine(t, Config{Shards: 2})
	var want []string
	for i := range evs {
		for _, v := range direct.Observe(&evs[i]) {
			want = append(want, v.ID)
		}
	}
	if len(want) < 5 {
		t.Fatalf("only %d verdicts to compare", len(want))
	}
	e := newEngine(t, Config{Shards: 2})
	var mu sync.Mutex
	var got []string
	d := e.NewDispatcher(16, func(v *Verdict) {
		mu.Lock()
		got = append(got, v.ID)
		mu.Unlock()
	})
	for i := range evs {
		c := evs[i]
		d.Submit(&c)
		c.Path, c.Comm = "/clobbered", "clobbered" // the producer reuses its event
		if i%1000 == 0 {
			d.Flush()
		}
	}
	d.Close()
	sort.Strings(want)
	sort.Strings(got)
	if len(got) != len(want) {
		t.Fatalf("dispatcher gave %d verdicts, Observe %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("verdict ids differ at %d: %s vs %s", i, got[i], want[i])
		}
	}
}

func BenchmarkDispatcher(b *testing.B) {
	evs := recorded(b, "compile", "kv-database", "go-service", "text-search")
	for i := range evs {
		evs[i].CgroupID = uint64(i % 2) // two cgroups, one per shard
	}
	e, err := New(Config{Shards: 2})
	if err != nil {
		b.Fatal(err)
	}
	d := e.NewDispatcher(64, func(*Verdict) {})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var c event.Event
	for i := 0; i < b.N; i++ {
		c = evs[i%len(evs)]
		d.Submit(&c)
	}
	d.Close()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
