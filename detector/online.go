package detector

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"vigil.dev/vigil/event"
)

// DefaultWindowEvents is how many events of a cgroup make one model window
// when a model is trained from or applied to event streams.
const DefaultWindowEvents = 1000

// windowMaxAge closes a window early when it spans this much event time.
const windowMaxAge = int64(10 * time.Second)

// windower cuts a cgroup's event stream into units: windows of n events
// (or windowMaxAge of event time), each split into per-thread sequences of
// syscall numbers.
type windower struct {
	n     int
	count int
	start int64
	end   int64
	tids  map[uint32]int
	// last is the index in order of the thread of the previous event
	// (-1: none): most events come from the thread before them.
	last  int
	order []uint32
	seqs  [][]int32
	tail  map[uint32][]int32 // per thread, its last syscalls before this window
}

func newWindower(n int) *windower {
	if n <= 0 {
		n = DefaultWindowEvents
	}
	return &windower{n: n, tids: map[uint32]int{}, last: -1, tail: map[uint32][]int32{}}
}

// add appends an event; it reports whether the window is complete.
func (w *windower) add(ev *event.Event) bool {
	t := eventTime(ev)
	if w.count == 0 {
		w.start = t
	}
	w.end = t
	i := w.last
	if i < 0 || w.order[i] != ev.TID {
		var ok bool
		if i, ok = w.tids[ev.TID]; !ok {
			i = len(w.order)
			w.tids[ev.TID] = i
			w.order = append(w.order, ev.TID)
			if i < len(w.seqs) {
				w.seqs[i] = w.seqs[i][:0]
			} else {
				w.seqs = append(w.seqs, nil)
			}
		}
		w.last = i
	}
	w.seqs[i] = append(w.seqs[i], ev.Nr)
	w.count++
	return w.count >= w.n || t-w.start >= windowMaxAge
}

// syscallNames names syscall numbers (nil for none).
func syscallNames(nrs []int32) []string {
	if nrs == nil {
		return nil
	}
	out := make([]string, len(nrs))
	for i, nr := range nrs {
		out[i] = event.SyscallName(int(nr))
	}
	return out
}

// unit copies the window out as a Unit and starts a new window.
func (w *windower) unit(source string, index int) Unit {
	u := Unit{Source: source, Index: index, first: w.start, last: w.end}
	w.bound()
	for i, tid := range w.order {
		u.Seqs = append(u.Seqs, syscallNames(w.seqs[i]))
		u.Prefix = append(u.Prefix, syscallNames(w.tail[tid]))
	}
	w.next()
	return u
}

// bound forgets the threads' contexts when they are too many (threads
// come and go); a window's scoring calls it before it reads them.
func (w *windower) bound() {
	if len(w.tail) > modelTailCap {
		clear(w.tail)
	}
}

// next starts a new window: each thread's context becomes the end of its
// sequence in this one.
func (w *windower) next() {
	for i, tid := range w.order {
		seq, t := w.seqs[i], w.tail[tid]
		if len(seq) >= ngramOrder-1 {
			t = append(t[:0], seq[len(seq)-(ngramOrder-1):]...)
		} else {
			t = append(t, seq...)
			if len(t) > ngramOrder-1 {
				t = append(t[:0], t[len(t)-(ngramOrder-1):]...)
			}
		}
		w.tail[tid] = t
	}
	w.count = 0
	w.order = w.order[:0]
	w.last = -1
	clear(w.tids)
}

// onlineModel applies a Model to live event streams.
type onlineModel struct {
	m      *Model
	window int
	rule   string
	tok    []uint16 // per native syscall number, its token
}

// tokOf is a syscall number's token.
func (o *onlineModel) tokOf(nr int32) uint16 {
	if nr >= 0 && int(nr) < len(o.tok) {
		return o.tok[nr]
	}
	return o.m.tok(event.SyscallName(int(nr)))
}

// score scores the window w holds as Model.Score scores it as a Unit,
// from its syscall numbers and with sc's buffers.
func (o *onlineModel) score(w *windower, sc *scoreScratch) Scores {
	m := o.m
	var raw [5]float64
	var worst []string
	if m.HasSeq && len(w.order) > 0 {
		ws := m.seqParts(&raw, len(w.order), func(i int, buf []uint16) []uint16 {
			seq := w.seqs[i]
			if len(seq) == 0 {
				return nil
			}
			ctx := w.tail[w.order[i]]
			for j := len(ctx); j < ngramOrder-1; j++ {
				buf = append(buf, m.bos())
			}
			for _, nr := range ctx {
				buf = append(buf, o.tokOf(nr))
			}
			for _, nr := range seq {
				buf = append(buf, o.tokOf(nr))
			}
			return buf
		}, sc)
		if ws.ok {
			worst = syscallNames(w.seqs[ws.seq][ws.from:ws.to])
		}
	}
	if m.HasCounts {
		cv := &sc.cv
		cv.known = slices.Grow(cv.known[:0], len(m.Vocab))[:len(m.Vocab)]
		clear(cv.known)
		cv.unknown = cv.unknown[:0]
		unk := m.unk()
		for i := range w.order {
			for _, nr := range w.seqs[i] {
				if t := o.tokOf(nr); t < unk {
					cv.known[t]++
					continue
				}
				name := event.SyscallName(int(nr))
				found := false
				for k := range cv.unknown {
					if cv.unknown[k].name == name {
						cv.unknown[k].n++
						found = true
						break
					}
				}
				if !found {
					cv.unknown = append(cv.unknown, nameCount{name, 1})
				}
			}
		}
		m.countParts(&raw, cv, sc)
	}
	s := m.combine(raw)
	return Scores{Score: s, Anomalous: s > m.Threshold, Parts: raw, Worst: worst}
}

func newOnlineModel(m *Model) *onlineModel {
	n := m.WindowN
	if n <= 0 {
		n = DefaultWindowEvents
	}
	name := m.Name
	if name == "" {
		name = "default"
	}
	o := &onlineModel{m: m, window: n, rule: "model:" + name, tok: make([]uint16, maxNativeNr+1)}
	for nr := range o.tok {
		o.tok[nr] = m.tok(event.SyscallName(nr))
	}
	return o
}

// modelState is a cgroup's current window.
type modelState struct {
	w      *windower
	index  int
	series seriesState // the last windows' scores and accumulated evidence (Model.Context, Model.Accum)
	// rulesOnly says why the model does not score this cgroup ("": it
	// does): the model was learned for another workload.
	rulesOnly string
}

// modelApplies says whether a model learned for workload name scores a
// container of workload key: a model without a name scores every
// container, a container outside a runtime (no key) is scored by any
// model, otherwise the keys must match. It returns why not when it does
// not.
func modelApplies(name, key string) (bool, string) {
	if name == "" || key == "" || name == key {
		return true, ""
	}
	return false, fmt.Sprintf("rules only: no model for workload %q (the model is for %q)", key, name)
}

func (o *onlineModel) observe(cg *cgState, ev *event.Event, sc *scoreScratch, out []Verdict) []Verdict {
	if cg.model == nil {
		cg.model = &modelState{w: newWindower(o.window)}
		if ok, why := modelApplies(o.m.Name, WorkloadKey(ev.Container)); !ok {
			cg.model.rulesOnly = why
		}
	}
	ms := cg.model
	if ms.rulesOnly != "" {
		return out
	}
	if !ms.w.add(ev) {
		return out
	}
	return o.close(cg, ev.CgroupID, ev.PID, ev.TID, ev.Seq, sc, out)
}

func (o *onlineModel) close(cg *cgState, cgroup uint64, pid, tid uint32, seq uint64, sc *scoreScratch, out []Verdict) []Verdict {
	ms := cg.model
	ms.w.bound()
	n := ms.w.count
	index := ms.index
	ms.index++
	if n < minScoreLen {
		ms.w.next()
		return out
	}
	s := o.m.next(&ms.series, o.score(ms.w, sc))
	t := ms.w.end
	ms.w.next()
	if !s.Anomalous {
		return out
	}
	sev := Medium
	if s.Score > 2*o.m.Threshold {
		sev = High
	}
	note := fmt.Sprintf("window %d: %d syscalls, score %.3f > threshold %.3f (ngram %.2f bits, stide %.2f, freq %.3f, count %.2f SD)",
		index, n, s.Score, o.m.Threshold, s.Parts[0], s.Parts[1], s.Parts[2], s.Parts[3])
	return append(out, Verdict{
		ID:        verdictID(o.rule, cgroup, pid, tid, seq, t),
		Time:      time.Unix(0, t).UTC(),
		CgroupID:  cgroup,
		Container: cg.container,
		PID:       pid,
		TID:       tid,
		Class:     ClassAnomaly,
		Severity:  sev,
		Rule:      o.rule,
		Score:     s.Score,
		Message:   "syscall behaviour unlike the learned model: " + strings.Join(s.Worst, " "),
		Evidence:  []Evidence{{Time: time.Unix(0, t).UTC(), Sequence: s.Worst, Note: note}},
	})
}

// ModelStatus says how the learned model treats a cgroup the engine has
// seen: "model NAME" when the model scores it, "rules only: no model for
// workload KEY (the model is for NAME)" when the model was learned for
// another workload, so only the rules judge it. It is "" when the engine
// has no model or has not seen the cgroup.
func (e *Engine) ModelStatus(cgroupID uint64) string {
	rs := e.rs.Load()
	if rs.online == nil {
		return ""
	}
	sh := &e.shards[cgroupID%uint64(len(e.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cg := sh.cgs[cgroupID]
	if cg == nil || cg.model == nil {
		return ""
	}
	if cg.model.rulesOnly != "" {
		return cg.model.rulesOnly
	}
	return "model " + strings.TrimPrefix(rs.online.rule, "model:")
}

// Flush scores every partial model window (at the end of a trace or
// before a container is forgotten) and returns the verdicts, in cgroup
// order.
// FlushCgroup scores the partial window the model holds for one cgroup
// (a container that ended), like Flush does for all.
func (e *Engine) FlushCgroup(cgroupID uint64) []Verdict {
	rs := e.rs.Load()
	if rs.online == nil {
		return nil
	}
	sh := &e.shards[cgroupID%uint64(len(e.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cg := sh.cgs[cgroupID]
	if cg == nil || cg.model == nil || cg.model.w.count == 0 || cg.gen != rs.gen {
		return nil
	}
	return rs.online.close(cg, cgroupID, 0, 0, cg.events, &sh.model, nil)
}

func (e *Engine) Flush() []Verdict {
	rs := e.rs.Load()
	if rs.online == nil {
		return nil
	}
	var out []Verdict
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		ids := make([]uint64, 0, len(sh.cgs))
		for id, cg := range sh.cgs {
			if cg.model != nil && cg.model.w.count > 0 && cg.gen == rs.gen {
				ids = append(ids, id)
			}
		}
		sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
		for _, id := range ids {
			out = rs.online.close(sh.cgs[id], id, 0, 0, sh.cgs[id].events, &sh.model, out)
		}
		sh.mu.Unlock()
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].CgroupID < out[b].CgroupID })
	return out
}
