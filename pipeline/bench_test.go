package pipeline

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// benchEvents is a recorded workload renumbered so that it can be fed
// again and again: each pass continues every cgroup's sequence numbers.
type benchEvents struct {
	evs  []event.Event
	next map[uint64]uint64
	// step is how many numbers each record takes (1; 3 for a cgroup over
	// its budget, whose two records in three the tracer drops).
	step uint64
}

func newBenchEvents(b *testing.B, scenarios ...string) *benchEvents {
	be := &benchEvents{next: map[uint64]uint64{}, step: 1}
	for _, s := range scenarios {
		be.evs = append(be.evs, recorded(b, s)...)
	}
	return be
}

// fill copies the i-th event into ev with the next sequence number of its
// cgroup, as the tracer's reader hands a reused event.
func (be *benchEvents) fill(i int, ev *event.Event) {
	*ev = be.evs[i%len(be.evs)]
	be.next[ev.CgroupID] += be.step
	ev.Seq = be.next[ev.CgroupID]
}

// BenchmarkPipeline is the worker's whole path per event as the agent runs
// it by default: the reader's hand-over in batches of 100 (a drain of the
// ring), the audit log with its default durability, the detector with the
// default rules, no per-event export. Recorded workloads: a compile, a
// shell pipeline, a web server; "throttled" drops two records in three, as
// the tracer does for a cgroup over its budget (a gap per record). Run:
//
//	go test -run '^$' -bench Pipeline -benchmem ./pipeline/
func BenchmarkPipeline(b *testing.B) {
	for _, c := range []struct {
		name          string
		audit, detect bool
		sinks         func() []Sink
		drain         int    // events per hand-over
		step          uint64 // numbers per record (benchEvents.step)
	}{
		{"worker", false, false, nil, 100, 1},
		{"worker/drain=10", false, false, nil, 10, 1},
		{"worker/drain=1000", false, false, nil, 1000, 1},
		{"worker/throttled", false, false, nil, 100, 3},
		{"audit", true, false, nil, 100, 1},
		{"audit/throttled", true, false, nil, 100, 3},
		{"detect", false, true, nil, 100, 1},
		{"default", true, true, nil, 100, 1},
		{"default+events", true, true, func() []Sink { return []Sink{NewJSONLines(discard{}, true)} }, 100, 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			be := newBenchEvents(b, "compile", "shell-pipeline", "web-server")
			be.step = c.step
			cfg := Config{}
			if c.audit {
				dir := b.TempDir()
				w, err := audit.Open(audit.Options{Dir: filepath.Join(dir, "log"), Logf: func(string, ...any) {}})
				if err != nil {
					b.Fatal(err)
				}
				defer w.Close()
				cfg.Audit = w
			}
			if c.detect {
				eng, err := detector.New(detector.Config{FromFirstExec: false})
				if err != nil {
					b.Fatal(err)
				}
				cfg.Detector = eng
			}
			if c.sinks != nil {
				cfg.Sinks = c.sinks()
			}
			p := New(cfg)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go p.Run(ctx)
			var ev event.Event
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				be.fill(i, &ev)
				p.Event(&ev)
				if i%c.drain == c.drain-1 {
					p.EndBatch()
					if len(p.batches) > cap(p.batches)/2 {
						p.Sync() // the reader is faster: wait rather than drop
					}
				}
			}
			p.EndBatch()
			p.Sync()
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/event")
			p.Close()
			if st := p.Stats(); st.QueueDropped > 0 || st.AuditErrors > 0 {
				b.Fatalf("lost events: %+v", st)
			}
		})
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// cpuTime is the CPU time of the whole process (every goroutine's thread).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHandOver is the reader's side per event: a record decoded into
// the reader's own event and copied into the batch ("copy"), or decoded
// into the batch's next slot ("slot"). No worker: full batches are
// dropped and reused.
func BenchmarkHandOver(b *testing.B) {
	for _, slot := range []bool{false, true} {
		name := "copy"
		if slot {
			name = "slot"
		}
		b.Run(name, func(b *testing.B) {
			p := New(Config{QueueBatches: 1})
			var own event.Event
			path := []byte("/usr/lib/x86_64-linux-gnu/libc.so.6")
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				ev := &own
				if slot {
					ev = p.Slot()
				}
				// What the decoder writes.
				*ev = event.Event{KTime: uint64(i), CgroupID: 7, Seq: uint64(i), PID: 10, TID: 11, Nr: 257}
				ev.Time = time.Unix(0, int64(i))
				ev.Args[0], ev.Args[1] = 3, 0x80000
				ev.Comm = "tar"
				ev.Path = p.String(path)
				p.Event(ev)
				if i%100 == 99 {
					p.EndBatch()
				}
			}
		})
	}
}
