package pipeline

import (
	"sync/atomic"
	"time"
)

// StageEvery is how often the worker times the stages of its events: every
// event of one batch in StageEvery. The other batches pay one counter per
// batch and a branch per stage, no clock read; a timed batch pays four
// clock reads per event (one lap's end is the next one's start).
const StageEvery = 64

// StageTimes is where the worker's time goes per event, from the sampled
// events: the mean time of one event in each stage, in nanoseconds. The
// reader's decoding is not the worker's: it is the tracer's.
type StageTimes struct {
	Sampled  uint64  `json:"sampled"`   // events timed
	EnrichNs float64 `json:"enrich_ns"` // registry metadata and the sequence-number check
	AuditNs  float64 `json:"audit_ns"`  // appending the event to the audit log
	ExportNs float64 `json:"export_ns"` // the sinks' Event
	DetectNs float64 `json:"detect_ns"` // detector, and the verdicts' decisions, audit and sinks
}

// stageClock accumulates the sampled stage times (written by the worker,
// read by StageTimes from any goroutine).
type stageClock struct {
	tick                          int
	sampled                       atomic.Uint64
	enrich, audit, export, detect atomic.Int64
}

// stopwatch times the stages of the events of a batch when on; off, each
// lap is one branch.
type stopwatch struct {
	on bool
	t  time.Time
}

// batch returns the stopwatch for a batch of n events: on for one batch in
// StageEvery.
func (c *stageClock) batch(n int) stopwatch {
	if c.tick++; c.tick < StageEvery || n == 0 {
		return stopwatch{}
	}
	c.tick = 0
	c.sampled.Add(uint64(n))
	return stopwatch{on: true, t: time.Now()}
}

// lap adds the time since the last lap to acc.
func (s *stopwatch) lap(acc *atomic.Int64) {
	if !s.on {
		return
	}
	now := time.Now()
	acc.Add(int64(now.Sub(s.t)))
	s.t = now
}

// StageTimes returns the mean time per event in each stage of the worker,
// measured on every event of one batch in StageEvery.
func (p *Pipeline) StageTimes() StageTimes {
	c := &p.stages
	n := c.sampled.Load()
	st := StageTimes{Sampled: n}
	if n == 0 {
		return st
	}
	mean := func(v *atomic.Int64) float64 { return float64(v.Load()) / float64(n) }
	st.EnrichNs, st.AuditNs, st.ExportNs, st.DetectNs = mean(&c.enrich), mean(&c.audit), mean(&c.export), mean(&c.detect)
	return st
}
