package pipeline

import (
	"context"
	"testing"
	"time"

	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// slowSink spends d in each Event: the export stage.
type slowSink struct{ d time.Duration }

func (s slowSink) Event(*event.Event) {
	for t := time.Now(); time.Since(t) < s.d; {
	}
}
func (slowSink) Verdict(*detector.Verdict) {}
func (slowSink) Action(control.Record)     {}
func (slowSink) Gap(Gap)                   {}
func (slowSink) Flush() error              { return nil }

// TestStageTimes: every event of one batch in StageEvery is timed, and a
// stage's time lands in that stage.
func TestStageTimes(t *testing.T) {
	p := New(Config{Sinks: []Sink{slowSink{20 * time.Microsecond}}})
	go p.Run(context.Background())
	defer p.Close()
	const per, batches = 5, 3 * StageEvery
	seq := uint64(0)
	for b := 0; b < batches; b++ {
		for i := 0; i < per; i++ {
			seq++
			p.Event(&event.Event{CgroupID: 7, Seq: seq})
		}
		p.EndBatch()
		p.Sync() // one batch at a time, as handed over
	}
	st := p.StageTimes()
	if want := uint64(per * batches / StageEvery); st.Sampled != want {
		t.Fatalf("sampled %d events of %d, want %d (every event of one batch in %d)", st.Sampled, seq, want, StageEvery)
	}
	if st.ExportNs < 20_000 {
		t.Errorf("export stage %.0f ns per event, want at least the sink's 20000", st.ExportNs)
	}
	if st.AuditNs >= st.ExportNs || st.EnrichNs >= st.ExportNs {
		t.Errorf("the sink's time leaked into other stages: %+v", st)
	}
}
