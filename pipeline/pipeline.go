// Package pipeline is the one path every event takes, in the agent and in
// `vigil trace`: enrich (container metadata) → audit → detect → control →
// sinks. It is fed with syscall events by the tracer's reader, with CPU and
// thread samples, and with lifecycle notes; it finds the gaps in each
// cgroup's sequence numbers (records the tracer or the queue dropped) and
// records them in the audit log and tells the detector.
//
// The reader only copies events into batches and hands them over a bounded
// queue; one worker goroutine does everything else, so the audit log holds
// events and verdicts in the order the detector saw them, and disk I/O
// (audit compression, signing, fsync, exports) never runs on the reader's
// goroutine. A batch the queue cannot take is dropped and counted; its
// records show as gaps like any other loss.
package pipeline

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// Sink is an output of the pipeline: an export, the trace's terminal, a
// log. The worker calls it, from one goroutine.
type Sink interface {
	// Event is every event, after enrichment and audit. ev is reused after
	// the call, and so is the memory of its strings: copy what is kept.
	Event(ev *event.Event)
	// Verdict is every verdict, marked by the controller (mode, would_act,
	// actions).
	Verdict(v *detector.Verdict)
	// Action is every action taken or undone.
	Action(r control.Record)
	// Gap is every run of records lost before the pipeline saw them.
	Gap(g Gap)
	// Flush writes what is buffered; called when the worker is idle.
	Flush() error
}

// Gap is a run of records of one cgroup that never reached the pipeline:
// dropped by the tracer (ring full) or by the pipeline's queue.
type Gap struct {
	CgroupID  uint64           `json:"cgroup"`
	Container *event.Container `json:"container,omitempty"`
	FromSeq   uint64           `json:"from_seq"`
	Count     uint64           `json:"count"`
}

// Controller is what the pipeline needs of the response ladder
// (*control.Controller).
type Controller interface {
	// Decide marks the verdict (mode, would_act, actions) and returns the
	// actions to run; fast, no I/O.
	Decide(v *detector.Verdict, t control.Target) []control.Action
	// Execute queues the actions; trigger is the triggering event's time.
	Execute(v *detector.Verdict, t control.Target, acts []control.Action, trigger time.Time)
	// Forget drops the state of a cgroup that ended.
	Forget(cgroupID uint64)
}

// Config says what a Pipeline runs. Every part is optional.
type Config struct {
	// Enrich sets the Container of a run of events of one cgroup (the
	// agent's registry: plugin.Plugin.EnrichRun): the worker calls it once
	// for each run of one cgroup's events in a batch.
	Enrich func(run []event.Event)
	// Target describes a cgroup's container for the detector gate (mode
	// learn records only) and the controller. Unknown cgroups are in mode
	// detect.
	Target func(cgroupID uint64) (control.Target, bool)
	// Audit is the audit log; what it cannot take is counted (Stats).
	Audit *audit.Writer
	// Detector judges events and samples.
	Detector *detector.Engine
	// Control turns verdicts into actions (*control.Controller): Decide on
	// the worker, the actions on its own goroutine.
	Control Controller
	Sinks   []Sink
	// QueueBatches bounds the queue between the reader and the worker, in
	// batches of BatchSize events (default 256 batches: 64 K events).
	QueueBatches int
	// Errorf reports a failing part once per kind (audit, sink).
	Errorf func(format string, args ...any)
	// FinishWait bounds how long a finished cgroup waits for its last
	// records before its trailing gap is recorded (default 1 s).
	FinishWait time.Duration
	// TimeEvery times the detector's decision on one event in TimeEvery
	// (default 16; 1 times every event), for Stats' decision quantiles.
	TimeEvery int
}

// BatchSize is the number of events the reader hands over at once (at
// most; a drain of the ring ends a batch too).
const BatchSize = 256

// Stats are the pipeline's counters.
type Stats struct {
	Events       uint64 `json:"events"`        // events processed
	Verdicts     uint64 `json:"verdicts"`      // verdicts made
	Gaps         uint64 `json:"gaps"`          // gap records
	Lost         uint64 `json:"lost"`          // records in gaps (tracer and queue)
	QueueDropped uint64 `json:"queue_dropped"` // events the queue could not take
	AuditErrors  uint64 `json:"audit_errors"`  // records the audit log refused
	SinkErrors   uint64 `json:"sink_errors"`
	QueueDepth   int    `json:"queue_depth"` // batches waiting now
	// DecisionP50/P99 are quantiles of the detector's time per event
	// (sampled, see Config.TimeEvery); DeliveryP99 of the time from an
	// event's kernel timestamp to its decision.
	DecisionP50 time.Duration `json:"decision_p50_ns"`
	DecisionP99 time.Duration `json:"decision_p99_ns"`
	DeliveryP50 time.Duration `json:"delivery_p50_ns"`
	DeliveryP99 time.Duration `json:"delivery_p99_ns"`
}

// Pipeline is one event path. Event and EndBatch are for one goroutine
// (the tracer's reader); everything else is safe for concurrent use.
type Pipeline struct {
	cfg Config

	// Reader side.
	cur     *batch
	free    chan *batch
	batches chan *batch

	// Control messages: samples, notes, finish, flush, sync.
	msgs chan msg
	// Action records (see Record).
	recMu   sync.Mutex
	recs    []control.Record
	recWake chan struct{}
	quit    chan struct{}
	done    chan struct{}

	// Worker side.
	cgs map[uint64]*cgInfo
	// lastID and last are the cgroup of the previous event: a batch holds
	// runs of one cgroup's events (nil when it was forgotten).
	lastID uint64
	last   *cgInfo
	// gone holds recently finished cgroups: records that arrive after their
	// finish are processed and their state dropped again.
	gone map[uint64]time.Time

	events, verdicts, gaps, lost, queueDropped, auditErrs, sinkErrs atomic.Uint64
	errOnce                                                         sync.Map
	decision, delivery                                              hist
	tick                                                            int
	stages                                                          stageClock
	// now is the clock of the batch being processed, read at its first
	// gap (zero until then): a missing run's time is its batch's.
	now time.Time
}

// batch is a hand-over from the reader to the worker: events and the
// bytes of their strings (String), both reused once the worker is done.
type batch struct {
	evs  []event.Event
	strs []byte
}

// strsSize is the first size of a batch's string memory: about 64 bytes
// per event.
const strsSize = 16 << 10

type msgKind uint8

const (
	mSample msgKind = iota + 1
	mNote
	mBegin
	mFinish
	mFlush
	mSync
)

type msg struct {
	kind   msgKind
	cg     uint64
	seq    uint64
	sample detector.Sample
	note   note
	fn     func()
	done   chan struct{}
}

type note struct {
	kind  audit.Kind
	ctrID string
	body  any
}

// span is a run of sequence numbers whose records have not come (yet).
type span struct {
	from, count uint64
	at          time.Time
	ctr         *event.Container
}

func (s span) gap(cg uint64) Gap {
	return Gap{CgroupID: cg, Container: s.ctr, FromSeq: s.from, Count: s.count}
}

const (
	// settleAfter is how long missing numbers wait for their records.
	settleAfter = 500 * time.Millisecond
	// maxMissing bounds the runs a cgroup may have waiting.
	maxMissing = 64
)

// fill takes seq, a late record, out of the missing runs.
func (c *cgInfo) fill(seq uint64) {
	for i, m := range c.missing {
		if seq < m.from || seq >= m.from+m.count {
			continue
		}
		var parts []span
		if seq > m.from {
			parts = append(parts, span{from: m.from, count: seq - m.from, at: m.at, ctr: m.ctr})
		}
		if end := m.from + m.count; seq+1 < end {
			parts = append(parts, span{from: seq + 1, count: end - seq - 1, at: m.at, ctr: m.ctr})
		}
		c.missing = append(c.missing[:i], append(parts, c.missing[i+1:]...)...)
		return
	}
}

// addMissing appends a missing run. A cgroup over its budget misses a
// number every few records, and past maxMissing its oldest run leaves from
// the front as each new one comes: the runs slide along their array and
// move back to its start when they reach its end, so that the list is not
// reallocated (and its array not collected) every few records.
func (c *cgInfo) addMissing(s span) {
	if len(c.missing) == cap(c.missing) && 2*len(c.missing) <= cap(c.spans) {
		n := copy(c.spans[:cap(c.spans)], c.missing)
		clear(c.spans[n:cap(c.spans)]) // the containers the old runs held
		c.missing = c.spans[:n]
	}
	c.missing = append(c.missing, s)
	if cap(c.missing) > cap(c.spans) { // a new array
		c.spans = c.missing[:0]
	}
}

// clock returns the time of the batch being processed: one clock read per
// batch that has gaps, not one per gap. A run then waits settleAfter from
// its batch's start, earlier by at most the time the batch takes.
func (p *Pipeline) clock() time.Time {
	if p.now.IsZero() {
		p.now = time.Now()
	}
	return p.now
}

// settleGaps records the missing runs older than settleAfter (all with
// all set) as gaps.
func (p *Pipeline) settleGaps(id uint64, c *cgInfo, now time.Time, all bool) {
	n := 0
	for _, m := range c.missing {
		if all || now.Sub(m.at) >= settleAfter {
			p.gap(m.gap(id))
			continue
		}
		c.missing[n] = m
		n++
	}
	c.missing = c.missing[:n]
}

// cgInfo is what the worker keeps per cgroup.
type cgInfo struct {
	missing []span // numbers not seen yet below lastSeq, oldest first
	// spans is the array missing slides along (see addMissing).
	spans     []span
	lastSeq   uint64
	known     bool // lastSeq is a real baseline
	target    control.Target
	hasTarget bool
	finished  bool   // the cgroup ended: waiting for its last records
	finalSeen uint64 // the tracer's final count of its records
	finishAt  time.Time
	onFinish  func()
}

// New returns a pipeline; Run starts its worker.
func New(cfg Config) *Pipeline {
	if cfg.QueueBatches <= 0 {
		cfg.QueueBatches = 256
	}
	if cfg.FinishWait <= 0 {
		cfg.FinishWait = time.Second
	}
	if cfg.Errorf == nil {
		cfg.Errorf = func(string, ...any) {}
	}
	if cfg.TimeEvery <= 0 {
		cfg.TimeEvery = 16
	}
	p := &Pipeline{cfg: cfg,
		free:    make(chan *batch, cfg.QueueBatches+2),
		batches: make(chan *batch, cfg.QueueBatches),
		msgs:    make(chan msg, 4096),
		recWake: make(chan struct{}, 1),
		gone:    map[uint64]time.Time{},
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		cgs:     map[uint64]*cgInfo{},
	}
	p.cur = p.newBatch()
	return p
}

func (p *Pipeline) newBatch() *batch {
	select {
	case b := <-p.free:
		b.evs, b.strs = b.evs[:0], b.strs[:0]
		return b
	default:
		return &batch{evs: make([]event.Event, 0, BatchSize)}
	}
}

// Event takes one event from the tracer's reader (ev is reused after the
// call). It copies it, or takes it in place when ev is the batch's next
// slot (Slot); the batch goes to the worker when full or at EndBatch.
func (p *Pipeline) Event(ev *event.Event) {
	b := p.cur
	n := len(b.evs) // < BatchSize = cap: a full batch is handed on at once
	if evs := b.evs[:n+1]; &evs[n] == ev {
		b.evs = evs
	} else {
		b.evs = append(b.evs, *ev)
	}
	if len(b.evs) == BatchSize {
		p.EndBatch()
	}
}

// Slot returns the next free event of the batch being filled, for the
// tracer's reader to decode its next record into (bpf.Consumer.Slot):
// Event given it takes it without a copy. A slot not given to Event is
// the next one again. Like Event, for the reader's goroutine only.
func (p *Pipeline) Slot() *event.Event {
	b := p.cur
	n := len(b.evs)
	return &b.evs[:n+1][n]
}

// String copies b into the memory of the batch being filled and returns
// it as a string: the reader makes the strings of its next event with it
// (bpf.Consumer.String), so decoding allocates nothing. The string lives
// as long as the event in the batch: consumers copy what they keep (see
// Sink.Event; the audit log and the detector copy).
func (p *Pipeline) String(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	a := p.cur.strs
	if cap(a)-len(a) < len(b) {
		// A new buffer: the strings made from the old one keep it alive
		// until the batch is processed.
		a = make([]byte, 0, max(2*cap(a), strsSize, len(b)))
	}
	n := len(a)
	a = append(a, b...)
	p.cur.strs = a
	return unsafe.String(&a[n], len(b))
}

// EndBatch hands the events taken so far to the worker. When the queue is
// full the batch is dropped and counted: its records show as gaps.
func (p *Pipeline) EndBatch() {
	if len(p.cur.evs) == 0 {
		return
	}
	select {
	case p.batches <- p.cur:
		p.cur = p.newBatch()
	default:
		p.queueDropped.Add(uint64(len(p.cur.evs)))
		p.cur.evs, p.cur.strs = p.cur.evs[:0], p.cur.strs[:0]
	}
}

// Sample feeds a CPU/thread sample of a cgroup to the detector (and the
// audit log, so replays re-run resource rules).
func (p *Pipeline) Sample(s detector.Sample) { p.send(msg{kind: mSample, cg: s.CgroupID, sample: s}) }

// Note appends a record of another kind (lifecycle, notify decision,
// agent, policy change) to the audit log, in the worker's order.
func (p *Pipeline) Note(kind audit.Kind, cgroupID uint64, containerID string, body any) {
	p.send(msg{kind: mNote, cg: cgroupID, note: note{kind: kind, ctrID: containerID, body: body}})
}

// Record is the controller's callback: an action taken or undone is
// audited and sent to the sinks. It never blocks (the controller may call
// it holding its own locks while the worker waits on them): records wait
// in a list of their own, which actions bound.
func (p *Pipeline) Record(r control.Record) {
	p.recMu.Lock()
	p.recs = append(p.recs, r)
	p.recMu.Unlock()
	select {
	case p.recWake <- struct{}{}:
	default:
	}
}

// takeRecords hands the waiting records to the worker.
func (p *Pipeline) takeRecords() []control.Record {
	p.recMu.Lock()
	defer p.recMu.Unlock()
	rs := p.recs
	p.recs = nil
	return rs
}

// Begin tells the pipeline that a cgroup is tracked from now on and that
// the tracer has already counted seen syscalls of it (0 for a new cgroup;
// a pinned tracer's count after an agent restart), so that gaps from here
// on are found, and refreshes its target.
func (p *Pipeline) Begin(cgroupID, seen uint64) { p.send(msg{kind: mBegin, cg: cgroupID, seq: seen}) }

// Finish tells the pipeline that a cgroup ended with the tracer's final
// seen count. Once its records up to that number arrived (or FinishWait
// passed), the trailing gap is recorded, the detector's last window of it
// is scored, detector, audit writer and controller forget it, and then
// onFinish (if not nil) runs on the worker.
func (p *Pipeline) Finish(cgroupID, finalSeen uint64, onFinish func()) {
	p.send(msg{kind: mFinish, cg: cgroupID, seq: finalSeen, fn: onFinish})
}

// Flush scores what the detector still holds (the model's partial
// windows) and waits until everything sent before it was processed and
// the sinks are flushed. Use it when a trace ends.
func (p *Pipeline) Flush() {
	done := make(chan struct{})
	p.send(msg{kind: mFlush, done: done})
	select {
	case <-done:
	case <-p.done:
	}
}

// Sync waits until every batch handed over and every message sent before
// it has been processed (batches and messages travel apart: this puts a
// caller's samples after the events it handed over first).
func (p *Pipeline) Sync() {
	done := make(chan struct{})
	p.send(msg{kind: mSync, done: done})
	select {
	case <-done:
	case <-p.done:
	}
}

func (p *Pipeline) send(m msg) {
	select {
	case p.msgs <- m:
	case <-p.done:
	}
}

// Stats returns the counters.
func (p *Pipeline) Stats() Stats {
	return Stats{Events: p.events.Load(), Verdicts: p.verdicts.Load(), Gaps: p.gaps.Load(), Lost: p.lost.Load(),
		QueueDropped: p.queueDropped.Load(), AuditErrors: p.auditErrs.Load(), SinkErrors: p.sinkErrs.Load(),
		QueueDepth: len(p.batches), DecisionP50: p.decision.quantile(.5), DecisionP99: p.decision.quantile(.99),
		DeliveryP50: p.delivery.quantile(.5), DeliveryP99: p.delivery.quantile(.99)}
}

// Close stops the worker after it processed what was queued. The reader
// must have stopped (its last EndBatch done) before.
func (p *Pipeline) Close() {
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	<-p.done
}

// idleEvery is how soon after work the worker's idle pass runs (sinks
// flushed, gaps settled, finished cgroups' waits ended).
const idleEvery = 100 * time.Millisecond

// Run is the worker: it processes batches and messages until ctx is done
// or Close, then drains what is queued and flushes the sinks.
//
// The idle pass runs on a timer armed by work, not on a ticker: within
// idleEvery of any work, then again while something waits for time (a
// missing run, a finished cgroup's last records, a finished cgroup's
// memory), and not at all while nothing flows (a ticker woke an idle
// agent ten times a second).
func (p *Pipeline) Run(ctx context.Context) {
	defer close(p.done)
	tick := time.NewTimer(idleEvery)
	tick.Stop()
	defer tick.Stop()
	// due is when the armed timer fires (zero: not armed). Work brings a
	// later one forward to idleEvery: the pass that waits for a finished
	// cgroup's memory to expire is up to goneFor away, and work must not
	// wait that long for its flush or its gaps.
	var due time.Time
	for {
		// One select for batches and messages: neither starves the other
		// (samples, actions and finishes keep flowing under a flood).
		select {
		case b := <-p.batches:
			p.process(b)
		case m := <-p.msgs:
			p.handle(m)
		case <-p.recWake:
			p.records()
		case <-tick.C:
			due = time.Time{}
			if next := p.idle(); next > 0 {
				tick.Reset(next)
				due = time.Now().Add(next)
			}
			continue
		case <-ctx.Done():
			p.drain()
			return
		case <-p.quit:
			p.drain()
			return
		}
		if due.IsZero() || time.Until(due) > idleEvery {
			tick.Reset(idleEvery)
			due = time.Now().Add(idleEvery)
		}
	}
}

// drain processes what is left in the queues.
func (p *Pipeline) drain() {
	for {
		select {
		case b := <-p.batches:
			p.process(b)
		case m := <-p.msgs:
			p.handle(m)
		default:
			p.records()
			p.finishAll()
			for id, c := range p.cgs {
				p.settleGaps(id, c, time.Time{}, true)
			}
			p.flushSinks()
			return
		}
	}
}

func (p *Pipeline) process(b *batch) {
	sw := p.stages.batch(len(b.evs))
	p.now = time.Time{}
	// Counted first: Stats never shows a verdict before its event.
	p.events.Add(uint64(len(b.evs)))
	runEnd := 0
	for i := range b.evs {
		if i == runEnd && p.cfg.Enrich != nil {
			// A batch holds runs of one cgroup's events: one look-up in
			// the registry for each (timed as the first event's).
			runEnd = i + 1
			for runEnd < len(b.evs) && b.evs[runEnd].CgroupID == b.evs[i].CgroupID {
				runEnd++
			}
			p.cfg.Enrich(b.evs[i:runEnd])
		}
		p.event(&b.evs[i], &sw)
	}
	b.evs, b.strs = b.evs[:0], b.strs[:0]
	select {
	case p.free <- b:
	default:
	}
}

func (p *Pipeline) info(cg uint64) *cgInfo {
	if p.last != nil && p.lastID == cg {
		return p.last
	}
	c := p.cgs[cg]
	if c == nil {
		c = &cgInfo{}
		p.refreshTarget(cg, c)
		p.cgs[cg] = c
	}
	p.lastID, p.last = cg, c
	return c
}

// drop forgets a cgroup's state.
func (p *Pipeline) drop(cg uint64) {
	delete(p.cgs, cg)
	if p.lastID == cg {
		p.last = nil
	}
}

func (p *Pipeline) refreshTarget(cg uint64, c *cgInfo) {
	if p.cfg.Target != nil {
		c.target, c.hasTarget = p.cfg.Target(cg)
	}
}

// event runs one enriched event through gaps → audit → sinks → detector →
// control; sw times its stages when on.
func (p *Pipeline) event(ev *event.Event, sw *stopwatch) {
	c := p.info(ev.CgroupID)
	if !c.known {
		// The first record of a cgroup Begin did not announce (its records
		// were in the ring before): it is the baseline.
		c.lastSeq, c.known = ev.Seq-1, true
	}
	switch {
	case ev.Seq > c.lastSeq+1:
		// Records of one cgroup can reach the ring a little out of order (two
		// threads on two CPUs): the missing numbers wait a moment for their
		// records before they are a gap (see settleGaps).
		c.addMissing(span{from: c.lastSeq + 1, count: ev.Seq - c.lastSeq - 1, at: p.clock(), ctr: ev.Container})
		if len(c.missing) > maxMissing {
			p.gap(c.missing[0].gap(ev.CgroupID))
			c.missing[0] = span{}
			c.missing = c.missing[1:]
		}
	case ev.Seq <= c.lastSeq && len(c.missing) > 0:
		c.fill(ev.Seq)
	}
	if ev.Seq > c.lastSeq {
		c.lastSeq = ev.Seq
	}
	sw.lap(&p.stages.enrich)
	if a := p.cfg.Audit; a != nil {
		if err := a.AppendEvent(ev); err != nil {
			p.auditFailed(err)
		}
	}
	sw.lap(&p.stages.audit)
	for _, s := range p.cfg.Sinks {
		s.Event(ev)
	}
	sw.lap(&p.stages.export)
	if p.cfg.Detector != nil && (!c.hasTarget || c.target.Mode != annotations.ModeLearn) {
		p.detect(ev, c)
	}
	if c.finished && c.lastSeq >= c.finalSeen {
		p.finish(ev.CgroupID, c)
	} else if len(p.gone) > 0 && !c.finished && p.isGone(ev.CgroupID) {
		// A record after its cgroup finished: processed, then forgotten again.
		p.forgetLate(ev.CgroupID)
	}
	sw.lap(&p.stages.detect)
}

// detect runs the detector on one event and handles its verdicts.
func (p *Pipeline) detect(ev *event.Event, c *cgInfo) {
	var vs []detector.Verdict
	if p.tick++; p.tick >= p.cfg.TimeEvery {
		p.tick = 0
		start := time.Now()
		vs = p.cfg.Detector.Observe(ev)
		end := time.Now()
		p.decision.add(end.Sub(start))
		if !ev.Time.IsZero() {
			p.delivery.add(end.Sub(ev.Time))
		}
	} else {
		vs = p.cfg.Detector.Observe(ev)
	}
	for i := range vs {
		p.verdict(&vs[i], c, ev.Time)
	}
}

func (p *Pipeline) isGone(cg uint64) bool {
	_, ok := p.gone[cg]
	return ok
}

// forgetLate drops the state a late record of a finished cgroup made.
func (p *Pipeline) forgetLate(id uint64) {
	p.drop(id)
	if p.cfg.Detector != nil {
		p.cfg.Detector.Forget(id)
	}
	if p.cfg.Audit != nil {
		p.cfg.Audit.Forget(id)
	}
}

// verdict marks a verdict with the controller's decision, audits it, sends
// it to the sinks and has the controller act (enforce).
func (p *Pipeline) verdict(v *detector.Verdict, c *cgInfo, trigger time.Time) {
	p.verdicts.Add(1)
	var acts []control.Action
	t := c.target
	if !c.hasTarget {
		t = control.Target{CgroupID: v.CgroupID, Mode: annotations.ModeDetect}
	}
	if p.cfg.Control != nil {
		acts = p.cfg.Control.Decide(v, t)
	}
	ctrID := ""
	if v.Container != nil {
		ctrID = v.Container.ID
	}
	p.audit(audit.KindVerdict, v.CgroupID, ctrID, v)
	for _, s := range p.cfg.Sinks {
		s.Verdict(v)
	}
	if len(acts) > 0 {
		p.cfg.Control.Execute(v, t, acts, trigger)
	}
}

func (p *Pipeline) gap(g Gap) {
	p.gaps.Add(1)
	p.lost.Add(g.Count)
	ctrID := ""
	if g.Container != nil {
		ctrID = g.Container.ID
	}
	if a := p.cfg.Audit; a != nil {
		if err := a.AppendGap(g.CgroupID, ctrID, g.FromSeq, g.Count); err != nil {
			p.auditFailed(err)
		}
	}
	if p.cfg.Detector != nil {
		p.cfg.Detector.Gap(g.CgroupID, g.Count)
	}
	for _, s := range p.cfg.Sinks {
		s.Gap(g)
	}
}

func (p *Pipeline) handle(m msg) {
	switch m.kind {
	case mSample:
		if _, ok := p.cgs[m.cg]; !ok {
			if _, late := p.gone[m.cg]; late {
				return // a sample taken as its cgroup ended
			}
		}
		c := p.info(m.cg)
		if m.sample.Container == nil && c.hasTarget {
			m.sample.Container = c.target.Container
		}
		if p.cfg.Detector == nil || (c.hasTarget && c.target.Mode == annotations.ModeLearn) {
			return
		}
		p.audit(audit.KindSample, m.cg, ctrIDOf(m.sample.Container), m.sample)
		vs := p.cfg.Detector.Sample(m.sample)
		for i := range vs {
			p.verdict(&vs[i], c, m.sample.Time)
		}
	case mNote:
		p.audit(m.note.kind, m.cg, m.note.ctrID, m.note.body)
		p.forgetLateRecord(m.cg)
	case mBegin:
		delete(p.gone, m.cg) // a new life for the id
		c := p.info(m.cg)
		p.refreshTarget(m.cg, c)
		if !c.known {
			c.lastSeq, c.known = m.seq, true
		}
		c.finished, c.finalSeen, c.onFinish = false, 0, nil
	case mFinish:
		c := p.info(m.cg)
		c.onFinish = m.fn
		c.finished, c.finalSeen = true, m.seq
		c.finishAt = time.Now().Add(p.cfg.FinishWait)
		if c.lastSeq >= c.finalSeen {
			p.finish(m.cg, c)
		}
	case mSync:
		p.records()
		for {
			select {
			case b := <-p.batches:
				p.process(b)
				continue
			default:
			}
			break
		}
		close(m.done)
	case mFlush:
		if p.cfg.Detector != nil {
			vs := p.cfg.Detector.Flush()
			for i := range vs {
				p.verdict(&vs[i], p.info(vs[i].CgroupID), time.Now())
			}
		}
		p.records()
		p.flushSinks()
		close(m.done)
	}
}

// records audits the waiting action records and sends them to the sinks.
func (p *Pipeline) records() {
	for _, r := range p.takeRecords() {
		p.audit(audit.KindAction, r.CgroupID, r.ContainerID, r)
		p.forgetLateRecord(r.CgroupID)
		for _, s := range p.cfg.Sinks {
			s.Action(r)
		}
	}
}

// forgetLateRecord: a record audited for a cgroup that already finished
// (an action record or a note that came after its end) made the audit
// writer hold the cgroup's state again; forget it, or it would stay for
// good.
func (p *Pipeline) forgetLateRecord(cg uint64) {
	if p.cfg.Audit == nil {
		return
	}
	if _, live := p.cgs[cg]; live {
		return
	}
	if _, gone := p.gone[cg]; gone {
		p.cfg.Audit.Forget(cg)
	}
}

// goneFor is how long a finished cgroup is remembered (late records).
const goneFor = 30 * time.Second

// idle flushes the sinks and finishes cgroups whose wait is over. It
// returns when it should run again: idleEvery while runs are missing or
// finished cgroups wait, until the oldest finished cgroup is forgotten
// when only those remain, 0 when nothing waits for time.
func (p *Pipeline) idle() time.Duration {
	now := time.Now()
	waiting := false
	for id, c := range p.cgs {
		if len(c.missing) > 0 {
			p.settleGaps(id, c, now, false)
		}
		if c.finished && now.After(c.finishAt) {
			p.finish(id, c)
			continue
		}
		waiting = waiting || len(c.missing) > 0 || c.finished
	}
	var next time.Duration
	for id, at := range p.gone {
		left := goneFor - now.Sub(at)
		if left < 0 {
			delete(p.gone, id)
			continue
		}
		if next == 0 || left < next {
			next = left + time.Millisecond
		}
	}
	p.flushSinks()
	if waiting {
		return idleEvery
	}
	return next
}

func (p *Pipeline) finishAll() {
	for id, c := range p.cgs {
		if c.finished {
			p.finish(id, c)
		}
	}
}

// finish records a finished cgroup's trailing gap and forgets it.
func (p *Pipeline) finish(id uint64, c *cgInfo) {
	p.settleGaps(id, c, time.Now(), true)
	if c.finalSeen > c.lastSeq {
		var ctr *event.Container
		if c.hasTarget {
			ctr = c.target.Container
		}
		p.gap(Gap{CgroupID: id, Container: ctr, FromSeq: c.lastSeq + 1, Count: c.finalSeen - c.lastSeq})
	}
	if p.cfg.Detector != nil {
		for _, v := range p.cfg.Detector.FlushCgroup(id) {
			p.verdict(&v, c, time.Now())
		}
		p.cfg.Detector.Forget(id)
	}
	if p.cfg.Audit != nil {
		p.cfg.Audit.Forget(id)
	}
	if p.cfg.Control != nil {
		// Not on the worker: the controller may be busy with an action.
		go p.cfg.Control.Forget(id)
	}
	p.drop(id)
	p.gone[id] = time.Now()
	if c.onFinish != nil {
		c.onFinish()
	}
}

func (p *Pipeline) flushSinks() {
	for _, s := range p.cfg.Sinks {
		if err := s.Flush(); err != nil {
			p.sinkErrs.Add(1)
			p.once("sink", "output: %v", err)
		}
	}
}

func (p *Pipeline) audit(kind audit.Kind, cg uint64, ctrID string, body any) {
	if p.cfg.Audit == nil {
		return
	}
	if err := p.cfg.Audit.Append(kind, cg, ctrID, body); err != nil {
		p.auditFailed(err)
	}
}

func (p *Pipeline) auditFailed(err error) {
	p.auditErrs.Add(1)
	p.once("audit", "audit log: append failed (counted from now on): %v", err)
}

func (p *Pipeline) once(kind, format string, args ...any) {
	if _, loaded := p.errOnce.LoadOrStore(kind, true); !loaded {
		p.cfg.Errorf(format, args...)
	}
}

func ctrIDOf(c *event.Container) string {
	if c == nil {
		return ""
	}
	return c.ID
}
