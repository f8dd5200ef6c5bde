package agent

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

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
// the others at a slower rate, all within a budget of reads per second:
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
	// Budget is the cgroup files read a second at most, all containers
	// together (default 2000; a hot or suspect container's sample reads
	// four, an idle one's one).
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
}

func newSampler(cfg Sampling) *sampler {
	return &sampler{cfg: cfg, cs: map[uint64]*sampleState{}}
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
// as many as the budget allows.
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
	var jobs []sampleJob
	taken := 0
	for _, c := range s.cand {
		full := s.full(c, now) || c.threads < 0
		cost := 1.0
		if full {
			cost = fullReads
		}
		if s.credit < cost {
			break
		}
		s.credit -= cost
		taken++
		jobs = append(jobs, sampleJob{ID: c.id, Dir: c.dir, Full: full, Threads: c.threads, readAt: c.readAt, lastCPU: c.lastCPU, hotCPU: s.cfg.HotCPU})
		// Read now: a failed read is not retried before its period.
		c.last = now
	}
	st.Samples, st.Deferred = s.stats.Samples, s.stats.Deferred+uint64(len(s.cand)-taken)
	s.stats = st
	clear(s.cand) // keep no pointers to forgotten containers
	return jobs
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

// readCPUStat reads a cgroup's cumulative CPU usage (cpu.stat usage_usec,
// in ns) with buf as its buffer.
func readCPUStat(dir string, buf []byte) (uint64, error) {
	usage, _, err := readCPUStats(dir, buf)
	return usage, err
}

// readCPUStats reads, in one read of cpu.stat, a cgroup's cumulative CPU
// usage and the time its cpu.max quota held it (usage_usec and
// throttled_usec, in ns; throttled 0 without the cpu controller).
func readCPUStats(dir string, buf []byte) (usage, throttled uint64, err error) {
	b, err := readSmall(dir+"/cpu.stat", buf)
	if err != nil {
		return 0, 0, err
	}
	found := false
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if v, ok := bytes.CutPrefix(line, []byte("usage_usec ")); ok {
			us, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return 0, 0, err
			}
			usage, found = us*1000, true
		} else if v, ok := bytes.CutPrefix(line, []byte("throttled_usec ")); ok {
			if us, err := strconv.ParseUint(string(v), 10, 64); err == nil {
				throttled = us * 1000
			}
		}
	}
	if !found {
		return 0, 0, errNoUsage
	}
	return usage, throttled, nil
}

var errNoUsage = errors.New("cgroup cpu.stat: no usage_usec")

// readThreads counts a cgroup's threads (cgroup.threads, one a line).
func readThreads(dir string, buf []byte) (int, error) {
	fd, err := unix.Open(dir+"/cgroup.threads", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	n := 0
	for {
		k, err := unix.Read(fd, buf)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return 0, err
		}
		if k == 0 {
			return n, nil
		}
		n += bytes.Count(buf[:k], []byte{'\n'})
	}
}

// readSmall reads a small file into buf (the first len(buf) bytes).
func readSmall(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		k, err := unix.Read(fd, buf[n:])
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return nil, err
		}
		if k == 0 {
			break
		}
		n += k
	}
	return buf[:n], nil
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
