package agent

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/pipeline"
)

// Sampling bounds the agent's reads of the containers' cgroup files
// (cpu.stat and cgroup.threads), which feed the detector's resource rules
// (cpu-abuse, tracer-flood). Reading both files of every container four
// times a second costs the agent more than everything else it does once a
// node runs thousands of containers, so the files are read at the full
// rate only for the containers that can fire a resource rule soon, and
// the others at a slower rate, all within a budget of CPU time and one of
// reads per second:
//
//   - hot: the container used at least HotCPU cores between its last two
//     samples, made at least HotEvents syscalls a second (the tracer's
//     counters, read once a second for the heartbeat), went over its
//     tracing budget, or exec'd a program; it stays hot for CoolAfter
//     after its last such sign. Sampled every Every.
//   - suspect: a verdict on it in the last SuspectFor, or something the
//     response ladder holds on it (a throttle is restored when its verdicts
//     stop, so it must go on being sampled). Sampled every Every.
//   - idle: the others, sampled every IdleEvery (cpu.stat only; its thread
//     count is read again when its CPU rises).
//
// A container is read as soon as it is tracked, and again a tick later
// (its CPU rate says its class). Each tick reads the most
// overdue containers first (time since the last sample over the class's
// period, weighted: suspect, then hot, then idle) and no more files than
// Budget a second allows: under more demand the idle period stretches
// first, and none starves.
// A container cannot fire a CPU rule without using CPU, and the first
// sample after it starts to spin makes it hot: the detection of a busy
// container is as fast as before; a container that turns from idle to a
// spin without exec'ing anything is seen at its next idle sample (at most
// the idle period, stretched by the budget, later than at the full rate).
type Sampling struct {
	// Every is the full rate (default: the agent's SampleEvery, 250 ms).
	Every time.Duration
	// IdleEvery is an idle container's period while the budget allows
	// (default 2 s).
	IdleEvery time.Duration
	// CPU is the share of one core the sampling may spend, all containers
	// together (default DefaultSampleCPU; at most 1).
	CPU float64
	// Budget is the cgroup files read a second at most, all containers
	// together (default 2000; a hot or suspect container's sample reads
	// three, an idle one's one).
	Budget int
	// HotCPU (cores) and HotEvents (syscalls a second) make a container hot
	// (defaults 0.05 and 1000).
	HotCPU    float64
	HotEvents float64
	// CoolAfter is how long a container stays hot after its last sign
	// (default 10 s, longer than the 3 s the CPU rules need); SuspectFor
	// how long after a verdict or an action (default 60 s).
	CoolAfter, SuspectFor time.Duration
}

// withDefaults fills the zero fields.
func (s Sampling) withDefaults(every time.Duration) Sampling {
	if s.Every <= 0 {
		s.Every = every
	}
	if s.Every <= 0 {
		s.Every = 250 * time.Millisecond
	}
	if s.IdleEvery <= 0 {
		s.IdleEvery = 2 * time.Second
	}
	s.IdleEvery = max(s.IdleEvery, s.Every)
	if s.CPU <= 0 {
		s.CPU = DefaultSampleCPU
	}
	s.CPU = min(s.CPU, 1)
	if s.Budget <= 0 {
		s.Budget = 2000
	}
	if s.HotCPU <= 0 {
		s.HotCPU = 0.05
	}
	if s.HotEvents <= 0 {
		s.HotEvents = 1000
	}
	if s.CoolAfter <= 0 {
		s.CoolAfter = 10 * time.Second
	}
	if s.SuspectFor <= 0 {
		s.SuspectFor = time.Minute
	}
	return s
}

// DefaultSampleCPU is the share of a core the sampling spends at most
// unless told (vigil agent --sample-cpu). An idle container that starts
// to spin without a syscall (a miner woken over an open connection) is
// seen at its next idle sample, so the budget is a detection delay too:
// measured at 2,000 containers, 0.05 stretched the idle period to 21-36 s,
// 0.2 to 3.5 s (the reads' own 2 s was 0.21 cores there). Below about
// 1,000 containers the budget does not bind.
const DefaultSampleCPU = 0.2

// The weights of the classes in the order of a tick's reads: a hot
// container due for a tick goes before an idle one overdue up to 8 times
// its period (16 s at the default 2 s), a suspect one before both. When
// the hot ones alone want more than the budget, idle ones still come
// once they are that far overdue: none starves.
const (
	hotWeight     = 8
	suspectWeight = 16
)

// fullReads is what a hot or suspect container's sample reads: cpu.stat,
// cgroup.threads, and cpu.pressure for how long it waited for a CPU; an
// idle one's reads cpu.stat only.
const fullReads = 3

// sampler is the sampling policy's state: which container to read when.
// It reads no file itself (pure, testable without root); the agent's
// sampleLoop reads what due names and reports it with observed.
type sampler struct {
	cfg Sampling

	mu     sync.Mutex
	cs     map[uint64]*sampleState
	credit float64 // file reads the budget still allows this tick
	cand   []*sampleState
	stats  samplingStats
	// cpu is the CPU time the budget still allows (negative: overspent,
	// to be paid back); planned what the last tick's samples were
	// expected to cost, replaced by what they cost in spent.
	cpu, planned time.Duration
	// statCost and fullCost are the smoothed costs of a sample reading
	// cpu.stat alone and of one reading its three files.
	statCost, fullCost time.Duration
	// tick is the last tick, elapsed the time since the one before (at
	// most a second), sampled the last tick that took a sample.
	tick, sampled time.Time
	elapsed       time.Duration
	// The worst periods between two samples of a container, hot or
	// suspect and idle, in this window of periodWindow and the one
	// before; cpuRate the sampling's smoothed CPU in cores.
	window               time.Time
	worstFull, worstIdle [2]time.Duration
	cpuRate              float64
	// hints (exec, verdicts, actions) come from the pipeline's worker and
	// wait here, under their own lock, for the next tick.
	hintMu sync.Mutex
	hints  []sampleHint
}

type sampleState struct {
	id  uint64
	dir string
	// added is the first tick that saw it; last the tick that last read
	// it; readAt when that read was taken, lastCPU its usage then (ns);
	// threads its thread count when last read (-1: never).
	added, last, readAt time.Time
	lastCPU             uint64
	threads             int
	reads               int // up to 2
	// hotUntil and suspectUntil end its classes.
	hotUntil, suspectUntil time.Time
	// held: the response ladder holds something on it.
	held bool
	// seen and throttled are the tracer's counters at the last heartbeat.
	seen, throttled uint64
	counted         time.Time
	ratio           float64 // how overdue, during a tick
	fullRate        bool    // read at the full rate, during a tick
}

type sampleHint struct {
	id      uint64
	suspect bool
}

// samplingStats is what status shows of the sampler.
type samplingStats struct {
	Hot, Suspect, Idle int
	// Samples counts the samples taken; Deferred the due ones a tick left
	// for later because the budget was spent.
	Samples, Deferred uint64
	// IdleAge is the longest time since the last sample of a container
	// at the last tick (how far the idle period stretched).
	IdleAge time.Duration
	// FullPeriod and IdlePeriod are the longest times between two samples
	// of a hot or suspect container and of an idle one over the last 10
	// to 20 s (FullPeriod stays at Every while the budgets allow).
	FullPeriod, IdlePeriod time.Duration
	// CPU is the sampling's CPU in cores, smoothed over about 10 s; CPUTime
	// its total. StatCost and FullCost are the smoothed costs of an idle
	// sample (cpu.stat) and of a hot one (cpu.stat, cgroup.threads,
	// cpu.pressure).
	CPU                float64
	CPUTime            time.Duration
	StatCost, FullCost time.Duration
}

// periodWindow is how long the worst periods are kept (they cover the
// last one to two windows).
const periodWindow = 10 * time.Second

// The costs a sample is planned at before any was measured: about a
// cpu.stat read's with thousands of cgroups.
const (
	initStatCost = 100 * time.Microsecond
	initFullCost = 150 * time.Microsecond
)

func newSampler(cfg Sampling) *sampler {
	return &sampler{cfg: cfg, cs: map[uint64]*sampleState{}, statCost: initStatCost, fullCost: initFullCost}
}

// sampleJob is one container to read: cpu.stat, and cgroup.threads when
// wantThreads says so.
type sampleJob struct {
	ID  uint64
	Dir string
	// Full is set for hot and suspect containers (both files always).
	Full bool
	// Threads is the last count read (-1: never); readAt and lastCPU the
	// previous reading, for wantThreads.
	Threads int
	readAt  time.Time
	lastCPU uint64
	hotCPU  float64
}

// wantThreads says whether the thread count must be read too: for a
// hot or suspect container, one never read, or one whose CPU since its
// last sample makes it hot (the many-threads rule needs a core or more;
// that read is beyond the budget, once, as the container turns hot).
func (j sampleJob) wantThreads(now time.Time, cpuNs uint64) bool {
	if j.Full || j.Threads < 0 || j.readAt.IsZero() {
		return true
	}
	return cores(j.lastCPU, cpuNs, now.Sub(j.readAt)) >= j.hotCPU
}

func cores(from, to uint64, d time.Duration) float64 {
	if d <= 0 || to < from {
		return 0
	}
	return float64(to-from) / float64(d)
}

// track adds a container to sample (at the next tick) or updates its
// directory.
func (s *sampler) track(id uint64, dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trackLocked(id, dir)
}

func (s *sampler) trackLocked(id uint64, dir string) {
	if st := s.cs[id]; st != nil {
		st.dir = dir
		return
	}
	s.cs[id] = &sampleState{id: id, dir: dir, threads: -1}
}

// untrack forgets a container.
func (s *sampler) untrack(id uint64) {
	s.mu.Lock()
	delete(s.cs, id)
	s.mu.Unlock()
}

// sync makes the sampled set the tracked containers dirs names (cgroup
// id → directory; learn-mode containers left out by the caller), and
// held the ones the response ladder holds something on.
func (s *sampler) sync(dirs map[uint64]string, held map[uint64]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, c := range s.cs {
		// One tracked since the caller listed them, not seen by a tick
		// yet, stays (the Stopped callback forgets it if it ends).
		if _, ok := dirs[id]; !ok && !c.added.IsZero() {
			delete(s.cs, id)
		}
	}
	for id, dir := range dirs {
		s.trackLocked(id, dir)
		s.cs[id].held = held[id]
	}
}

// hint marks a container hot (it exec'd) or suspect (a verdict or an
// action on it) from the next tick on. It never waits on a tick.
func (s *sampler) hint(id uint64, suspect bool) {
	s.hintMu.Lock()
	if len(s.hints) < 4096 { // more between two ticks: the rest stay hot by their CPU
		s.hints = append(s.hints, sampleHint{id, suspect})
	}
	s.hintMu.Unlock()
}

// counters takes the tracer's counters (the heartbeat's read, once a
// second): a container making HotEvents syscalls a second or going over
// its tracing budget is hot.
func (s *sampler) counters(now time.Time, all map[uint64]bpf.Counters) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, n := range all {
		st := s.cs[id]
		if st == nil {
			continue
		}
		if !st.counted.IsZero() && n.Seen >= st.seen {
			d := now.Sub(st.counted)
			if (d > 0 && float64(n.Seen-st.seen)/d.Seconds() >= s.cfg.HotEvents) || n.Throttled > st.throttled {
				st.hotUntil = later(st.hotUntil, now.Add(s.cfg.CoolAfter))
			}
		}
		st.seen, st.throttled, st.counted = n.Seen, n.Throttled, now
	}
}

// due is the tick at now: the containers to read, most overdue first,
// as many as the budgets allow. The caller reports what the round cost
// with spent.
func (s *sampler) due(now time.Time) []sampleJob {
	s.hintMu.Lock()
	hints := s.hints
	s.hints = nil
	s.hintMu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hints {
		if st := s.cs[h.id]; st != nil {
			st.hotUntil = later(st.hotUntil, now.Add(s.cfg.CoolAfter))
			if h.suspect {
				st.suspectUntil = later(st.suspectUntil, now.Add(s.cfg.SuspectFor))
			}
		}
	}
	// The budget of one tick (in files read), and at most one tick's worth
	// saved from the ticks before (a late tick does not read twice as
	// much), but never less than one full sample's reads: a budget below
	// that reads a container every few ticks instead of none ever.
	perTick := float64(s.cfg.Budget) * s.cfg.Every.Seconds()
	s.credit = min(s.credit+perTick, max(2*perTick, fullReads))
	// The CPU budget the same way, for the time since the last tick (a
	// late tick has more), never less than one hot sample's cost.
	elapsed := s.cfg.Every
	if !s.tick.IsZero() {
		elapsed = min(max(now.Sub(s.tick), 0), time.Second)
	}
	s.tick, s.elapsed = now, elapsed
	s.cpu = min(s.cpu+share(s.cfg.CPU, elapsed), max(2*share(s.cfg.CPU, s.cfg.Every), s.fullCost))
	s.planned = 0
	if now.Sub(s.window) >= periodWindow {
		s.worstFull = [2]time.Duration{0, s.worstFull[0]}
		s.worstIdle = [2]time.Duration{0, s.worstIdle[0]}
		s.window = now
	}

	// A container is due when its period has (nearly) passed: within half
	// a tick, so that the full rate is one sample a tick.
	slack := s.cfg.Every / 2
	s.cand = s.cand[:0]
	var st samplingStats
	for _, c := range s.cs {
		period, weight := s.cfg.IdleEvery, 1.0
		switch {
		case c.suspectUntil.After(now) || c.held:
			st.Suspect++
			period, weight = s.cfg.Every, suspectWeight
		case c.hotUntil.After(now) || c.reads == 1:
			// hot, or read once: its CPU rate needs a second reading
			st.Hot++
			period, weight = s.cfg.Every, hotWeight
		default:
			st.Idle++
		}
		c.fullRate = period == s.cfg.Every
		if c.last.IsZero() {
			// Never read: first, as a suspect one due, and one more for
			// each 8 ticks it waits since the first that saw it (a hot
			// one gains 8 a tick: thousands tracked at once hold up a hot
			// one for 3 ticks at most, and none waits for ever).
			if c.added.IsZero() {
				c.added = now
			}
			c.ratio = suspectWeight + float64(now.Sub(c.added))/float64(hotWeight*s.cfg.Every)
			s.cand = append(s.cand, c)
			continue
		}
		age := now.Sub(c.last)
		st.IdleAge = max(st.IdleAge, age)
		if age+slack < period {
			continue
		}
		c.ratio = weight * float64(age) / float64(period)
		s.cand = append(s.cand, c)
	}
	slices.SortFunc(s.cand, func(a, b *sampleState) int {
		switch {
		case a.ratio > b.ratio:
			return -1
		case a.ratio < b.ratio:
			return 1
		}
		return 0
	})
	// Two passes: the hot and suspect ones due first, with at most 3/4 of
	// what the budgets gain a tick (so that the idle ones stretch first,
	// and no further than the rest allows); then all that are left, most
	// overdue first (an idle one 8 times overdue goes before a due hot
	// one: none starves when the hot ones alone want more than the
	// budgets).
	var jobs []sampleJob
	taken := 0
	hotReads, hotCPU := perTick*3/4, share(s.cfg.CPU, elapsed)*3/4
	take := func(c *sampleState, hot bool) bool {
		full := s.full(c, now) || c.threads < 0
		reads, cost := 1.0, s.statCost
		if full {
			reads, cost = fullReads, s.fullCost
		}
		if s.credit < reads {
			return false
		}
		if hot {
			if hotReads < reads || hotCPU < cost {
				return false
			}
			hotReads, hotCPU = hotReads-reads, hotCPU-cost
		}
		// Over the CPU budget: none more, unless nothing was sampled for a
		// second (none starves, whatever the budget and the overhead).
		if s.cpu < cost && (taken > 0 || now.Sub(s.sampled) < time.Second) {
			return false
		}
		s.credit -= reads
		s.cpu -= cost
		s.planned += cost
		taken++
		jobs = append(jobs, sampleJob{ID: c.id, Dir: c.dir, Full: full, Threads: c.threads, readAt: c.readAt, lastCPU: c.lastCPU, hotCPU: s.cfg.HotCPU})
		if !c.last.IsZero() {
			if gap := now.Sub(c.last); c.fullRate {
				s.worstFull[0] = max(s.worstFull[0], gap)
			} else {
				s.worstIdle[0] = max(s.worstIdle[0], gap)
			}
		}
		// Read now: a failed read is not retried before its period.
		c.last = now
		return true
	}
	for _, c := range s.cand {
		if c.fullRate && !c.last.IsZero() && !take(c, true) {
			break
		}
	}
	for _, c := range s.cand {
		if c.last != now && !take(c, false) {
			break
		}
	}
	if taken > 0 {
		s.sampled = now
	}
	st.Samples, st.Deferred = s.stats.Samples, s.stats.Deferred+uint64(len(s.cand)-taken)
	st.CPU, st.CPUTime, st.StatCost, st.FullCost = s.stats.CPU, s.stats.CPUTime, s.statCost, s.fullCost
	st.FullPeriod = max(s.worstFull[0], s.worstFull[1])
	st.IdlePeriod = max(s.worstIdle[0], s.worstIdle[1])
	s.stats = st
	clear(s.cand) // keep no pointers to forgotten containers
	return jobs
}

// share is the CPU time a share of a core allows in d.
func share(cores float64, d time.Duration) time.Duration {
	return time.Duration(cores * float64(d))
}

// roundCost is what a sampling round cost in CPU time: Total from before
// due to the last sample handed on; Stat and Full the samples that read
// cpu.stat alone (NStat of them) and those that read the three files
// (NFull).
type roundCost struct {
	Total, Stat, Full time.Duration
	NStat, NFull      int
}

// spent charges the CPU budget what the round of the last due cost
// instead of what it was planned at, and learns the samples' costs.
func (s *sampler) spent(c roundCost) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Overspent, it pays back at most a second's budget: a round far
	// over its plan (a stall, a burst of the kernel's flush) does not
	// stop the sampling for long.
	s.cpu = max(s.cpu+s.planned-c.Total, -max(share(s.cfg.CPU, time.Second), s.fullCost))
	s.planned = 0
	const alpha = 0.25 // per round: about a second at 4 rounds a second
	if c.NStat > 0 {
		s.statCost += time.Duration(alpha * float64(c.Stat/time.Duration(c.NStat)-s.statCost))
	}
	if c.NFull > 0 {
		s.fullCost += time.Duration(alpha * float64(c.Full/time.Duration(c.NFull)-s.fullCost))
	}
	// The smoothed rate: the round over the time since the tick before,
	// over about 10 s.
	if s.elapsed > 0 {
		a := min(float64(s.elapsed)/float64(10*time.Second), 1)
		s.cpuRate += a * (float64(c.Total)/float64(s.elapsed) - s.cpuRate)
	}
	s.stats.CPU, s.stats.CPUTime = s.cpuRate, s.stats.CPUTime+c.Total
	s.stats.StatCost, s.stats.FullCost = s.statCost, s.fullCost
}

// full says whether a container is read at the full rate (hot or suspect).
func (s *sampler) full(c *sampleState, now time.Time) bool {
	return c.hotUntil.After(now) || c.suspectUntil.After(now) || c.held
}

// observed records a sample read at now (threads -1: not read): its CPU
// since the reading before makes it hot or not.
func (s *sampler) observed(id uint64, now time.Time, cpuNs uint64, threads int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Samples++
	st := s.cs[id]
	if st == nil {
		return
	}
	if threads >= 0 {
		st.threads = threads
	}
	if !st.readAt.IsZero() && cores(st.lastCPU, cpuNs, now.Sub(st.readAt)) >= s.cfg.HotCPU {
		st.hotUntil = later(st.hotUntil, now.Add(s.cfg.CoolAfter))
	}
	st.lastCPU, st.readAt = cpuNs, now
	st.reads = min(st.reads+1, 2)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// snapshot is a copy of the sampler's figures at the last tick.
func (s *sampler) snapshot() samplingStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// sampleLoop feeds the detector tracked containers' CPU use and thread
// counts (a busy loop makes few syscalls: it shows here), as the sampling
// policy says: hot and suspect containers every SampleEvery, idle ones
// less often, within the budgets (see Sampling). It runs on a thread of
// its own, named vigil-sample (top -H), whose CPU clock measures what
// the sampling costs.
func (a *Agent) sampleLoop(ctx context.Context) {
	if a.eng == nil {
		return
	}
	// Never unlocked: the thread ends with the loop, name and all.
	runtime.LockOSThread()
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&sampleThreadName[0])), 0, 0, 0)
	t := time.NewTicker(a.smp.cfg.Every)
	defer t.Stop()
	buf := make([]byte, 4096)
	var synced time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a.smp.spent(a.sampleRound(now, buf, &synced))
		}
	}
}

var sampleThreadName = []byte("vigil-sample\x00")

// sampleRound is one tick of sampleLoop: it reads what the sampler says
// is due, hands the samples to the pipeline and returns what that cost
// the thread.
func (a *Agent) sampleRound(now time.Time, buf []byte, synced *time.Time) roundCost {
	var c roundCost
	start := threadCPU()
	// The registry's list once a second (a container tracked meanwhile is
	// added by the Started callback at once).
	if now.Sub(*synced) >= time.Second {
		a.syncSampler()
		*synced = now
	}
	// The heartbeat's read of the tracer's counters (once a second):
	// reading them per container per sample cost more than all else the
	// agent does with thousands of containers.
	th := a.throttled.Load()
	jobs := a.smp.due(now)
	prev := threadCPU()
	for _, j := range jobs {
		busy := a.sampleOne(j, buf, th)
		at := threadCPU()
		if busy {
			c.Full += at - prev
			c.NFull++
		} else {
			c.Stat += at - prev
			c.NStat++
		}
		prev = at
	}
	c.Total = prev - start
	return c
}

// sampleOne reads one container's files and hands the sample on; busy
// says it read all three (the cost of a hot sample).
func (a *Agent) sampleOne(j sampleJob, buf []byte, th *map[uint64]uint64) (busy bool) {
	at := time.Now()
	cs, err := bpf.ReadCPUStat(j.Dir, buf)
	if err != nil {
		return false
	}
	threads := -1
	busy = j.wantThreads(at, cs.UsageNs)
	if busy {
		if threads, err = bpf.ReadThreads(j.Dir, buf); err != nil {
			return true
		}
	}
	a.smp.observed(j.ID, at, cs.UsageNs, threads)
	if threads < 0 {
		threads = j.Threads // idle since it was counted
	}
	smp := detector.Sample{CgroupID: j.ID, Time: at, CPUUsageNs: cs.UsageNs, Threads: threads}
	if busy {
		// a busy container: how long it waited for a CPU too
		// (cpu-starved-spinning-threads judges demand, so that a starved
		// miner does not hide); 0 is unknown
		smp.CPUWaitNs, smp.CPUThrottledNs = bpf.CgroupPressure(j.Dir), cs.ThrottledNs
	}
	if th != nil {
		smp.Throttled = (*th)[j.ID]
	}
	a.pl.Sample(smp)
	return busy
}

// threadCPU is the calling thread's CPU time (the sampling loop's thread
// is locked to it).
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// samplerSink gives the sampler the pipeline's hints: an exec makes its
// container hot (a program starting, a miner's first instants), a verdict
// or an action makes it suspect.
type samplerSink struct{ s *sampler }

var execNr, execatNr = syscallNr("execve"), syscallNr("execveat")

func syscallNr(name string) int32 {
	if n, ok := event.SyscallNr(name); ok {
		return int32(n)
	}
	return -1
}

func (k samplerSink) Event(ev *event.Event) {
	if (ev.Nr == execNr || ev.Nr == execatNr) && ev.Ret == 0 {
		k.s.hint(ev.CgroupID, false)
	}
}

func (k samplerSink) Verdict(v *detector.Verdict) { k.s.hint(v.CgroupID, true) }

func (k samplerSink) Action(r control.Record) {
	if !r.Undo {
		k.s.hint(r.CgroupID, true)
	}
}

func (samplerSink) Gap(pipeline.Gap) {}
func (samplerSink) Flush() error     { return nil }
