package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/privtest"
	"vigil.dev/vigil/pipeline"
)

var sampleT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// simCgroup is a container's CPU use for the sampling tests: cores from
// a time on.
type simCgroup struct {
	cores []simPhase
}

type simPhase struct {
	from  time.Duration // since sampleT0
	cores float64
}

// usage is the cumulative CPU (ns) at now.
func (c simCgroup) usage(now time.Time) uint64 {
	t := now.Sub(sampleT0)
	var ns float64
	for i, p := range c.cores {
		end := t
		if i+1 < len(c.cores) {
			end = min(t, c.cores[i+1].from)
		}
		if end > p.from {
			ns += float64(end-p.from) * p.cores
		}
	}
	return uint64(ns)
}

// simulate runs the sampler's ticks from sampleT0 for d, reading the
// simulated cgroups, and calls each(job, now) for every sample taken.
func simulate(s *sampler, cgs map[uint64]simCgroup, d time.Duration, each func(j sampleJob, now time.Time, cpu uint64)) {
	for now := sampleT0.Add(s.cfg.Every); !now.After(sampleT0.Add(d)); now = now.Add(s.cfg.Every) {
		for _, j := range s.due(now) {
			cpu := cgs[j.ID].usage(now)
			threads := -1
			if j.wantThreads(now, cpu) {
				threads = 1
			}
			s.observed(j.ID, now, cpu, threads)
			if each != nil {
				each(j, now, cpu)
			}
		}
	}
}

func countSamples(s *sampler, cgs map[uint64]simCgroup, d time.Duration) map[uint64]int {
	n := map[uint64]int{}
	simulate(s, cgs, d, func(j sampleJob, _ time.Time, _ uint64) { n[j.ID]++ })
	return n
}

func TestSamplingIdleRarelyBusyFullRate(t *testing.T) {
	s := newSampler(Sampling{}.withDefaults(250 * time.Millisecond))
	cgs := map[uint64]simCgroup{
		1: {cores: []simPhase{{0, 0.001}}}, // idle
		2: {cores: []simPhase{{0, 0.8}}},   // busy
	}
	for id := range cgs {
		s.track(id, fmt.Sprint("/cg/", id))
	}
	const d = 60 * time.Second
	n := countSamples(s, cgs, d)
	// The idle one: at once, then every 2 s.
	if n[1] < 30 || n[1] > 32 {
		t.Errorf("idle container sampled %d times in %v, want about 31 (twice at once, then every 2 s)", n[1], d)
	}
	if n[2] != int(d/(250*time.Millisecond)) {
		t.Errorf("busy container sampled %d times in %v, want %d (every tick)", n[2], d, d/(250*time.Millisecond))
	}
	if st := s.snapshot(); st.Hot != 1 || st.Idle != 1 {
		t.Errorf("stats %+v, want 1 hot, 1 idle", st)
	}
}

// TestSamplingTinyBudget: a budget below one busy sample's reads a tick
// (--sample-budget 1) still samples, every few ticks, instead of never.
func TestSamplingTinyBudget(t *testing.T) {
	s := newSampler(Sampling{Budget: 1}.withDefaults(250 * time.Millisecond))
	cgs := map[uint64]simCgroup{1: {cores: []simPhase{{0, 0.8}}}}
	s.track(1, "/cg/1")
	const d = 60 * time.Second
	// 1 read a second, fullReads reads a busy sample: one every fullReads
	// seconds or so
	want := int(d.Seconds()) / fullReads
	if n := countSamples(s, cgs, d)[1]; n < want*2/3 || n > want+1 {
		t.Errorf("busy container sampled %d times in %v with a budget of 1 read a second, want about %d", n, d, want)
	}
}

func TestSamplingIdleTurnsBusy(t *testing.T) {
	s := newSampler(Sampling{}.withDefaults(250 * time.Millisecond))
	spin := 30*time.Second + 100*time.Millisecond
	cgs := map[uint64]simCgroup{1: {cores: []simPhase{{0, 0}, {spin, 1}}}}
	s.track(1, "/cg/1")
	var first time.Time // the first sample at the full rate after the spin
	var prev time.Time
	simulate(s, cgs, 40*time.Second, func(j sampleJob, now time.Time, _ uint64) {
		if first.IsZero() && now.After(sampleT0.Add(spin)) && !prev.IsZero() && now.Sub(prev) == s.cfg.Every {
			first = now
		}
		prev = now
	})
	if first.IsZero() {
		t.Fatal("never sampled at the full rate after it started to spin")
	}
	if late := first.Sub(sampleT0.Add(spin)); late > s.cfg.IdleEvery+s.cfg.Every {
		t.Errorf("full rate %v after the spin started, want at most the idle period %v and a tick", late, s.cfg.IdleEvery)
	}
}

func TestSamplingBudgetHolds(t *testing.T) {
	// The read budget's test: a core of CPU budget allows 10,000 samples
	// a second at their first estimate, far more than 2,000 reads.
	cfg := Sampling{Budget: 2000, CPU: 1}.withDefaults(250 * time.Millisecond)
	s := newSampler(cfg)
	cgs := map[uint64]simCgroup{}
	const n = 10000
	for id := uint64(1); id <= n; id++ {
		cores := 0.001
		if id <= 20 {
			cores = 1 // 20 busy ones among them
		}
		cgs[id] = simCgroup{cores: []simPhase{{0, cores}}}
		s.track(id, fmt.Sprint("/cg/", id))
	}
	perTick := map[time.Time]int{}
	last := map[uint64]time.Time{}
	var maxGap time.Duration
	busy := map[uint64]int{}
	const d = 70 * time.Second
	simulate(s, cgs, d, func(j sampleJob, now time.Time, _ uint64) {
		perTick[now]++
		if l, ok := last[j.ID]; ok && now.Sub(l) > maxGap && now.After(sampleT0.Add(40*time.Second)) {
			maxGap = now.Sub(l)
		}
		last[j.ID] = now
		if j.ID <= 20 && now.After(sampleT0.Add(30*time.Second)) {
			busy[j.ID]++
		}
	})
	total := 0
	for at, k := range perTick {
		total += k
		if k > 2*cfg.Budget/4 {
			t.Errorf("%v: %d samples in one tick, budget %d a second", at.Sub(sampleT0), k, cfg.Budget)
		}
	}
	if limit := int(float64(cfg.Budget)*d.Seconds()) + cfg.Budget/2; total > limit {
		t.Errorf("%d samples in %v, budget allows %d", total, d, limit)
	}
	if len(last) != n {
		t.Errorf("%d of %d containers sampled", len(last), n)
	}
	// Once all were read twice (a full sample at first: 40,000 reads, and
	// 10,000 more), every container is read at least every n / (budget
	// less the busy ones' 320 reads a second), 5.9 s, and a little: none
	// starves.
	if want := 7 * time.Second; maxGap > want {
		t.Errorf("a container waited %v between samples, want at most %v", maxGap, want)
	}
	// The busy ones keep the full rate (20 of them need 80 a second).
	for id := uint64(1); id <= 20; id++ {
		if busy[id] < 118 { // 30 s at 4 a second, less a tick
			t.Errorf("busy container %d sampled %d times in the last 30 s, want 120 (every tick)", id, busy[id])
		}
	}
	if st := s.snapshot(); st.Hot != 20 || st.Idle != n-20 || st.Deferred == 0 {
		t.Errorf("stats %+v, want 20 hot, %d idle, some deferred", st, n-20)
	}
}

// costModel is what sampling costs the sampler's thread in the tests: a
// sample reading cpu.stat alone (stat), one reading its three files
// (full), at a time since sampleT0; and each round's own work (tick).
type costModel struct {
	stat, full func(at time.Duration) time.Duration
	tick       time.Duration
}

func constCost(d time.Duration) func(time.Duration) time.Duration {
	return func(time.Duration) time.Duration { return d }
}

// simulateCost is simulate with the sampling's cost reported to the
// sampler after each round, as the agent's loop does; each gets every
// round's cost too (jobs nil).
func simulateCost(s *sampler, cgs map[uint64]simCgroup, d time.Duration, m costModel, each func(j *sampleJob, now time.Time, c roundCost)) {
	for now := sampleT0.Add(s.cfg.Every); !now.After(sampleT0.Add(d)); now = now.Add(s.cfg.Every) {
		at := now.Sub(sampleT0)
		c := roundCost{Total: m.tick}
		for _, j := range s.due(now) {
			cpu := cgs[j.ID].usage(now)
			threads := -1
			if j.wantThreads(now, cpu) {
				threads = 1
				c.Full += m.full(at)
				c.NFull++
			} else {
				c.Stat += m.stat(at)
				c.NStat++
			}
			s.observed(j.ID, now, cpu, threads)
			if each != nil {
				each(&j, now, c)
			}
		}
		c.Total += c.Stat + c.Full
		s.spent(c)
		if each != nil {
			each(nil, now, c)
		}
	}
}

// TestSamplingCPUBudgetHolds: 5,000 containers whose cpu.stat reads cost
// 140 µs (as at 5,000 cgroups on the test VM), 20 of them busy, and a
// CPU budget of 0.05 cores: the sampling spends no more, the busy ones
// keep the full rate, the idle period stretches from 2 s to about 14 s,
// every container is read, and the stats say so.
func TestSamplingCPUBudgetHolds(t *testing.T) {
	cfg := Sampling{CPU: 0.05, Budget: 1e6}.withDefaults(250 * time.Millisecond)
	s := newSampler(cfg)
	cgs := map[uint64]simCgroup{}
	const n, nbusy = 5000, 20
	for id := uint64(1); id <= n; id++ {
		cores := 0.001
		if id <= nbusy {
			cores = 1
		}
		cgs[id] = simCgroup{cores: []simPhase{{0, cores}}}
		s.track(id, fmt.Sprint("/cg/", id))
	}
	m := costModel{stat: constCost(140 * time.Microsecond), full: constCost(200 * time.Microsecond), tick: 300 * time.Microsecond}
	const d, from = 120 * time.Second, 60 * time.Second // measured over the last minute
	var total, late time.Duration
	last := map[uint64]time.Time{}
	var idleGap time.Duration
	busy := map[uint64]int{}
	simulateCost(s, cgs, d, m, func(j *sampleJob, now time.Time, c roundCost) {
		if j == nil {
			total += c.Total
			if now.Sub(sampleT0) > from {
				late += c.Total
			}
			return
		}
		if l, ok := last[j.ID]; ok && j.ID > nbusy && now.Sub(sampleT0) > from {
			idleGap = max(idleGap, now.Sub(l))
		}
		last[j.ID] = now
		if j.ID <= nbusy && now.Sub(sampleT0) > from {
			busy[j.ID]++
		}
	})
	if limit := share(cfg.CPU, d) + 2*share(cfg.CPU, cfg.Every) + m.full(0); total > limit {
		t.Errorf("sampling cost %v in %v, the budget of %.2f cores allows %v", total, d, cfg.CPU, limit)
	}
	if lo, hi := share(cfg.CPU*0.95, d-from), share(cfg.CPU, d-from)+2*share(cfg.CPU, cfg.Every); late < lo || late > hi {
		t.Errorf("sampling cost %v in the last %v, want the budget's %v (it is spent, no more)", late, d-from, share(cfg.CPU, d-from))
	}
	for id := uint64(1); id <= nbusy; id++ {
		if want := int((d-from)/cfg.Every) - 1; busy[id] < want {
			t.Errorf("busy container %d sampled %d times in the last %v, want %d (every tick)", id, busy[id], d-from, want)
		}
	}
	if len(last) != n {
		t.Errorf("%d of %d containers sampled", len(last), n)
	}
	// What the busy ones leave (50 ms a second less 20 x 4 x 200 µs and
	// the ticks' 1.2 ms): 32.8 ms a second, 234 idle samples at 140 µs,
	// each idle one every 21.3 s (the busy ones take 34 % of the budget,
	// under the 3/4 they may take first).
	st := s.snapshot()
	t.Logf("in the last %v: sampling %v (%.4f cores), worst idle period %v; stats %+v", d-from, late, late.Seconds()/(d-from).Seconds(), idleGap, st)
	if idleGap < 20*time.Second || idleGap > 2*hotWeight*cfg.IdleEvery {
		t.Errorf("worst idle period %v, want the 2 s stretched to 21 s (at most 32 s) by the CPU budget", idleGap)
	}
	if st.FullPeriod != cfg.Every || st.IdlePeriod < 20*time.Second || st.IdlePeriod > 23*time.Second {
		t.Errorf("stats: worst periods %v (hot), %v (idle); want %v and about 21.3 s", st.FullPeriod, st.IdlePeriod, cfg.Every)
	}
	near := func(a, b time.Duration) bool { return a > b*99/100 && a < b*101/100 }
	if st.CPU < cfg.CPU*0.95 || st.CPU > cfg.CPU*1.01 || !near(st.StatCost, 140*time.Microsecond) || !near(st.FullCost, 200*time.Microsecond) {
		t.Errorf("stats: sampling %.4f cores (budget %.2f), costs %v and %v, want about the budget, 140 µs and 200 µs", st.CPU, cfg.CPU, st.StatCost, st.FullCost)
	}
	if st.CPUTime != total {
		t.Errorf("stats: CPU time %v, the rounds cost %v", st.CPUTime, total)
	}
}

// TestSamplingCPUFollowsCost: the same containers, whose reads cost 60 µs
// for a minute, then 150 µs (the kernel's flush with more cgroups): the
// sampler learns the cost, reads 2.5 times fewer a second, and stays
// within the budget in both.
func TestSamplingCPUFollowsCost(t *testing.T) {
	cfg := Sampling{CPU: 0.05, Budget: 1e6}.withDefaults(250 * time.Millisecond)
	s := newSampler(cfg)
	cgs := map[uint64]simCgroup{}
	for id := uint64(1); id <= 3000; id++ {
		cgs[id] = simCgroup{cores: []simPhase{{0, 0.001}}}
		s.track(id, "/cg")
	}
	const change = 60 * time.Second
	cost := func(at time.Duration) time.Duration {
		if at < change {
			return 60 * time.Microsecond
		}
		return 150 * time.Microsecond
	}
	var samples, spent [2]int64 // 30-60 s and 90-120 s
	simulateCost(s, cgs, 2*change, costModel{stat: cost, full: cost, tick: 100 * time.Microsecond}, func(j *sampleJob, now time.Time, c roundCost) {
		at := now.Sub(sampleT0)
		w := -1
		switch {
		case at > change/2 && at <= change:
			w = 0
		case at > change*3/2:
			w = 1
		}
		if w < 0 {
			return
		}
		if j != nil {
			samples[w]++
		} else {
			spent[w] += int64(c.Total)
		}
	})
	window := (change / 2).Seconds()
	t.Logf("samples a second: %.0f at 60 µs, %.0f at 150 µs; cores %.4f, %.4f", float64(samples[0])/window, float64(samples[1])/window,
		float64(spent[0])/1e9/window, float64(spent[1])/1e9/window)
	if r := float64(samples[0]) / float64(samples[1]); r < 2.2 || r > 2.8 {
		t.Errorf("%d samples at 60 µs, %d at 150 µs (ratio %.2f), want about 2.5 times fewer", samples[0], samples[1], r)
	}
	// The budget, and what two ticks may have saved before the window.
	hi := (cfg.CPU*window + 2*cfg.CPU*cfg.Every.Seconds()) / window
	for w, ns := range spent {
		if cores := float64(ns) / 1e9 / window; cores < 0.045 || cores > hi {
			t.Errorf("window %d: %.4f cores of sampling, want the budget, 0.05 (at most %.4f)", w, cores, hi)
		}
	}
}

// TestSamplingCPUNoneStarves: when a round's own work costs more than the
// budget allows (a tiny --sample-cpu, a slow machine), a sample is still
// taken once a second, and every container in turn.
func TestSamplingCPUNoneStarves(t *testing.T) {
	cfg := Sampling{CPU: 0.01, Budget: 1e6}.withDefaults(250 * time.Millisecond)
	s := newSampler(cfg)
	cgs := map[uint64]simCgroup{}
	for id := uint64(1); id <= 10; id++ {
		cgs[id] = simCgroup{cores: []simPhase{{0, 0.001}}}
		s.track(id, "/cg")
	}
	const d = 60 * time.Second
	last := map[uint64]time.Time{}
	var gap, quiet time.Duration
	var prev time.Time
	simulateCost(s, cgs, d, costModel{stat: constCost(time.Millisecond), full: constCost(2 * time.Millisecond), tick: 5 * time.Millisecond},
		func(j *sampleJob, now time.Time, _ roundCost) {
			if j == nil {
				return
			}
			if l, ok := last[j.ID]; ok {
				gap = max(gap, now.Sub(l))
			}
			if !prev.IsZero() {
				quiet = max(quiet, now.Sub(prev))
			}
			last[j.ID], prev = now, now
		})
	if len(last) != len(cgs) {
		t.Errorf("%d of %d containers sampled", len(last), len(cgs))
	}
	if quiet > time.Second+cfg.Every {
		t.Errorf("no sample for %v, want one a second at least", quiet)
	}
	if gap > 12*time.Second {
		t.Errorf("a container waited %v between samples, want about 10 s (10 of them, one a second)", gap)
	}
}

// TestSamplingCPUHotOverBudget: busy containers that alone want three
// times the CPU budget take 3/4 of it first and the rest by how overdue
// each is: the idle ones are still read, as overdue as the busy ones
// (their time since the last sample over their period, weighted 8 to 1).
func TestSamplingCPUHotOverBudget(t *testing.T) {
	cfg := Sampling{CPU: 0.05, Budget: 1e6}.withDefaults(250 * time.Millisecond)
	s := newSampler(cfg)
	cgs := map[uint64]simCgroup{}
	const nbusy, n = 200, 300 // 200 x 4 x 200 µs: 0.16 cores
	for id := uint64(1); id <= n; id++ {
		cores := 0.001
		if id <= nbusy {
			cores = 1
		}
		cgs[id] = simCgroup{cores: []simPhase{{0, cores}}}
		s.track(id, "/cg")
	}
	const d, from = 120 * time.Second, 60 * time.Second
	last := map[uint64]time.Time{}
	var idleGap, hotGap time.Duration
	var hotCPU, allCPU time.Duration
	simulateCost(s, cgs, d, costModel{stat: constCost(140 * time.Microsecond), full: constCost(200 * time.Microsecond), tick: 100 * time.Microsecond},
		func(j *sampleJob, now time.Time, c roundCost) {
			if now.Sub(sampleT0) <= from {
				return
			}
			if j == nil {
				allCPU += c.Total
				return
			}
			if j.ID <= nbusy {
				hotCPU += 200 * time.Microsecond
			}
			if l, ok := last[j.ID]; ok && j.ID <= nbusy {
				hotGap = max(hotGap, now.Sub(l))
			} else if ok {
				idleGap = max(idleGap, now.Sub(l))
			}
			last[j.ID] = now
		})
	if len(last) != n {
		t.Errorf("%d of %d containers sampled in the last %v", len(last), n, d-from)
	}
	// As overdue: idle gap / 2 s = 8 x busy gap / 250 ms.
	t.Logf("worst periods: busy %v, idle %v", hotGap, idleGap)
	if limit := time.Duration(float64(hotGap)*hotWeight*float64(cfg.IdleEvery)/float64(cfg.Every)) + 2*cfg.IdleEvery; idleGap > limit || hotGap > 2*time.Second {
		t.Errorf("an idle container waited %v, a busy one %v: want the busy ones under 2 s, the idle ones at most %v", idleGap, hotGap, limit)
	}
	if f := float64(hotCPU) / float64(allCPU); f < 0.75 || f > 0.99 {
		t.Errorf("the busy ones had %.2f of the sampling's CPU, want 3/4 or more, and not all", f)
	}
	if limit := share(cfg.CPU, d-from) + 2*share(cfg.CPU, cfg.Every); allCPU > limit {
		t.Errorf("sampling cost %v in %v, the budget allows %v", allCPU, d-from, limit)
	}
}

// TestSamplingCPUUnderBudget: 1,000 containers at 60 µs a read need 0.03
// cores: nothing stretches, and the stats show the cost.
func TestSamplingCPUUnderBudget(t *testing.T) {
	cfg := Sampling{}.withDefaults(250 * time.Millisecond)
	s := newSampler(cfg)
	cgs := map[uint64]simCgroup{}
	for id := uint64(1); id <= 1000; id++ {
		cgs[id] = simCgroup{cores: []simPhase{{0, 0.001}}}
		s.track(id, "/cg")
	}
	simulateCost(s, cgs, 60*time.Second, costModel{stat: constCost(60 * time.Microsecond), full: constCost(90 * time.Microsecond), tick: 100 * time.Microsecond}, nil)
	st := s.snapshot()
	if st.IdlePeriod > cfg.IdleEvery+cfg.Every || st.IdlePeriod < cfg.IdleEvery {
		t.Errorf("worst idle period %v, want the idle period %v (the budget allows it)", st.IdlePeriod, cfg.IdleEvery)
	}
	if want := 0.0304; st.CPU < want*0.95 || st.CPU > want*1.05 {
		t.Errorf("sampling %.4f cores, want %.4f (500 reads a second at 60 µs, 4 ticks at 100 µs)", st.CPU, want)
	}
}

// TestSamplingCPUStall: a round far over its plan (the thread stalled in
// the kernel for a second) stops the sampling for about a second, no
// more: the debt is capped.
func TestSamplingCPUStall(t *testing.T) {
	cfg := Sampling{}.withDefaults(250 * time.Millisecond)
	s := newSampler(cfg)
	s.track(1, "/cg")
	stallAt := 10 * time.Second
	var stalled, after time.Time
	for now := sampleT0.Add(cfg.Every); now.Before(sampleT0.Add(20 * time.Second)); now = now.Add(cfg.Every) {
		c := roundCost{Total: 100 * time.Microsecond}
		for range s.due(now) {
			c.Stat, c.NStat = 60*time.Microsecond, 1
			if stalled.IsZero() && now.Sub(sampleT0) >= stallAt {
				c.Stat, stalled = time.Second, now
			} else if !stalled.IsZero() && after.IsZero() {
				after = now
			}
			c.Total += c.Stat
		}
		s.spent(c)
		// A busy container: read every tick while the budget allows.
		s.cs[1].hotUntil = now.Add(time.Hour)
	}
	if stalled.IsZero() || after.IsZero() {
		t.Fatal("not sampled after the stall")
	}
	if wait := after.Sub(stalled); wait < time.Second || wait > time.Second+2*cfg.Every {
		t.Errorf("sampled again %v after a round that cost 1 s, want after about 1 s", wait)
	}
}

func TestSamplingHints(t *testing.T) {
	cfg := Sampling{}.withDefaults(250 * time.Millisecond)
	now := sampleT0
	for _, tc := range []struct {
		name  string
		apply func(s *sampler)
		full  time.Duration // how long from now it is read at the full rate
	}{
		{"nothing", func(*sampler) {}, 0},
		{"exec", func(s *sampler) { s.hint(1, false) }, cfg.CoolAfter},
		{"verdict", func(s *sampler) { s.hint(1, true) }, cfg.SuspectFor},
		{"held by the ladder", func(s *sampler) { s.sync(map[uint64]string{1: "/cg/1"}, map[uint64]bool{1: true}) }, time.Hour},
		{"syscalls", func(s *sampler) {
			s.counters(now, map[uint64]bpf.Counters{1: {Seen: 100}})
			s.counters(now.Add(time.Second), map[uint64]bpf.Counters{1: {Seen: 100 + 2000}})
		}, cfg.CoolAfter + time.Second},
		{"few syscalls", func(s *sampler) {
			s.counters(now, map[uint64]bpf.Counters{1: {Seen: 100}})
			s.counters(now.Add(time.Second), map[uint64]bpf.Counters{1: {Seen: 150}})
		}, 0},
		{"over its tracing budget", func(s *sampler) {
			s.counters(now, map[uint64]bpf.Counters{1: {Seen: 100}})
			s.counters(now.Add(time.Second), map[uint64]bpf.Counters{1: {Seen: 110, Throttled: 5}})
		}, cfg.CoolAfter + time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSampler(cfg)
			// Tracked and read twice, idle.
			s.track(1, "/cg/1")
			s.due(now.Add(-cfg.Every))
			s.observed(1, now.Add(-cfg.Every), 1000, 1)
			s.due(now)
			s.observed(1, now, 1000, 1)
			tc.apply(s)
			next := now.Add(cfg.Every)
			if got := len(s.due(next)); (tc.full > 0) != (got == 1) {
				t.Fatalf("due %d at the next tick, want full rate: %v", got, tc.full > 0)
			}
			if tc.full > 0 && tc.full < time.Hour {
				// It cools down at the end.
				s.due(now.Add(tc.full + cfg.Every))
				if st := s.snapshot(); st.Hot+st.Suspect != 0 {
					t.Errorf("still at the full rate after %v: %+v", tc.full, st)
				}
			}
		})
	}
}

func TestSamplingThreadsOnlyWhenNeeded(t *testing.T) {
	j := sampleJob{Threads: 3, readAt: sampleT0, lastCPU: 1e9, hotCPU: 0.05}
	now := sampleT0.Add(2 * time.Second)
	if j.wantThreads(now, 1e9+1e6) {
		t.Error("idle container (0.0005 cores): its thread count is read again")
	}
	if !j.wantThreads(now, 1e9+5e8) {
		t.Error("a container at 0.25 cores: its thread count is not read")
	}
	if !(sampleJob{Threads: -1}).wantThreads(now, 0) {
		t.Error("never counted: not read")
	}
	j.Full = true
	if !j.wantThreads(now, 1e9) {
		t.Error("hot container: not read")
	}
}

// TestSamplingDetectionLatency runs the detector's default CPU rules on
// the samples the policy takes: a container that starts to spin is found
// as fast as at the full rate when it is hot (or exec'd), and at most the
// idle period later when it was idle, also among 10,000 containers.
func TestSamplingDetectionLatency(t *testing.T) {
	const cg = 7
	spinAt := 90*time.Second + 130*time.Millisecond
	// verdictAt feeds samples of container cg (before cores, then a spin
	// from spinAt, with an exec at the spin when hint) to a detector with
	// the default rules, every tick when fullRate or as the policy says,
	// among others idle containers, and returns how long after spinAt
	// the cpu-spin rule fired.
	verdictAt := func(t *testing.T, before float64, others int, hint bool, fullRate bool) time.Duration {
		eng, err := pipeline.Detection{}.NewDetector()
		if err != nil {
			t.Fatal(err)
		}
		eng.Observe(&event.Event{Seq: 1, Time: sampleT0, CgroupID: cg, PID: 10, TID: 10, Nr: int32(syscallNr("execve")),
			Path: "/opt/app/cruncher", Comm: "cruncher"})
		cgs := map[uint64]simCgroup{cg: {cores: []simPhase{{0, before}, {spinAt, 1}}}}
		s := newSampler(Sampling{Budget: 2000, CPU: 1}.withDefaults(250 * time.Millisecond))
		s.track(cg, "/cg")
		for i := 0; i < others; i++ {
			id := uint64(1000 + i)
			cgs[id] = simCgroup{cores: []simPhase{{0, 0.001}}}
			s.track(id, "/cg/other")
		}
		var fired time.Duration
		feed := func(now time.Time, cpu uint64) {
			for _, v := range eng.Sample(detector.Sample{CgroupID: cg, Time: now, CPUUsageNs: cpu, Threads: 1}) {
				if v.Rule == "cpu-spin-few-syscalls" && fired == 0 {
					fired = now.Sub(sampleT0) - spinAt
				}
			}
		}
		hinted := false
		for now := sampleT0.Add(s.cfg.Every); fired == 0 && now.Before(sampleT0.Add(spinAt+time.Minute)); now = now.Add(s.cfg.Every) {
			if hint && !hinted && now.After(sampleT0.Add(spinAt)) {
				s.hint(cg, false) // the miner's exec, seen before this tick
				hinted = true
			}
			if fullRate {
				feed(now, cgs[cg].usage(now))
				continue
			}
			for _, j := range s.due(now) {
				cpu := cgs[j.ID].usage(now)
				s.observed(j.ID, now, cpu, 1)
				if j.ID == cg {
					feed(now, cpu)
				}
			}
		}
		if fired == 0 {
			t.Fatal("the spin was not found")
		}
		return fired
	}
	for _, tc := range []struct {
		name   string
		before float64 // cores before the spin
		others int
		hint   bool
		within time.Duration // later than at the full rate, at most
	}{
		{"busy before, alone", 0.2, 0, false, 0},
		{"busy before, among 10000", 0.2, 10000, false, 0},
		{"idle, alone", 0.002, 0, false, 2 * time.Second},
		{"idle, exec'd a program, alone", 0.002, 0, true, 2 * time.Second},
		{"idle, among 10000 (budget stretches the idle period to 5 s)", 0.002, 10000, false, 5*time.Second + 500*time.Millisecond},
		{"idle, exec'd a program, among 10000", 0.002, 10000, true, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full := verdictAt(t, tc.before, 0, false, true)
			if full > 2*time.Second {
				t.Fatalf("at the full rate found %v after the spin started, want about 1.5 s", full)
			}
			got := verdictAt(t, tc.before, tc.others, tc.hint, false)
			t.Logf("found %v after the spin started (full rate: %v)", got, full)
			if got > full+tc.within {
				t.Errorf("found %v after the spin started, at the full rate %v: more than %v later", got, full, tc.within)
			}
		})
	}
}

func TestReadThreads(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "cgroup.threads"), []byte("10\n11\n12\n"), 0o644)
	if n, err := bpf.ReadThreads(dir, make([]byte, 4)); err != nil || n != 3 {
		t.Errorf("ReadThreads = %d, %v, want 3 (read 4 bytes at a time)", n, err)
	}
	if _, err := bpf.ReadThreads(filepath.Join(dir, "gone"), make([]byte, 4)); err == nil {
		t.Error("no cgroup: no error")
	}
}

// TestSampleRealCgroups samples real cgroups through the agent's round
// (bpf.ReadCPUStat, cgroup.threads, cpu.pressure, the thread's CPU
// clock): a spinning one turns hot and is read every tick with its
// thread count, the idle ones are read at their period, and what the
// rounds cost is measured and held under the CPU budget.
func TestSampleRealCgroups(t *testing.T) {
	privtest.Require(t)
	runtime.LockOSThread() // the thread's CPU clock measures the rounds
	defer runtime.UnlockOSThread()
	const n = 200
	cgs := make([]*bpf.Cgroup, 0, n)
	t.Cleanup(func() {
		for _, cg := range cgs {
			if err := cg.Remove(); err != nil {
				t.Error(err)
			}
		}
	})
	for i := range n {
		cg, err := bpf.NewCgroup(fmt.Sprintf("vigil-test-sample-%d-%d", os.Getpid(), i))
		if err != nil {
			t.Fatal(err)
		}
		cgs = append(cgs, cg)
	}
	// The first one spins (two threads: a shell and its busy child).
	cmd := exec.Command("/bin/sh", "-c", "while :; do :; done & while :; do :; done")
	cmd.SysProcAttr = cgs[0].SysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cgs[0].Kill(); cmd.Wait() })

	eng, err := pipeline.Detection{}.NewDetector()
	if err != nil {
		t.Fatal(err)
	}
	pl := pipeline.New(pipeline.Config{Detector: eng})
	done := make(chan struct{})
	go func() { pl.Run(t.Context()); close(done) }()
	defer func() { pl.Close(); <-done }()
	const every = 100 * time.Millisecond
	const cpu = 0.02 // 2 ms a tick: fewer than the 200 first samples
	a := &Agent{pl: pl, smp: newSampler(Sampling{CPU: cpu, Budget: 1e6, IdleEvery: time.Second}.withDefaults(every))}
	for _, cg := range cgs {
		a.smp.track(cg.ID, cg.Path)
	}
	buf := make([]byte, 4096)
	synced := time.Now().Add(time.Hour) // no registry to list
	start := time.Now()
	var total time.Duration
	hot := 0
	const d = 4 * time.Second
	for now := start; now.Sub(start) < d; now = time.Now() {
		samples := a.smp.snapshot().Samples
		c := a.sampleRound(now, buf, &synced)
		a.smp.spent(c)
		total += c.Total
		if c.Total <= 0 || (c.NStat+c.NFull > 0 && c.Stat+c.Full <= 0) {
			t.Fatalf("round %+v: no CPU time measured", c)
		}
		if got := a.smp.snapshot().Samples - samples; got != uint64(c.NStat+c.NFull) {
			t.Fatalf("round %+v: %d samples observed", c, got)
		}
		if st := a.smp.cs[cgs[0].ID]; st.hotUntil.After(now) && st.last.Equal(now) {
			hot++
		}
		time.Sleep(every - time.Since(now))
	}
	elapsed := time.Since(start)
	st := a.smp.snapshot()
	t.Logf("%d cgroups, %v: %d samples, sampling CPU %v (%.4f cores), a cpu.stat sample %v, a full one %v; worst periods: hot %v, idle %v",
		n, elapsed.Round(time.Millisecond), st.Samples, total, total.Seconds()/elapsed.Seconds(), st.StatCost, st.FullCost, st.FullPeriod, st.IdlePeriod)
	if st.CPUTime != total {
		t.Errorf("stats CPU time %v, the rounds cost %v", st.CPUTime, total)
	}
	// The budget: its share of the time, what two ticks may save, and one
	// hot sample over (at the start, and when nothing was read for 1 s).
	if limit := share(cpu, elapsed) + 2*share(cpu, every) + 2*st.FullCost; total > limit {
		t.Errorf("sampling cost %v in %v, budget %.2f cores allows %v", total, elapsed, cpu, limit)
	}
	if st.StatCost <= 0 || st.StatCost > 10*time.Millisecond || st.FullCost <= 0 {
		t.Errorf("smoothed costs %v (cpu.stat) and %v (full): want measured, under 10 ms", st.StatCost, st.FullCost)
	}
	spin := a.smp.cs[cgs[0].ID]
	if spin.threads != 2 || spin.lastCPU < 100e6 {
		t.Errorf("spinning cgroup: %d threads, %d ns of CPU read; want 2 threads, over 100 ms", spin.threads, spin.lastCPU)
	}
	if hot < int(d/every)/2 {
		t.Errorf("spinning cgroup read hot in %d of %d rounds, want most", hot, int(d/every))
	}
	for _, cg := range cgs {
		if st := a.smp.cs[cg.ID]; st.readAt.IsZero() {
			t.Fatalf("cgroup %s never read in %v", cg.Path, d)
		}
	}
}

// TestSamplingStormKeepsHot: thousands of containers tracked at once are
// read first, but a busy container already hot waits a few ticks at most.
func TestSamplingStormKeepsHot(t *testing.T) {
	cfg := Sampling{Budget: 2000, CPU: 1}.withDefaults(250 * time.Millisecond)
	s := newSampler(cfg)
	cgs := map[uint64]simCgroup{1: {cores: []simPhase{{0, 1}}}}
	s.track(1, "/cg/1")
	var last time.Time
	var maxGap time.Duration
	storm := false
	simulate(s, cgs, 30*time.Second, func(j sampleJob, now time.Time, _ uint64) {
		if !storm && now.After(sampleT0.Add(5*time.Second)) {
			for id := uint64(2); id <= 10001; id++ {
				cgs[id] = simCgroup{cores: []simPhase{{0, 0.001}}}
				s.track(id, "/cg/n")
			}
			storm = true
		}
		if j.ID != 1 {
			return
		}
		if !last.IsZero() && now.Sub(last) > maxGap {
			maxGap = now.Sub(last)
		}
		last = now
	})
	if maxGap > 4*cfg.Every {
		t.Errorf("the busy container waited %v between samples while 10,000 were tracked, want at most 4 ticks", maxGap)
	}
}

func TestSamplingSync(t *testing.T) {
	s := newSampler(Sampling{}.withDefaults(250 * time.Millisecond))
	s.track(1, "/cg/1")
	s.track(2, "/cg/2")
	s.due(sampleT0) // both seen by a tick
	s.track(3, "/cg/3")
	// The registry's list taken before 3 was tracked, after 2 stopped.
	s.sync(map[uint64]string{1: "/cg/1"}, map[uint64]bool{1: true})
	if _, ok := s.cs[2]; ok {
		t.Error("a container no longer tracked is still sampled")
	}
	if _, ok := s.cs[3]; !ok {
		t.Error("a container tracked since the list was taken is forgotten")
	}
	if !s.cs[1].held {
		t.Error("held by the ladder: not marked")
	}
	s.untrack(3)
	if len(s.cs) != 1 {
		t.Errorf("%d containers sampled, want 1", len(s.cs))
	}
}
