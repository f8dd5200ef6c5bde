package pipeline

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// recorded reads a recorded scenario of the detector's test data.
func recorded(t testing.TB, name string) []event.Event {
	t.Helper()
	f, err := os.Open(filepath.Join("../detector/testdata/scenarios", name+".jsonl.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	if err := detector.ReplayEvents(zr, name, func(ev *event.Event) error {
		evs = append(evs, *ev)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		t.Fatalf("%s: no events", name)
	}
	return evs
}

// capture is a sink that keeps what it is given.
type capture struct {
	mu       sync.Mutex
	events   []uint64 // seqs
	verdicts []detector.Verdict
	actions  []control.Record
	gaps     []Gap
	flushes  int
}

func (c *capture) Event(ev *event.Event) {
	c.mu.Lock()
	c.events = append(c.events, ev.Seq)
	c.mu.Unlock()
}
func (c *capture) Verdict(v *detector.Verdict) {
	c.mu.Lock()
	c.verdicts = append(c.verdicts, *v)
	c.mu.Unlock()
}
func (c *capture) Action(r control.Record) {
	c.mu.Lock()
	c.actions = append(c.actions, r)
	c.mu.Unlock()
}
func (c *capture) Gap(g Gap)    { c.mu.Lock(); c.gaps = append(c.gaps, g); c.mu.Unlock() }
func (c *capture) Flush() error { c.mu.Lock(); c.flushes++; c.mu.Unlock(); return nil }

// fakeControl decides "alert" for detect and "kill-process" for enforce.
type fakeControl struct {
	executed []string
	forgot   []uint64
}

func (f *fakeControl) Decide(v *detector.Verdict, t control.Target) []control.Action {
	v.Mode = string(t.Mode)
	switch t.Mode {
	case annotations.ModeDetect:
		v.WouldAct = []string{"kill-process"}
	case annotations.ModeEnforce:
		v.Actions = []string{"kill-process"}
		return []control.Action{control.ActKillProcess}
	}
	return nil
}

func (f *fakeControl) Execute(v *detector.Verdict, _ control.Target, _ []control.Action, _ time.Time) {
	f.executed = append(f.executed, v.ID)
}
func (f *fakeControl) Forget(id uint64) { f.forgot = append(f.forgot, id) }

func newEngine(t *testing.T) *detector.Engine {
	t.Helper()
	eng, err := detector.New(detector.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// run feeds evs through a pipeline as the tracer's reader would, then
// flushes and closes it.
func run(t *testing.T, cfg Config, evs []event.Event, between func(p *Pipeline)) *Pipeline {
	t.Helper()
	p := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	if between != nil {
		between(p)
	}
	for i := range evs {
		ev := evs[i]
		p.Event(&ev)
		if i%100 == 99 {
			p.EndBatch()
		}
	}
	p.EndBatch()
	p.Flush()
	p.Close()
	return p
}

func TestVerdictsAuditedInDetectorOrder(t *testing.T) {
	evs := recorded(t, "proc1-root")
	dir := t.TempDir()
	w, err := audit.Open(audit.Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	sink := &capture{}
	ctl := &fakeControl{}
	cg := evs[0].CgroupID
	target := control.Target{CgroupID: cg, Mode: annotations.ModeEnforce, Container: &event.Container{ID: "c1"}}
	p := run(t, Config{Audit: w, Detector: newEngine(t), Control: ctl, Sinks: []Sink{sink},
		Target: func(id uint64) (control.Target, bool) { return target, id == cg }}, evs, nil)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(sink.verdicts) == 0 {
		t.Fatal("no verdict on the proc-root-escape scenario")
	}
	if len(sink.events) != len(evs) {
		t.Fatalf("sink saw %d events, want %d", len(sink.events), len(evs))
	}
	for _, v := range sink.verdicts {
		if v.Mode != "enforce" || !slices.Equal(v.Actions, []string{"kill-process"}) {
			t.Errorf("verdict %s not marked by the controller: mode %q actions %v", v.Rule, v.Mode, v.Actions)
		}
	}
	if len(ctl.executed) != len(sink.verdicts) {
		t.Errorf("controller executed %d verdicts, want %d", len(ctl.executed), len(sink.verdicts))
	}
	st := p.Stats()
	if st.Events != uint64(len(evs)) || st.Verdicts != uint64(len(sink.verdicts)) || st.AuditErrors != 0 {
		t.Errorf("stats %+v", st)
	}

	// The audit log holds each verdict right after the event that caused
	// it (the evidence's sequence number), with the controller's marks.
	r, err := audit.NewReader(filepath.Join(dir, "log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var lastSeq uint64
	var nv int
	for {
		rec, err := r.Next()
		if err != nil {
			break
		}
		switch rec.Kind {
		case audit.KindEvent:
			lastSeq = rec.Event.Seq
		case audit.KindVerdict:
			nv++
			var v detector.Verdict
			if err := json.Unmarshal(rec.Body, &v); err != nil {
				t.Fatal(err)
			}
			if len(v.Evidence) > 0 && v.Evidence[len(v.Evidence)-1].Seq != lastSeq {
				t.Errorf("verdict %s audited after event %d, its evidence is event %d", v.Rule, lastSeq, v.Evidence[len(v.Evidence)-1].Seq)
			}
			if v.Mode != "enforce" {
				t.Errorf("audited verdict without mode: %+v", v)
			}
		}
	}
	if nv != len(sink.verdicts) {
		t.Errorf("audit log has %d verdicts, sinks %d", nv, len(sink.verdicts))
	}
}

func TestLearnModeRecordsOnly(t *testing.T) {
	evs := recorded(t, "proc1-root")
	sink := &capture{}
	cg := evs[0].CgroupID
	p := run(t, Config{Detector: newEngine(t), Control: &fakeControl{}, Sinks: []Sink{sink},
		Target: func(id uint64) (control.Target, bool) {
			return control.Target{CgroupID: cg, Mode: annotations.ModeLearn}, true
		}}, evs, nil)
	if len(sink.verdicts) != 0 || p.Stats().Verdicts != 0 {
		t.Errorf("learn mode made %d verdicts", len(sink.verdicts))
	}
	if len(sink.events) != len(evs) {
		t.Errorf("learn mode recorded %d of %d events", len(sink.events), len(evs))
	}
}

func TestGapsFoundAndAudited(t *testing.T) {
	evs := recorded(t, "proc1-root")
	cg := evs[0].CgroupID
	// Renumber from 1, then remove seq 5..7 and 20: two gaps (3 and 1).
	var kept []event.Event
	for i := range evs {
		evs[i].Seq = uint64(i + 1)
		if s := evs[i].Seq; (s >= 5 && s <= 7) || s == 20 {
			continue
		}
		kept = append(kept, evs[i])
	}
	dir := t.TempDir()
	w, err := audit.Open(audit.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	sink := &capture{}
	finished := make(chan struct{})
	p := run(t, Config{Audit: w, Sinks: []Sink{sink}, FinishWait: 50 * time.Millisecond}, kept, func(p *Pipeline) {
		p.Begin(cg, 0)
	})
	_ = p
	want := []Gap{{CgroupID: cg, FromSeq: 5, Count: 3}, {CgroupID: cg, FromSeq: 20, Count: 1}}
	if len(sink.gaps) != 2 || sink.gaps[0] != want[0] || sink.gaps[1] != want[1] {
		t.Fatalf("gaps %+v, want %+v", sink.gaps, want)
	}

	// A trailing gap: the tracer saw 10 more than arrived.
	sink2 := &capture{}
	p2 := New(Config{Audit: w, Sinks: []Sink{sink2}, FinishWait: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p2.Run(ctx)
	p2.Begin(cg+1, 0)
	for i := 1; i <= 5; i++ {
		ev := event.Event{CgroupID: cg + 1, Seq: uint64(i), Nr: 39}
		p2.Event(&ev)
	}
	p2.EndBatch()
	p2.Finish(cg+1, 15, func() { close(finished) })
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("finish callback not run")
	}
	// An action record and a note for the finished cgroup, after its end:
	// audited, and the writer does not keep the cgroup's state for them.
	p2.Sync()
	if err := w.Flush(); err != nil { // a Forget in the open batch waits for it
		t.Fatal(err)
	}
	held := w.Stats().Cgroups // the first pipeline's cgroup, still live
	p2.Record(control.Record{CgroupID: cg + 1, Action: control.ActFreeze, Effective: time.Now()})
	p2.Note(audit.KindLifecycle, cg+1, "late", map[string]string{"event": "stopped"})
	p2.Sync()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := w.Stats().Cgroups; n != held {
		t.Errorf("audit writer holds %d cgroups after late records for a finished one, want %d as before", n, held)
	}
	p2.Close()
	if len(sink2.gaps) != 1 || sink2.gaps[0].FromSeq != 6 || sink2.gaps[0].Count != 10 {
		t.Fatalf("trailing gap %+v, want from 6 count 10", sink2.gaps)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := audit.NewReader(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var gaps int
	for {
		rec, err := r.Next()
		if err != nil {
			break
		}
		if rec.Kind == audit.KindGap {
			gaps++
		}
	}
	if gaps != 3 {
		t.Errorf("audit log holds %d gap records, want 3", gaps)
	}
}

func TestFullQueueDropsAreCounted(t *testing.T) {
	sink := &capture{}
	p := New(Config{Sinks: []Sink{sink}, QueueBatches: 2})
	// No worker yet: the queue takes 2 batches, the rest is dropped.
	n := 5 * BatchSize
	for i := 1; i <= n; i++ {
		ev := event.Event{CgroupID: 7, Seq: uint64(i), Nr: 39}
		p.Event(&ev)
	}
	p.EndBatch()
	if got := p.Stats().QueueDropped; got != uint64(n-2*BatchSize) {
		t.Fatalf("queue dropped %d, want %d", got, n-2*BatchSize)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	p.Begin(7, 0) // after the queued batches: the baseline is already known
	for deadline := time.Now().Add(5 * time.Second); p.Stats().Events < uint64(2*BatchSize); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("worker did not take the queued batches")
		}
	}
	ev := event.Event{CgroupID: 7, Seq: uint64(n + 1), Nr: 39}
	p.Event(&ev)
	p.EndBatch()
	p.Flush()
	p.Close()
	st := p.Stats()
	if st.Events != uint64(2*BatchSize+1) || st.Lost != uint64(n-2*BatchSize) {
		t.Errorf("stats %+v: want %d events and the dropped %d as lost", st, 2*BatchSize+1, n-2*BatchSize)
	}
}

// TestReorderedRecordsAreNoGap: records of one cgroup reach the ring a
// little out of order when its threads run on several CPUs; a number that
// comes late is not a gap, one that never comes is.
func TestReorderedRecordsAreNoGap(t *testing.T) {
	sink := &capture{}
	var evs []event.Event
	for _, seq := range []uint64{1, 2, 4, 3, 5, 8, 6, 10} { // 7 and 9 never come
		evs = append(evs, event.Event{CgroupID: 5, Seq: seq, Nr: 39})
	}
	run(t, Config{Sinks: []Sink{sink}}, evs, func(p *Pipeline) { p.Begin(5, 0) })
	want := []Gap{{CgroupID: 5, FromSeq: 7, Count: 1}, {CgroupID: 5, FromSeq: 9, Count: 1}}
	if len(sink.gaps) != 2 || sink.gaps[0] != want[0] || sink.gaps[1] != want[1] {
		t.Errorf("gaps %+v, want %+v", sink.gaps, want)
	}
}

// pathSink checks that each event's path is the one made for its sequence
// number: a batch's string memory is reused only once its events were
// processed.
type pathSink struct {
	capture
	bad int
}

func (s *pathSink) Event(ev *event.Event) {
	if ev.Path != fmt.Sprintf("/tmp/file-%d", ev.Seq) {
		s.bad++
	}
	s.capture.Event(ev)
}

func TestStringsLiveWithTheirBatch(t *testing.T) {
	sink := &pathSink{}
	p := New(Config{Sinks: []Sink{sink}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	const n = 20 * BatchSize
	var ev event.Event
	var path []byte
	for i := 1; i <= n; i++ {
		path = fmt.Appendf(path[:0], "/tmp/file-%d", i)
		ev = event.Event{CgroupID: 5, Seq: uint64(i), Path: p.String(path)}
		clear(path) // the reader's bytes are gone after the call
		p.Event(&ev)
		if i%100 == 0 {
			p.EndBatch()
			if i%1000 == 0 {
				p.Sync() // batches come back to be reused
			}
		}
	}
	p.EndBatch()
	p.Sync()
	p.Close()
	if len(sink.events) != n || sink.bad != 0 {
		t.Fatalf("%d events, %d with a path not their own", len(sink.events), sink.bad)
	}
}

// TestEventNoAllocations: taking an event and its strings allocates
// nothing once the batches exist.
func TestEventNoAllocations(t *testing.T) {
	p := New(Config{QueueBatches: 1}) // no worker: full batches are dropped and reused
	path := []byte("/usr/lib/x86_64-linux-gnu/libc.so.6")
	ev := event.Event{CgroupID: 5, Comm: "tar"}
	take := func() {
		ev.Seq++
		ev.Path = p.String(path)
		p.Event(&ev)
	}
	for i := 0; i < 4*BatchSize; i++ {
		take()
	}
	if n := testing.AllocsPerRun(2000, take); n != 0 {
		t.Errorf("%v allocations per event, want 0", n)
	}
	slotted := func() {
		s := p.Slot()
		*s = ev
		s.Seq++
		s.Path = p.String(path)
		p.Event(s)
	}
	if n := testing.AllocsPerRun(2000, slotted); n != 0 {
		t.Errorf("%v allocations per event decoded into its slot, want 0", n)
	}
}

// TestSlotTakenInPlace: the reader decodes into the batch's next slot and
// Event takes it (BenchmarkHandOver: without a copy); a slot not given to
// Event is handed out again, one given is not; events given by slot and
// by copy reach the worker in order.
func TestSlotTakenInPlace(t *testing.T) {
	sink := &capture{}
	p := New(Config{Sinks: []Sink{sink}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	const n = 3*BatchSize + 10
	for i := 1; i <= n; i++ {
		if i%7 == 0 { // a copied event between slotted ones
			ev := event.Event{CgroupID: 5, Seq: uint64(i)}
			p.Event(&ev)
			continue
		}
		s := p.Slot()
		if again := p.Slot(); again != s {
			t.Fatal("a slot not given to Event is not handed out again")
		}
		*s = event.Event{CgroupID: 5, Seq: uint64(i)}
		k := len(p.cur.evs)
		p.Event(s)
		if k+1 < BatchSize && (len(p.cur.evs) != k+1 || p.Slot() == s) {
			t.Fatalf("event %d: %d events in the batch after %d, or its slot handed out again", i, len(p.cur.evs), k)
		}
		if i%50 == 0 {
			p.EndBatch()
		}
	}
	p.EndBatch()
	p.Sync()
	p.Close()
	if len(sink.events) != n {
		t.Fatalf("%d events reached the sink, want %d", len(sink.events), n)
	}
	for i, seq := range sink.events {
		if seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d, want %d", i, seq, i+1)
		}
	}
}
