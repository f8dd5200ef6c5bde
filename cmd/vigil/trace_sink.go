package main

import (
	"fmt"
	"os"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// traceSink is where vigil trace sends each event besides the output: the
// audit log first (what is detected is recorded), then the detector.
type traceSink struct {
	eng *detector.Engine
	aud *audit.Writer
	cg  uint64
	err error
}

func newTraceSink(o traceOpts, cg uint64) (*traceSink, error) {
	s := &traceSink{cg: cg}
	if !o.noDetect {
		eng, err := newDetector(o.policy, o.model, nil)
		if err != nil {
			return nil, err
		}
		s.eng = eng
	}
	if o.auditDir != "" {
		w, err := audit.Open(audit.Options{Dir: o.auditDir})
		if err != nil {
			return nil, fmt.Errorf("--audit: %w", err)
		}
		s.aud = w
		host, _ := os.Hostname()
		s.append(audit.KindAgent, audit.Agent{Event: "start", Host: host, PID: os.Getpid(), Detail: "vigil trace"})
	}
	return s, nil
}

func (s *traceSink) append(kind audit.Kind, body any) {
	if s.aud == nil || s.err != nil {
		return
	}
	s.err = s.aud.Append(kind, s.cg, "", body)
}

// event records and inspects one event; verdicts go to emit.
func (s *traceSink) event(ev *event.Event, emit func(*detector.Verdict)) {
	if s.aud != nil && s.err == nil {
		s.err = s.aud.AppendEvent(ev)
	}
	if s.eng == nil {
		return
	}
	for _, v := range s.eng.Observe(ev) {
		s.verdict(&v, emit)
	}
}

func (s *traceSink) sample(smp detector.Sample, emit func(*detector.Verdict)) {
	if s.eng == nil {
		return
	}
	s.append(audit.KindSample, smp)
	for _, v := range s.eng.Sample(smp) {
		s.verdict(&v, emit)
	}
}

// flush scores what the detector still holds (the model's partial window).
func (s *traceSink) flush(emit func(*detector.Verdict)) {
	if s.eng == nil {
		return
	}
	for _, v := range s.eng.Flush() {
		s.verdict(&v, emit)
	}
}

func (s *traceSink) verdict(v *detector.Verdict, emit func(*detector.Verdict)) {
	s.append(audit.KindVerdict, v)
	emit(v)
}

// finish records the drops and the end of the run, and closes the log.
func (s *traceSink) finish(c bpf.Counters, cmd []string, status int) error {
	if c.Dropped > 0 && s.aud != nil && s.err == nil {
		s.err = s.aud.AppendGap(s.cg, "", 0, c.Dropped)
	}
	s.append(audit.KindAgent, audit.Agent{Event: "stop", PID: os.Getpid(),
		Detail: fmt.Sprintf("vigil trace %q exited %d; seen %d emitted %d dropped %d", cmd, status, c.Seen, c.Emitted, c.Dropped)})
	return s.close()
}

func (s *traceSink) close() error {
	if s.aud == nil {
		return s.err
	}
	err := s.aud.Close()
	s.aud = nil
	if s.err != nil {
		return fmt.Errorf("audit: %w", s.err)
	}
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}
