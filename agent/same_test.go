package agent

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/pipeline"
	"vigil.dev/vigil/plugin"
	"vigil.dev/vigil/seccomp"
)

// recording is a recorded scenario of the detector's test data: events,
// and CPU samples where the scenario has them.
func recording(t *testing.T, name string) ([]event.Event, []detector.Sample) {
	t.Helper()
	dir := "../detector/testdata/scenarios"
	f, err := os.Open(filepath.Join(dir, name+".jsonl.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	if err := detector.ReplayEvents(zr, name, func(ev *event.Event) error { evs = append(evs, *ev); return nil }); err != nil {
		t.Fatal(err)
	}
	var samples []detector.Sample
	if data, err := os.ReadFile(filepath.Join(dir, name+".samples.json")); err == nil {
		if err := json.Unmarshal(data, &samples); err != nil {
			t.Fatal(err)
		}
	}
	return evs, samples
}

// capture keeps the verdicts a pipeline's sinks get.
type capture struct {
	mu       sync.Mutex
	verdicts []detector.Verdict
}

func (c *capture) Event(*event.Event) {}
func (c *capture) Verdict(v *detector.Verdict) {
	c.mu.Lock()
	c.verdicts = append(c.verdicts, *v)
	c.mu.Unlock()
}
func (c *capture) Action(control.Record) {}
func (c *capture) Gap(pipeline.Gap)      {}
func (c *capture) Flush() error          { return nil }
func (c *capture) all() []detector.Verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.verdicts)
}

type nopNotifier struct{}

func (nopNotifier) SetPolicy(string, *seccomp.Policy)     {}
func (nopNotifier) RestorePolicy(string, *seccomp.Policy) {}
func (nopNotifier) Forget(string)                         {}

// feed runs events and samples through p the way the tracer's reader and
// the sampler do, interleaved by time.
func feed(p *pipeline.Pipeline, evs []event.Event, samples []detector.Sample, cg uint64) {
	si := 0
	for i := range evs {
		for si < len(samples) && !samples[si].Time.After(evs[i].Time) {
			s := samples[si]
			s.CgroupID = cg
			p.EndBatch()
			p.Sync() // the sample after the events before it, in both pipelines
			p.Sample(s)
			si++
		}
		ev := evs[i]
		ev.CgroupID = cg
		p.Event(&ev)
		if i%64 == 63 {
			p.EndBatch()
		}
	}
	p.EndBatch()
	p.Sync()
	for ; si < len(samples); si++ {
		s := samples[si]
		s.CgroupID = cg
		p.Sample(s)
	}
}

// auditTrail is what an audit log recorded of the run: each event's
// sequence number and each verdict's id, in order.
func auditTrail(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := audit.Scan(dir, nil, func(r *audit.Record) error {
		switch r.Kind {
		case audit.KindEvent:
			out = append(out, fmt.Sprintf("event %d %s", r.Event.Seq, r.Event.Name()))
		case audit.KindVerdict:
			var v detector.Verdict
			if err := json.Unmarshal(r.Body, &v); err != nil {
				return err
			}
			out = append(out, fmt.Sprintf("verdict %s %s %s %v", v.ID, v.Rule, v.Mode, v.WouldAct))
		case audit.KindSample:
			out = append(out, "sample")
		case audit.KindGap:
			out = append(out, "gap "+string(r.Body))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSamePipelineInTraceAndAgent feeds the same recorded events and
// samples through `vigil trace`'s pipeline and the agent's, and gets the
// same verdicts and the same audit records.
func TestSamePipelineInTraceAndAgent(t *testing.T) {
	for _, scenario := range []string{"cpu-miner", "proc1-root", "dns-unauthorized"} {
		t.Run(scenario, func(t *testing.T) {
			evs, samples := recording(t, scenario)
			const cg = 4242
			log := logrus.New()
			log.SetOutput(io.Discard)
			det := pipeline.Detection{}

			// vigil trace's pipeline.
			traceDir := filepath.Join(t.TempDir(), "trace")
			tc := &capture{}
			run, err := NewTraceRun(TraceConfig{CgroupID: cg, CgroupDir: "/nonexistent/cg", CgroupRoot: "/nonexistent", Detect: det,
				AuditDir: traceDir, Mode: annotations.ModeDetect, StartSeq: evs[0].Seq - 1, Sinks: []pipeline.Sink{tc}, Log: log})
			if err != nil {
				t.Fatal(err)
			}
			feed(run.P, evs, samples, cg)
			if err := run.Finish(bpf.Counters{Seen: evs[len(evs)-1].Seq, Emitted: evs[len(evs)-1].Seq}, "test"); err != nil {
				t.Fatal(err)
			}

			// The agent's pipeline, with its registry knowing the container.
			agentDir := filepath.Join(t.TempDir(), "agent")
			a := &Agent{cfg: Config{Detect: det, CgroupRoot: "/nonexistent"}, log: log}
			if a.aud, err = audit.Open(audit.Options{Dir: agentDir}); err != nil {
				t.Fatal(err)
			}
			if a.eng, err = det.NewDetector(); err != nil {
				t.Fatal(err)
			}
			a.reg = plugin.New(plugin.Config{CgroupRoot: "/nonexistent", CgroupID: func(string) (uint64, error) { return cg, nil },
				CgroupOf: func(int) (string, error) { return "/k8s.io/c1", nil }},
				&fakeTracer{tracked: map[uint64]bpf.Counters{}}, nopNotifier{}, log)
			bundle := t.TempDir()
			if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"linux":{"cgroupsPath":"/k8s.io/c1"}}`), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := a.reg.Register(agentctl.Request{Container: &event.Container{ID: "c1", Name: "app"}, CgroupsPath: "/k8s.io/c1",
				Annotations: map[string]string{"ebpf-monitor": "true"}, Bundle: bundle, PID: 1}); err != nil {
				t.Fatal(err)
			}
			if a.ctl, err = control.New(control.Config{Policies: map[string]*control.Policy{"default": control.DefaultPolicy()},
				Actuator: &traceActuator{}, Record: func(control.Record) {}}); err != nil {
				t.Fatal(err)
			}
			ac := &capture{}
			a.pl = a.buildPipeline([]pipeline.Sink{ac})
			done := make(chan struct{})
			// The recording starts after the tracer counted some records: both
			// pipelines are told so before the events come.
			a.pl.Begin(cg, evs[0].Seq-1)
			go func() { a.pl.Run(t.Context()); close(done) }()
			feed(a.pl, evs, samples, cg)
			a.pl.Flush()
			fin := make(chan struct{})
			a.pl.Finish(cg, evs[len(evs)-1].Seq, func() { close(fin) })
			<-fin
			a.pl.Close()
			<-done
			if err := a.aud.Close(); err != nil {
				t.Fatal(err)
			}

			tv, av := tc.all(), ac.all()
			if len(tv) == 0 {
				t.Fatalf("%s: no verdict through the trace pipeline", scenario)
			}
			key := func(vs []detector.Verdict) []string {
				var out []string
				for _, v := range vs {
					out = append(out, fmt.Sprintf("%s %s %s %s %v", v.ID, v.Rule, v.Class, v.Mode, v.WouldAct))
				}
				return out
			}
			if !slices.Equal(key(tv), key(av)) {
				t.Errorf("verdicts differ:\ntrace %q\nagent %q", key(tv), key(av))
			}
			if av[0].Container == nil || av[0].Container.ID != "c1" {
				t.Errorf("agent verdict without the container's metadata: %+v", av[0].Container)
			}
			tt, at := auditTrail(t, traceDir), auditTrail(t, agentDir)
			if !slices.Equal(tt, at) {
				t.Errorf("audit records differ: trace %d, agent %d records", len(tt), len(at))
				for i := range min(len(tt), len(at)) {
					if tt[i] != at[i] {
						t.Errorf("first difference at %d: trace %q, agent %q", i, tt[i], at[i])
						break
					}
				}
			}
			t.Logf("%s: %d events, %d samples, %d verdicts, %d audit records alike", scenario, len(evs), len(samples), len(tv), len(tt))
		})
	}
}
