package detector

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"vigil.dev/vigil/event"
)

// Config says which rules and model an Engine runs.
type Config struct {
	// RuleFiles are extra rule files, loaded after the embedded default set
	// (which always loads unless NoDefaultRules). A later file replaces
	// lists, macros and rules of the same name.
	RuleFiles []string
	// RuleTexts are extra rule files given as text (loaded after RuleFiles).
	RuleTexts [][]byte
	// NoDefaultRules leaves the embedded default set out.
	NoDefaultRules bool
	// Lists appends items to the rule lists of the same name, e.g.
	// {"allowed_resolvers": {"10.0.0.10"}} from the node's resolv.conf.
	Lists map[string][]string
	// Model is an optional learned model of normal behaviour; its verdicts
	// have Class anomaly and Rule "model:<name>".
	Model *Model
	// FromFirstExec leaves a cgroup's events before its first successful
	// execve uninspected: in a container that is the runtime setting it up
	// (runc's pivot_root, mounts, setns), not the workload. The agent and
	// replays of its audit log set it; offline inputs have no exec to wait
	// for. Read only by New.
	FromFirstExec bool
	// SelfPID is the thread group id, as the tracer records it (the root
	// pid namespace), of the process that runs this engine: the agent, or
	// vigil trace. When that process sits in a cgroup it traces (it traces
	// itself, or runs in a monitored container), its own syscalls (bpf to
	// load programs and read maps, perf_event_open) are counted but neither
	// judged by the rules nor scored by the model; they still go to the
	// audit log. Only this pid: another process running the same executable
	// is judged like any other. 0: none. Read only by New.
	SelfPID uint32
	// Shards splits per-cgroup state by cgroup id so callers feeding
	// different cgroups from different goroutines do not contend
	// (default: GOMAXPROCS).
	Shards int
}

// Sample is a resource reading of one cgroup, sent periodically (every
// 250 ms by vigil trace and the agent).
type Sample struct {
	CgroupID   uint64
	Container  *event.Container
	Time       time.Time
	CPUUsageNs uint64 // cumulative cgroup CPU usage (cpu.stat usage_usec * 1000)
	Threads    int    // threads in the cgroup now
	// Throttled is the tracer's cumulative count of the cgroup's records
	// dropped for being over its budget (its own flood); 0 when unknown.
	Throttled uint64 `json:",omitempty"`
	// CPUWaitNs is the cumulative time at least one of the cgroup's tasks
	// was runnable but not running: the "some" total of its cpu.pressure
	// (PSI, CONFIG_PSI) in ns; 0 when unknown (a window counts it only
	// when the samples at both its ends carry it). A starved cgroup (the node's
	// CPUs busy with other work, or a low cpu.weight) uses little CPU and
	// waits for it the rest of the time.
	CPUWaitNs uint64 `json:",omitempty"`
	// CPUThrottledNs is the cumulative time the cgroup's cpu.max quota
	// held it (cpu.stat throttled_usec * 1000); 0 when unknown.
	CPUThrottledNs uint64 `json:",omitempty"`
}

// Engine evaluates rules, resource rules and the model. It is safe for
// concurrent use; state is kept per cgroup in shards.
type Engine struct {
	rs       atomic.Pointer[ruleSet]
	gen      atomic.Uint64
	mu       sync.Mutex // serializes Reload
	shards   []shard
	fromExec bool
}

type shard struct {
	mu      sync.Mutex
	self    uint32 // Config.SelfPID
	cgs     map[uint64]*cgState
	lastID  uint64   // the cgroup of the previous event: a shard's events
	lastCg  *cgState // come in runs of one cgroup (nil: none)
	ctx     evalCtx
	scratch event.Event  // the event with normalised paths, while it is observed
	paths   pathBuf      // the memory of the event's normalised paths
	model   scoreScratch // the model's buffers for scoring a window
	_       [64]byte     // keep shards on separate cache lines
}

// cgState is everything the engine remembers about one cgroup.
type cgState struct {
	execd     bool   // its first successful execve was seen (FromFirstExec)
	gen       uint64 // rule generation the per-rule state below belongs to
	container *event.Container
	events    uint64
	procs     procs
	rates     []rateCounter // per rule index (per-container rates)
	// ruleStates holds per-process rate counters and the last verdict time
	// per rule (and process), for throttling. It lives outside the process
	// table: forgetting a process forgets neither.
	ruleStates lru[procRuleKey, ruleState]
	written    writtenFiles // files written in the cgroup, for drift (lineage.go)
	sample     sampleState
	model      *modelState
	// gone are the processes that exited last (exit_group), newest last:
	// a sample rule's window may hold their CPU after the table lost them.
	gone []goneProc
}

// goneProc is a process that exited, as the CPU rules' gate judges it.
type goneProc struct {
	t    int64  // when it exited
	pid  uint32 // its pid
	exe  string // the executable of its last execve
	code string // a file the container wrote that it mapped for execution
}

// maxGone bounds the exited processes a cgroup remembers.
const maxGone = 8

// noteExit remembers the process pid exiting at t, before the table
// forgets it.
func (cg *cgState) noteExit(pid uint32, t int64) {
	p := cg.procs.l.peek(pid)
	if p == nil {
		return
	}
	if len(cg.gone) == maxGone {
		cg.gone = cg.gone[:copy(cg.gone, cg.gone[1:])]
	}
	cg.gone = append(cg.gone, goneProc{t: t, pid: pid, exe: p.exe, code: p.lin.code})
}

// ruleState is the verdict state of one rule for one process (pid 0: the
// container).
type ruleState struct {
	rate    rateCounter // per-process rates
	last    int64       // time of the last verdict
	hasLast bool
}

type procRuleKey struct {
	rule int32 // >= 0 event rule, < 0 sample rule -(idx+1), model: -1<<30
	pid  uint32
}

// rateCounter estimates events per sliding window from two fixed buckets.
type rateCounter struct {
	start int64 // start of the current bucket
	cur   uint32
	prev  uint32
}

func (r *rateCounter) add(t, window int64) float64 {
	switch {
	case r.start == 0 || t >= r.start+2*window:
		r.start, r.cur, r.prev = t, 0, 0
	case t >= r.start+window:
		r.prev, r.cur = r.cur, 0
		r.start += window
	}
	r.cur++
	elapsed := t - r.start
	if elapsed < 0 {
		elapsed = 0
	}
	return float64(r.prev)*float64(window-elapsed)/float64(window) + float64(r.cur)
}

type sampleState struct {
	hist    []histEntry // recent samples, oldest first, covering the longest `for`
	firstT  int64
	baseSum float64
	baseN   int
}

type histEntry struct {
	t         int64
	cpu       uint64
	ev        uint64
	throttled uint64
	wait      uint64 // Sample.CPUWaitNs
	held      uint64 // Sample.CPUThrottledNs
}

// New compiles the rules and returns a ready Engine. Rule errors name the
// file, the line and the problem.
func New(cfg Config) (*Engine, error) {
	n := cfg.Shards
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	e := &Engine{shards: make([]shard, n), fromExec: cfg.FromFirstExec}
	for i := range e.shards {
		e.shards[i].cgs = make(map[uint64]*cgState)
		e.shards[i].self = cfg.SelfPID
	}
	if err := e.Reload(cfg); err != nil {
		return nil, err
	}
	return e, nil
}

// Reload compiles a new configuration and swaps it in atomically; on error
// the running rules stay. Shards is read only by New.
func (e *Engine) Reload(cfg Config) error {
	srcs, err := loadSources(cfg)
	if err != nil {
		return err
	}
	rs, err := compileRules(srcs, cfg.Lists)
	if err != nil {
		return err
	}
	if cfg.Model != nil {
		rs.model = cfg.Model
		rs.online = newOnlineModel(cfg.Model)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	rs.gen = e.gen.Add(1)
	e.rs.Store(rs)
	return nil
}

// Rules lists the names of the loaded rules (event and sample rules), in
// load order.
func (e *Engine) Rules() []string {
	rs := e.rs.Load()
	var out []string
	for _, r := range rs.rules {
		out = append(out, r.name)
	}
	for _, r := range rs.samples {
		out = append(out, r.name)
	}
	return out
}

// Forget drops the state of a cgroup that is gone.
func (e *Engine) Forget(cgroupID uint64) {
	sh := &e.shards[cgroupID%uint64(len(e.shards))]
	sh.mu.Lock()
	delete(sh.cgs, cgroupID)
	sh.lastCg = nil
	sh.mu.Unlock()
}

func (sh *shard) state(id uint64, rs *ruleSet) *cgState {
	cg := sh.lastCg
	if cg == nil || sh.lastID != id {
		if cg = sh.cgs[id]; cg == nil {
			cg = &cgState{}
			sh.cgs[id] = cg
		}
		sh.lastID, sh.lastCg = id, cg
	}
	if cg.gen != rs.gen {
		cg.gen = rs.gen
		cg.rates = make([]rateCounter, len(rs.rules))
		cg.ruleStates = lru[procRuleKey, ruleState]{max: maxRuleStates}
		cg.model = nil
	}
	return cg
}

// eventTime is the event's time in ns: wall clock when the tracer set it,
// else the monotonic time.
func eventTime(ev *event.Event) int64 {
	if !ev.Time.IsZero() {
		return ev.Time.UnixNano()
	}
	return int64(ev.KTime)
}

// Observe runs one event through the rules and the model and returns the
// verdicts it causes (nil, without allocating, when none). It does not keep
// ev or anything that points into it.
func (e *Engine) Observe(ev *event.Event) []Verdict {
	rs := e.rs.Load()
	sh := &e.shards[ev.CgroupID%uint64(len(e.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e.fromExec {
		cg := sh.state(ev.CgroupID, rs)
		if !cg.execd {
			if ev.Ret != 0 || (ev.Nr != execveNr && ev.Nr != execveatNr) {
				if ev.Nr == nrChdir && ev.Ret == 0 && ev.Flags&event.Lost == 0 {
					// the runtime moves the first process to the
					// container's working directory before its exec
					dir := ev.Path
					sh.paths.reset()
					if n := normalize(ev, &cg.procs, &sh.paths); n.changed {
						dir = n.path
					}
					cg.procs.get(ev.PID, true).setCwd(dir)
				}
				return nil
			}
			cg.execd = true
		}
	}
	return sh.observe(rs, ev)
}

// Started marks a cgroup whose workload already runs (a container found
// running after an agent restart): with FromFirstExec its events are
// inspected from now on, without waiting for an exec.
func (e *Engine) Started(cgroupID uint64) {
	sh := &e.shards[cgroupID%uint64(len(e.shards))]
	sh.mu.Lock()
	sh.state(cgroupID, e.rs.Load()).execd = true
	sh.mu.Unlock()
}

// Gap tells the engine that the tracer (or a queue in front of the
// engine) lost count records of a cgroup. With FromFirstExec, a gap before
// the first exec was seen opens the gate: the lost records may have held
// that exec, and a container must never stay uninspected because of a
// drop.
func (e *Engine) Gap(cgroupID uint64, count uint64) {
	if count == 0 || !e.fromExec {
		return
	}
	e.Started(cgroupID)
}

var execveNr, execveatNr = func() (int32, int32) {
	a, _ := event.SyscallNr("execve")
	b, _ := event.SyscallNr("execveat")
	return int32(a), int32(b)
}()

func (sh *shard) observe(rs *ruleSet, ev *event.Event) []Verdict {
	cg := sh.state(ev.CgroupID, rs)
	cg.events++
	if ev.Container != nil && cg.container != ev.Container {
		cg.container = ev.Container
	}
	if ev.Flags&event.Lost != 0 || (ev.PID == sh.self && sh.self != 0) {
		return nil
	}
	nr := ev.Nr
	known := nr >= 0 && int(nr) <= maxNativeNr // numbers past the table reach only the model
	var rules []*rule
	var pres []*pathFilter
	if known {
		rules, pres = rs.byNr[nr], rs.pre[nr]
	}
	orig := ev
	if known && (procTracked[nr] || linTracked[nr] || len(rules) > 0) {
		// rules and the process state see normalised paths; the caller's
		// event stays as it is
		sh.paths.reset()
		if n := normalize(ev, &cg.procs, &sh.paths); n.changed {
			sh.scratch = *ev
			sh.scratch.Path, sh.scratch.Path2, sh.scratch.Addr.Path = n.path, n.path2, n.unix
			ev = &sh.scratch
		}
		if procTracked[nr] {
			cg.procs.update(ev)
		}
		if procTracked[nr] || linTracked[nr] {
			trackLineage(cg, ev)
		}
	}
	var out []Verdict
	if held := cg.procs.takeHeld(); held != nil {
		out = sh.rejudgeHeld(rs, cg, held)
	}
	if len(rules) > 0 {
		t := eventTime(ev)
		ctx := &sh.ctx
		ctx.ev = ev
		ctx.proc = cg.procs.get(ev.PID, false)
		ctx.written = &cg.written
		ctx.pathUser = ""
		if orig.PathUser != "" && orig.Flags&event.UserDiffers != 0 {
			// The kernel's path won; the rules also see the process's spelling,
			// normalised the same way, unless that is the kernel's path
			// itself (tar's ./f1.txt under the directory it opened): a
			// condition matches either spelling, and the one spelling
			// matches the same.
			if u := userPath(orig, &cg.procs, &sh.paths); u != ev.Path {
				ctx.pathUser = u
			}
		}
		var bits eventBits
		haveBits := false
		cand := ^uint64(0) // rules past the 64th are all tried
		if m := rs.masks[nr]; m != nil {
			bits, haveBits = rs.comps.eventBits(ctx), true
			cand = m.candidates(ctx, bits)
		}
		for i, r := range rules {
			if i < 64 && cand&(1<<i) == 0 {
				continue // its filter does not pass the event
			}
			if pre := pres[i]; pre != nil {
				if !haveBits {
					bits, haveBits = rs.comps.eventBits(ctx), true
				}
				if !pre.pass(ctx, bits) {
					continue
				}
			}
			if r.cond != nil && !r.cond.eval(ctx) {
				continue
			}
			note := ""
			if r.rate != nil {
				var rc *rateCounter
				if r.rate.perProcess {
					rc = cg.procRate(r.idx, ev.PID)
				} else {
					rc = &cg.rates[r.idx]
				}
				n := rc.add(t, r.rate.window)
				if n < float64(r.rate.count) {
					continue
				}
				note = fmt.Sprintf("%.0f matching events within %s", n, time.Duration(r.rate.window))
			}
			key := procRuleKey{rule: int32(r.idx), pid: ev.PID}
			if r.rate != nil && !r.rate.perProcess {
				key.pid = 0
			}
			if cg.throttled(key, t, r.throttle) {
				continue
			}
			out = append(out, r.verdict(cg, ev, orig, ctx.proc, t, note))
		}
		ctx.ev, ctx.proc, ctx.written = nil, nil, nil
	}
	if known && uidTracked[nr] {
		// after the rules: they judge the uids the call was made with
		cg.procs.updateUids(ev)
	}
	if rs.online != nil {
		out = rs.online.observe(cg, ev, &sh.model, out)
	}
	if nr == nrExitGroup {
		cg.noteExit(ev.PID, eventTime(ev))
		cg.procs.remove(ev.PID)
	}
	if ev != orig {
		sh.scratch = event.Event{} // keep nothing of the caller's
	}
	return out
}

func (cg *cgState) procRate(idx int, pid uint32) *rateCounter {
	st, fresh := cg.ruleStates.put(procRuleKey{rule: int32(idx), pid: pid})
	if fresh {
		*st = ruleState{}
	}
	return &st.rate
}

// throttled records a verdict of key at t and reports whether one was
// already given within the last throttle ns.
func (cg *cgState) throttled(key procRuleKey, t, throttle int64) bool {
	if throttle <= 0 {
		return false
	}
	st, fresh := cg.ruleStates.put(key)
	if fresh {
		*st = ruleState{}
	}
	if st.hasLast && t-st.last < throttle && t >= st.last {
		return true
	}
	st.last, st.hasLast = t, true
	return false
}

func (r *rule) verdict(cg *cgState, ev, orig *event.Event, p *procState, t int64, note string) Verdict {
	evd := evidenceOf(ev)
	evd.Note = note
	if orig != ev {
		evd.given(orig)
	}
	msg := render(r.message, ev, p, &cg.written)
	return Verdict{
		ID:        verdictID(r.name, ev.CgroupID, ev.PID, ev.TID, ev.Seq, t),
		Time:      time.Unix(0, t).UTC(),
		CgroupID:  ev.CgroupID,
		Container: cg.container,
		PID:       ev.PID,
		TID:       ev.TID,
		Comm:      cloneString(ev.Comm),
		Class:     r.class,
		Severity:  r.severity,
		Rule:      r.name,
		Score:     r.score,
		Message:   msg,
		Tags:      r.tags,
		Maturity:  r.maturity,
		Evidence:  []Evidence{evd},
	}
}

// Sample feeds a resource reading of one cgroup and returns the resource
// verdicts it causes.
func (e *Engine) Sample(s Sample) []Verdict {
	rs := e.rs.Load()
	sh := &e.shards[s.CgroupID%uint64(len(e.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cg := sh.state(s.CgroupID, rs)
	if s.Container != nil {
		cg.container = s.Container
	}
	st := &cg.sample
	t := s.Time.UnixNano()
	if n := len(st.hist); n > 0 && (t <= st.hist[n-1].t || s.CPUUsageNs < st.hist[n-1].cpu) {
		st.hist = st.hist[:0] // time went back or the counter restarted
	}
	if len(st.hist) == 0 {
		st.firstT = t
	}
	st.hist = append(st.hist, histEntry{t: t, cpu: s.CPUUsageNs, ev: cg.events, throttled: s.Throttled, wait: s.CPUWaitNs, held: s.CPUThrottledNs})
	// Keep what the longest sustain needs, plus one sample before it.
	var keep int64
	for _, r := range rs.samples {
		keep = max(keep, r.sustain)
	}
	drop := 0
	for len(st.hist)-drop > 2 && st.hist[drop+1].t <= t-keep {
		drop++
	}
	if drop > 0 {
		// in place: the array is reused, sample after sample
		st.hist = st.hist[:copy(st.hist, st.hist[drop:])]
	}
	if len(st.hist) < 2 {
		return nil
	}
	// The baseline is the mean CPU use over the first minute of samples.
	const baselineWindow = int64(60 * time.Second)
	prev := st.hist[len(st.hist)-2]
	if t-st.firstT <= baselineWindow {
		st.baseSum += float64(s.CPUUsageNs-prev.cpu) / float64(t-prev.t)
		st.baseN++
	}
	var out []Verdict
	for i, r := range rs.samples {
		// the metrics over the last r.sustain (at least one interval)
		from := -1
		for j := len(st.hist) - 2; j >= 0; j-- {
			if t-st.hist[j].t >= r.sustain {
				from = j
				break
			}
		}
		if from < 0 {
			continue
		}
		m := sampleMetrics(st, st.hist[from], t, s, cg.events, t-st.firstT > baselineWindow)
		m[sfPeriodicConns] = float64(cg.procs.out.periodic(st.hist[from].t, t))
		ok := true
		for _, ts := range r.tests {
			v := m[ts.field]
			switch ts.op {
			case '<':
				ok = ok && v < ts.val
			case 'l':
				ok = ok && v <= ts.val
			case '>':
				ok = ok && v > ts.val
			case 'g':
				ok = ok && v >= ts.val
			}
		}
		if !ok {
			continue
		}
		who := ""
		if r.unless != nil {
			if who, ok = r.unless.unaccounted(cg, st.hist[from].t); !ok {
				continue
			}
		}
		if cg.throttled(procRuleKey{rule: -int32(i) - 1}, t, r.throttle) {
			continue
		}
		note := fmt.Sprintf("over %s: cpu %.2f cores, %.0f syscalls/s, %.0f syscalls per cpu-second, %d threads",
			time.Duration(t-st.hist[from].t).Round(time.Millisecond), m[sfCPUCores], m[sfSyscallRate], m[sfSyscallsPerCPUSecond], s.Threads)
		if w := m[sfCPUWait]; w > 0 {
			note += fmt.Sprintf(", waited for a cpu %.0f%% of the time (demand at least %.2f cores)", 100*w, m[sfCPUDemand])
		}
		if who != "" {
			note += ", running " + who
		}
		if v := m[sfPeriodicConns]; v > 0 {
			note += fmt.Sprintf(", %.0f outbound connections open throughout with a message now and then", v)
		}
		if v := m[sfThrottledPerSecond]; v > 0 {
			note += fmt.Sprintf(", %.0f records/s over the tracing budget", v)
		}
		out = append(out, Verdict{
			ID:        verdictID(r.name, s.CgroupID, 0, 0, cg.events, t),
			Time:      time.Unix(0, t).UTC(),
			CgroupID:  s.CgroupID,
			Container: cg.container,
			Class:     r.class,
			Severity:  r.severity,
			Rule:      r.name,
			Score:     r.score,
			Message:   r.desc + " (" + note + ")",
			Tags:      r.tags,
			Maturity:  r.maturity,
			Evidence:  []Evidence{{Time: time.Unix(0, t).UTC(), Note: note}},
		})
	}
	return out
}

// sampleMetrics are the values sample rules test, over [from, now].
func sampleMetrics(st *sampleState, from histEntry, t int64, s Sample, events uint64, haveBase bool) sampleVals {
	dt := float64(t - from.t)
	dcpu := float64(s.CPUUsageNs - from.cpu)
	dev := float64(events - from.ev)
	var m sampleVals
	m[sfCPUCores] = dcpu / dt
	m[sfSyscallRate] = dev / dt * 1e9
	m[sfThreads] = float64(s.Threads)
	if s.Throttled >= from.throttled {
		m[sfThrottledPerSecond] = float64(s.Throttled-from.throttled) / dt * 1e9
	}
	// The CPU the cgroup wanted and did not get: the share of the time one
	// of its tasks waited for a CPU (PSI), or its quota held it, whichever
	// is larger (the kernel may count quota time as waiting too). Its use
	// plus that is a lower bound of its demand: a miner starved to a
	// fraction of a core by other work, a low weight or a quota still
	// demands its cores. A reading of 0 is unknown (a sampler may read
	// them only for busy containers): the window needs both ends. Without
	// the readings, demand is the use.
	var wait float64
	if from.wait > 0 && s.CPUWaitNs > from.wait {
		wait = float64(s.CPUWaitNs-from.wait) / dt
	}
	if from.held > 0 && s.CPUThrottledNs > from.held {
		wait = max(wait, float64(s.CPUThrottledNs-from.held)/dt)
	}
	wait = min(wait, 1)
	m[sfCPUWait] = wait
	m[sfCPUDemand] = m[sfCPUCores] + wait
	if dcpu > 0 {
		m[sfSyscallsPerCPUSecond] = dev / (dcpu / 1e9)
	} else {
		m[sfSyscallsPerCPUSecond] = dev * 1e9
	}
	if haveBase && st.baseN > 0 {
		m[sfBaselineRatio] = m[sfCPUCores] / max(st.baseSum/float64(st.baseN), 0.05)
	}
	return m
}
