package detector

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/event"
)

// recorded loads the events of recorded benign scenario runs.
func recorded(b testing.TB, names ...string) []event.Event {
	b.Helper()
	var out []event.Event
	for _, n := range names {
		f, err := os.Open(filepath.Join("testdata", "scenarios", n+".jsonl.gz"))
		if err != nil {
			b.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			b.Fatal(err)
		}
		err = ReplayEvents(zr, n, func(ev *event.Event) error {
			c := *ev
			out = append(out, c)
			return nil
		})
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	return out
}

// latency measures per-event decision time over the events (after a
// warm-up pass) and reports p50 and p99.
func latency(b *testing.B, e *Engine, evs []event.Event) {
	for i := range evs {
		e.Observe(&evs[i])
	}
	lat := make([]time.Duration, len(evs))
	for i := range evs {
		t := time.Now()
		e.Observe(&evs[i])
		lat[i] = time.Since(t)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
}

func benchObserve(b *testing.B, cfg Config, evs []event.Event) {
	e, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	// On a thread of its own, whose CPU clock says what an event costs
	// the pipeline's worker: on a loaded machine the wall time per event
	// counts the time others ran.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	start, cpu0 := time.Now(), threadCPU()
	for i := 0; i < b.N; i++ {
		e.Observe(&evs[i%len(evs)])
	}
	el, cpu := time.Since(start), threadCPU()-cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/event")
	latency(b, e, evs)
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// BenchmarkObserveUnmatched is the hot path: events no rule names.
func BenchmarkObserveUnmatched(b *testing.B) {
	var evs []event.Event
	for i := 0; i < 4096; i++ {
		evs = append(evs, *ev(b, i+1, []string{"read", "write", "futex", "epoll_wait"}[i%4], nil))
	}
	benchObserve(b, Config{}, evs)
}

// BenchmarkObserveRecorded replays real workloads (shell tools, a compiler,
// a database-like program, a Go service) through the default rules.
func BenchmarkObserveRecorded(b *testing.B) {
	benchObserve(b, Config{}, recorded(b, "compile", "kv-database", "go-service", "text-search"))
}

// BenchmarkObserveRecordedModel adds a learned model (windows of 1000
// events scored as they close).
func BenchmarkObserveRecordedModel(b *testing.B) {
	train, err := eventUnits("train", mustGz(b, "idle-service"), DefaultWindowEvents)
	if err != nil {
		b.Fatal(err)
	}
	more, _ := eventUnits("train", mustGz(b, "shell-pipeline"), DefaultWindowEvents)
	m, err := Train(append(train, more...), TrainOptions{Name: "bench", WindowN: DefaultWindowEvents})
	if err != nil {
		b.Fatal(err)
	}
	benchObserve(b, Config{Model: m}, recorded(b, "compile", "kv-database", "go-service", "text-search"))
}

// tarRm is a recorded `tar -x` of 500 small files and `rm -rf` of them on
// tmpfs, four times (17,600 events: openat, newfstatat, utimensat, fchown,
// fchmod, write, close, unlinkat): the pipeline benchmark's tar-rm
// workload, path syscalls that many rules name.
func tarRm(b testing.TB) []event.Event { return recordedBench(b, "tar-rm") }

// tarRmRel is the same workload as the tracer records it now (vigil trace
// --json, 16,247 events): tar's openat names each file relative to a
// directory fd ("./f401.txt", the kernel's path beside it) and rm's
// unlinkat too ("f401.txt", no kernel path), so the engine resolves a
// relative path on most path events.
func tarRmRel(b testing.TB) []event.Event { return recordedBench(b, "tar-rm-rel") }

func recordedBench(b testing.TB, name string) []event.Event {
	b.Helper()
	f, err := os.Open(filepath.Join("testdata", "bench", name+".jsonl.gz"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		b.Fatal(err)
	}
	var out []event.Event
	if err := ReplayEvents(zr, name, func(ev *event.Event) error {
		out = append(out, *ev)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return out
}

// learnedModel trains a model of evs the way the agent learns a workload
// (a Learner's windows), as the pipeline benchmark does before it scores.
func learnedModel(b testing.TB, evs []event.Event) *Model {
	b.Helper()
	l := NewLearner(0, 0)
	for i := range evs {
		l.Observe(&evs[i])
	}
	m, err := l.Model(fmt.Sprintf("cgroup:%d", evs[0].CgroupID))
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkObserveTarRm replays the tar-rm stream through the default
// rules, as the agent runs them (FromFirstExec).
func BenchmarkObserveTarRm(b *testing.B) {
	benchObserve(b, Config{FromFirstExec: true}, tarRm(b))
}

// BenchmarkObserveTarRmModel adds a model learned from the same workload,
// as the pipeline benchmark's agent path scores it.
func BenchmarkObserveTarRmModel(b *testing.B) {
	evs := tarRm(b)
	benchObserve(b, Config{FromFirstExec: true, Model: learnedModel(b, evs)}, evs)
}

// BenchmarkObserveTarRmRel replays the relative-path tar-rm stream
// through the default rules (FromFirstExec).
func BenchmarkObserveTarRmRel(b *testing.B) {
	benchObserve(b, Config{FromFirstExec: true}, tarRmRel(b))
}

// BenchmarkObserveTarRmRelModel adds a model learned from the same stream.
func BenchmarkObserveTarRmRelModel(b *testing.B) {
	evs := tarRmRel(b)
	benchObserve(b, Config{FromFirstExec: true, Model: learnedModel(b, evs)}, evs)
}

func mustGz(b *testing.B, name string) *gzip.Reader {
	f, err := os.Open(filepath.Join("testdata", "scenarios", name+".jsonl.gz"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	zr, err := gzip.NewReader(f)
	if err != nil {
		b.Fatal(err)
	}
	return zr
}

// BenchmarkObserveParallel feeds one cgroup per goroutine: shards let the
// cores work in parallel.
func BenchmarkObserveParallel(b *testing.B) {
	evs := recorded(b, "compile", "kv-database")
	e, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	var next uint64
	var mu = make(chan struct{}, 1)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		mu <- struct{}{}
		next++
		cg := next
		<-mu
		local := make([]event.Event, len(evs))
		copy(local, evs)
		for i := range local {
			local[i].CgroupID = cg
		}
		i := 0
		for pb.Next() {
			e.Observe(&local[i%len(local)])
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

func ExampleEngine_Observe() {
	e, _ := New(Config{})
	nrBPF, _ := event.SyscallNr("bpf")
	for _, v := range e.Observe(&event.Event{Seq: 1, CgroupID: 42, PID: 7, TID: 7, Comm: "loader", Nr: int32(nrBPF), Ret: -1}) {
		fmt.Println(v.Class, v.Severity, v.Rule)
	}
	// Output: privesc high bpf-syscall
}

// BenchmarkScoreWindow is the cost of scoring one model window of 1000
// events (paid by the event that closes the window).
func BenchmarkScoreWindow(b *testing.B) {
	train, err := eventUnits("train", mustGz(b, "idle-service"), DefaultWindowEvents)
	if err != nil {
		b.Fatal(err)
	}
	more, _ := eventUnits("train", mustGz(b, "compile"), DefaultWindowEvents)
	m, err := Train(append(train, more...), TrainOptions{WindowN: DefaultWindowEvents})
	if err != nil {
		b.Fatal(err)
	}
	test, _ := eventUnits("test", mustGz(b, "kv-database"), DefaultWindowEvents)
	// the thread's CPU clock, as benchObserve: wall time counts others'
	// work on a loaded machine
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	cpu0 := threadCPU()
	for i := 0; i < b.N; i++ {
		m.Score(&test[i%len(test)])
	}
	b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N), "cpu-ns/window")
}

// BenchmarkTrainDay trains on as many windows as a workload's learning
// keeps (NewLearner's default cap, 5000 windows of 1000 events: the most a
// day of one workload gives a model), cut from recorded workloads, and
// reports the model file's size.
func BenchmarkTrainDay(b *testing.B) {
	var units []Unit
	for _, name := range []string{"compile", "kv-database", "go-service", "text-search", "idle-service", "shell-pipeline"} {
		u, err := eventUnits(name, mustGz(b, name), DefaultWindowEvents)
		if err != nil {
			b.Fatal(err)
		}
		units = append(units, u...)
	}
	day := make([]Unit, 0, 5000)
	for len(day) < 5000 {
		day = append(day, units[len(day)%len(units)])
	}
	b.ResetTimer()
	var m *Model
	for i := 0; i < b.N; i++ {
		var err error
		if m, err = Train(day, TrainOptions{WindowN: DefaultWindowEvents}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(buf.Len()), "model-bytes")
}
