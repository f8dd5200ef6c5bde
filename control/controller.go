package control

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// DefaultQueue is the action queue's length when Config.Queue is 0.
const DefaultQueue = 1024

// maxDropRecords bounds the records kept for dropped actions until the
// worker emits them; beyond it drops are only counted.
const maxDropRecords = 256

// Config is what New needs; the agent builds it.
type Config struct {
	// Policies are the response policies by name (LoadPolicies); nil or
	// without "default" gets the built-in default.
	Policies map[string]*Policy
	// Actuator runs the actions (required).
	Actuator Actuator
	// Record receives every action taken, refused or undone (audit,
	// metrics, sinks). It is called from Run's goroutine, or from the
	// goroutine of Release, Unfreeze or Restore; never concurrently. It
	// must not call the Controller's Release, Unfreeze, Restore or Forget.
	Record func(Record)
	// NotifySet is the syscalls (names) the notify profile sends to vigil:
	// what deny-syscall denies when the policy names none.
	NotifySet []string
	// AllowedResolvers gives the resolvers containers may use, for the
	// deny-connect of dns-unauthorized-resolver verdicts.
	AllowedResolvers func() []netip.Addr
	// StateFile keeps what is in force across agent restarts; "" keeps
	// nothing.
	StateFile string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	Log *logrus.Entry
	// Queue is the action queue's length (DefaultQueue when 0).
	Queue int
}

// Stats are the controller's counters.
type Stats struct {
	Queued   uint64            `json:"queued"`   // actions accepted into the queue
	Dropped  uint64            `json:"dropped"`  // actions dropped because the queue was full
	Pending  int               `json:"pending"`  // verdicts waiting in the queue
	Executed map[Action]uint64 `json:"executed"` // actions put in force by the actuator
	Undone   map[Action]uint64 `json:"undone"`   // actions undone (timer, release, unfreeze)
	Failures uint64            `json:"failures"` // actions or undos that failed
	Skipped  uint64            `json:"skipped"`  // actions not run: the container was killed
}

// item is one verdict's actions in the queue.
type item struct {
	verdict string
	class   detector.Class
	rule    string
	pid     uint32
	addrs   []string
	t       Target
	acts    []Action
	trigger time.Time
	pol     *Policy
}

// seen is what Decide counts per container.
type seen struct {
	repeats map[string]int               // verdicts per rule
	last    map[detector.Class]time.Time // last verdict per class (restore timers)
}

// Controller turns verdicts into actions: Decide (on the event pipeline)
// picks them, Execute queues them, Run runs them through the Actuator.
type Controller struct {
	cfg       Config
	log       *logrus.Entry
	now       func() time.Time
	notifySet []string
	pols      atomic.Pointer[map[string]*Policy]
	queue     chan item

	seenMu  sync.Mutex // Decide's counters
	seen    map[uint64]*seen
	unknown map[string]bool // policy names already logged as unknown

	opMu    sync.Mutex // serializes actuator calls, state changes and Record
	mu      sync.Mutex // guards entries' contents and stats for readers
	entries map[uint64]*entry

	queued, dropped, failures, skipped atomic.Uint64
	executed, undone                   map[Action]uint64 // under mu

	dropMu  sync.Mutex
	drops   []Record
	wake    chan struct{}
	changed bool // under opMu: the state needs saving
}

// New builds a Controller and loads Config.StateFile if it exists.
func New(cfg Config) (*Controller, error) {
	if cfg.Actuator == nil {
		return nil, errors.New("control: no actuator")
	}
	c := &Controller{
		cfg:      cfg,
		log:      cfg.Log,
		now:      cfg.Now,
		seen:     map[uint64]*seen{},
		unknown:  map[string]bool{},
		entries:  map[uint64]*entry{},
		executed: map[Action]uint64{},
		undone:   map[Action]uint64{},
		wake:     make(chan struct{}, 1),
	}
	if c.log == nil {
		c.log = logrus.NewEntry(logrus.StandardLogger())
	}
	if c.now == nil {
		c.now = time.Now
	}
	q := cfg.Queue
	if q <= 0 {
		q = DefaultQueue
	}
	c.queue = make(chan item, q)
	for _, name := range cfg.NotifySet {
		if _, ok := event.SyscallNr(name); !ok {
			return nil, fmt.Errorf("control: notify set: %q is not a syscall of %s", name, event.NativeABI())
		}
		if !slices.Contains(c.notifySet, name) {
			c.notifySet = append(c.notifySet, name)
		}
	}
	c.SetPolicies(cfg.Policies)
	if cfg.StateFile != "" {
		entries, err := loadState(cfg.StateFile)
		if err != nil {
			return nil, fmt.Errorf("control: %w", err)
		}
		c.entries = entries
	}
	return c, nil
}

// SetPolicies replaces the policies (live reload); verdicts decided after
// it returns use the new ones. A map without "default" gets the built-in.
func (c *Controller) SetPolicies(p map[string]*Policy) {
	m := make(map[string]*Policy, len(p)+1)
	for k, v := range p {
		m[k] = v
	}
	if m[DefaultPolicyName] == nil {
		m[DefaultPolicyName] = DefaultPolicy()
	}
	c.pols.Store(&m)
}

// policyFor finds t's policy; an unknown name gets the default (logged
// once per name).
func (c *Controller) policyFor(t Target) *Policy {
	m := *c.pols.Load()
	name := t.Policy
	if name == "" {
		name = DefaultPolicyName
	}
	if p := m[name]; p != nil {
		return p
	}
	c.seenMu.Lock()
	first := !c.unknown[name]
	c.unknown[name] = true
	c.seenMu.Unlock()
	if first {
		c.log.WithFields(logrus.Fields{"policy": name, "cgroup": t.CgroupID, "container": t.ContainerID}).
			Warn("unknown response policy, using the default")
	}
	return m[DefaultPolicyName]
}

// Decide marks v with the container's mode and what its policy does about
// it, and returns the actions to run: in mode enforce the matching
// response's actions except alert, otherwise none. It counts v for the
// repeat conditions and the restore timers. It does no I/O and does not
// block (it runs on the event pipeline's goroutine).
func (c *Controller) Decide(v *detector.Verdict, t Target) []Action {
	v.Mode = string(t.Mode)
	now := c.now()
	c.seenMu.Lock()
	s := c.seen[t.CgroupID]
	if s == nil {
		s = &seen{repeats: map[string]int{}, last: map[detector.Class]time.Time{}}
		c.seen[t.CgroupID] = s
	}
	s.repeats[v.Rule]++
	n := s.repeats[v.Rule]
	s.last[v.Class] = now
	c.seenMu.Unlock()

	if t.Mode != annotations.ModeDetect && t.Mode != annotations.ModeEnforce {
		return nil // learn (or no mode): nothing is acted on
	}
	acts := []Action{ActAlert}
	if r := c.policyFor(t).Match(v, n); r != nil {
		acts = r.Actions
	}
	names := make([]string, len(acts))
	for i, a := range acts {
		names[i] = string(a)
	}
	if t.Mode == annotations.ModeDetect {
		v.WouldAct = names
		return nil
	}
	v.Actions = names
	var run []Action
	for _, a := range acts {
		if a != ActAlert {
			run = append(run, a)
		}
	}
	return run
}

// Execute queues acts (alert is ignored) for Run. It does not block: when
// the queue is full the actions are dropped, counted and recorded with an
// error. trigger is the time of the event that caused v.
func (c *Controller) Execute(v *detector.Verdict, t Target, acts []Action, trigger time.Time) {
	acts = slices.DeleteFunc(slices.Clone(acts), func(a Action) bool { return a == ActAlert })
	if len(acts) == 0 {
		return
	}
	it := item{verdict: v.ID, class: v.Class, rule: v.Rule, pid: v.PID, t: t, acts: acts,
		trigger: trigger, pol: c.policyFor(t)}
	for _, e := range v.Evidence {
		if e.Addr != "" {
			it.addrs = append(it.addrs, e.Addr)
		}
	}
	select {
	case c.queue <- it:
		c.queued.Add(uint64(len(acts)))
		return
	default:
	}
	c.dropped.Add(uint64(len(acts)))
	now := c.now()
	c.dropMu.Lock()
	for _, a := range acts {
		if len(c.drops) < maxDropRecords {
			c.drops = append(c.drops, Record{Verdict: v.ID, CgroupID: t.CgroupID, ContainerID: t.ContainerID,
				Action: a, Error: fmt.Sprintf("action queue full (%d): dropped", cap(c.queue)), Effective: now})
		}
	}
	c.dropMu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run runs queued actions in order, emits their records, undoes throttles
// and deny-connects whose time has come, and saves the state after each
// change, until ctx is done; then it runs what is still queued.
func (c *Controller) Run(ctx context.Context) error {
	timer := time.NewTimer(c.untilNext())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			// What was decided before the end still runs (and is recorded).
			c.drain()
			return nil
		case it := <-c.queue:
			c.process(it)
		case <-c.wake:
			c.flushDrops()
		case <-timer.C:
			c.expire()
		}
		timer.Reset(c.untilNext())
	}
}

// untilNext is how long Run sleeps before checking the restore timers:
// until the next one is due, at least 10ms and at most 1s (verdicts may
// push deadlines back, and the clock may jump).
func (c *Controller) untilNext() time.Duration {
	next := time.Time{}
	c.mu.Lock()
	for _, e := range c.entries {
		if !e.s.KilledAt.IsZero() {
			continue
		}
		for _, tm := range []*Timed{timedOf(e.s.Throttle), timedOfConnect(e.s.DenyConnect)} {
			if tm != nil && (next.IsZero() || tm.RestoreAt().Before(next)) {
				next = tm.RestoreAt()
			}
		}
	}
	c.mu.Unlock()
	if next.IsZero() {
		return time.Second
	}
	return min(max(next.Sub(c.now()), 10*time.Millisecond), time.Second)
}

func timedOf(th *ThrottleState) *Timed {
	if th == nil {
		return nil
	}
	return &th.Timed
}

func timedOfConnect(dc *DenyConnectState) *Timed {
	if dc == nil {
		return nil
	}
	return &dc.Timed
}

// drain runs everything queued (at the end of Run, and in tests).
func (c *Controller) drain() {
	for {
		select {
		case it := <-c.queue:
			c.process(it)
		default:
			c.flushDrops()
			return
		}
	}
}

func (c *Controller) flushDrops() {
	c.dropMu.Lock()
	drops := c.drops
	c.drops = nil
	c.dropMu.Unlock()
	if len(drops) == 0 {
		return
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	for _, r := range drops {
		c.emit(r)
	}
}

// emit hands r to Config.Record. Called with opMu held.
func (c *Controller) emit(r Record) {
	if r.Error != "" {
		c.failures.Add(1)
	}
	if c.cfg.Record != nil {
		c.cfg.Record(r)
	}
}

func (c *Controller) count(a Action, undo bool) {
	c.mu.Lock()
	if undo {
		c.undone[a]++
	} else {
		c.executed[a]++
	}
	c.mu.Unlock()
}

// entryOf returns t's entry, creating it. Called with opMu held.
func (c *Controller) entryOf(t Target) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[t.CgroupID]
	if e == nil {
		e = &entry{s: State{CgroupID: t.CgroupID}, backoff: map[Action]*backoff{}}
		c.entries[t.CgroupID] = e
	}
	e.t = t
	if t.ContainerID != "" {
		e.s.ContainerID = t.ContainerID
	}
	return e
}

// update runs f on e's state under mu (for InForce's readers) and marks
// the state for saving.
func (c *Controller) update(f func()) {
	c.mu.Lock()
	f()
	c.mu.Unlock()
	c.changed = true
}

func (c *Controller) logFor(t Target) *logrus.Entry {
	f := logrus.Fields{"cgroup": t.CgroupID}
	if t.ContainerID != "" {
		f["container"] = t.ContainerID
	}
	if t.Container != nil && t.Container.Pod != "" {
		f["pod"] = t.Container.Namespace + "/" + t.Container.Pod
	}
	return c.log.WithFields(f)
}

// process runs one verdict's actions in order.
func (c *Controller) process(it item) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	e := c.entryOf(it.t)
	for i, a := range it.acts {
		if !e.s.KilledAt.IsZero() {
			c.skipped.Add(uint64(len(it.acts) - i))
			break
		}
		r := Record{Verdict: it.verdict, CgroupID: it.t.CgroupID, ContainerID: it.t.ContainerID, Action: a}
		var err error
		switch a {
		case ActThrottle:
			r.Detail, err = c.throttle(it, e)
		case ActDenyConnect:
			r.Detail, err = c.denyConnect(it, e)
		case ActDenySyscall:
			r.Detail, err = c.denySyscall(it, e)
		case ActFreeze:
			r.Detail, err = c.freeze(it, e)
		case ActKillProcess:
			if it.pid == 0 {
				err = errors.New("the verdict names no process")
				break
			}
			r.Detail = fmt.Sprintf("pid %d", it.pid)
			if err = c.cfg.Actuator.KillProcess(it.t, it.pid); err == nil {
				c.count(a, false)
			}
		case ActKill:
			if err = c.cfg.Actuator.KillContainer(it.t); err == nil {
				c.count(a, false)
				now := c.now()
				c.update(func() { e.s.KilledAt = now })
			}
		default:
			err = fmt.Errorf("unknown action %q", a)
		}
		r.Effective = c.now()
		if !it.trigger.IsZero() && r.Effective.After(it.trigger) {
			r.Latency = r.Effective.Sub(it.trigger)
		}
		if err != nil {
			r.Error = err.Error()
			c.logFor(it.t).WithError(err).WithField("action", a).Warn("response action failed")
		}
		c.emit(r)
	}
	c.dropIfEmpty(e)
	c.saveIfChanged()
}

// throttleCPU is the CPU a throttle sets for a verdict of class, given the
// container's original values and what an earlier throttle set (prev).
func throttleCPU(p *Policy, class detector.Class, orig, prev CPU) CPU {
	cpu := CPU{Shares: p.Throttle.Shares}
	if orig.Shares != 0 && orig.Shares < cpu.Shares {
		cpu.Shares = orig.Shares // only lower
	}
	if prev.QuotaUs > 0 { // an earlier cpu-abuse verdict set a quota: keep it
		cpu.QuotaUs, cpu.PeriodUs = prev.QuotaUs, prev.PeriodUs
	}
	if class != detector.ClassCPU || p.Throttle.QuotaPercent <= 0 {
		return cpu
	}
	period := orig.PeriodUs
	if period == 0 {
		period = DefaultPeriodUs
	}
	quota := max(int64(p.Throttle.QuotaPercent/100*float64(period)), 1000) // the kernel's least quota is 1ms
	if orig.QuotaUs > 0 && float64(orig.QuotaUs)/float64(period) <= float64(quota)/float64(period) {
		return cpu // already limited at least as much
	}
	cpu.QuotaUs, cpu.PeriodUs = quota, period
	return cpu
}

// restoreCPU is what a restore writes: the original values, with "no
// limit" for a quota that was not known, and the kernel's default shares
// when they were not known.
func restoreCPU(th *ThrottleState) CPU {
	r := th.Original
	if th.Applied.QuotaUs > 0 && r.QuotaUs == 0 {
		r.QuotaUs = -1
	}
	if r.Shares == 0 {
		r.Shares = 1024
	}
	return r
}

func cpuString(c CPU) string {
	s := fmt.Sprintf("shares=%d", c.Shares)
	if c.QuotaUs != 0 {
		s += fmt.Sprintf(" quota_us=%d", c.QuotaUs)
	}
	if c.PeriodUs != 0 {
		s += fmt.Sprintf(" period_us=%d", c.PeriodUs)
	}
	return s
}

func addClass(cs []detector.Class, c detector.Class) []detector.Class {
	if slices.Contains(cs, c) {
		return cs
	}
	return append(cs, c)
}

func (c *Controller) backoffOf(e *entry, a Action) *backoff {
	b := e.backoff[a]
	if b == nil {
		b = &backoff{}
		e.backoff[a] = b
	}
	return b
}

func (c *Controller) throttle(it item, e *entry) (string, error) {
	now := c.now()
	if th := e.s.Throttle; th != nil {
		want := throttleCPU(it.pol, it.class, th.Original, th.Applied)
		c.update(func() { th.Classes = addClass(th.Classes, it.class); th.LastVerdict = now })
		if want == th.Applied {
			return fmt.Sprintf("already in force (%s); restore at %s", cpuString(th.Applied), th.RestoreAt().Format(time.RFC3339)), nil
		}
		if err := c.cfg.Actuator.SetCPU(it.t, want); err != nil {
			return "", fmt.Errorf("set cpu %s: %w", cpuString(want), err)
		}
		c.count(ActThrottle, false)
		c.update(func() { th.Applied = want })
		return fmt.Sprintf("%s (was %s)", cpuString(want), cpuString(th.Original)), nil
	}
	orig, err := c.cfg.Actuator.ReadCPU(it.t)
	if err != nil {
		return "", fmt.Errorf("read cpu: %w", err)
	}
	want := throttleCPU(it.pol, it.class, orig, CPU{})
	if err := c.cfg.Actuator.SetCPU(it.t, want); err != nil {
		return "", fmt.Errorf("set cpu %s: %w", cpuString(want), err)
	}
	c.count(ActThrottle, false)
	wait := c.backoffOf(e, ActThrottle).next(now, it.pol.RestoreAfter)
	c.update(func() {
		e.s.Throttle = &ThrottleState{
			Timed:   Timed{Since: now, Classes: []detector.Class{it.class}, LastVerdict: now, Wait: wait},
			Applied: want, Original: orig,
		}
	})
	return fmt.Sprintf("%s (was %s); restore after %s without a %s verdict", cpuString(want), cpuString(orig), wait, it.class), nil
}

// connectRule builds the rule of a deny-connect for it.
func (c *Controller) connectRule(it item) (ConnectRule, string, error) {
	var r ConnectRule
	note := ""
	if it.rule == "dns-unauthorized-resolver" {
		var res []netip.Addr
		if c.cfg.AllowedResolvers != nil {
			res = c.cfg.AllowedResolvers()
		}
		if len(res) > 0 {
			r.DNSOnlyTo = slices.Clone(res)
			return r, "", nil
		}
		note = "; no allowed resolvers known, denying the resolver contacted"
	}
	for _, a := range it.addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			continue // unix sockets and the like
		}
		if !slices.Contains(r.Dest, ap) {
			r.Dest = append(r.Dest, ap)
		}
	}
	if len(r.Dest) == 0 {
		return r, "", errors.New("the verdict's evidence has no ip:port destination")
	}
	return r, note, nil
}

// mergeRule adds add's destinations to r; add's resolvers replace r's.
func mergeRule(r, add ConnectRule) ConnectRule {
	out := ConnectRule{Dest: slices.Clone(r.Dest), DNSOnlyTo: r.DNSOnlyTo}
	for _, d := range add.Dest {
		if !slices.Contains(out.Dest, d) {
			out.Dest = append(out.Dest, d)
		}
	}
	if add.DNSOnlyTo != nil {
		out.DNSOnlyTo = add.DNSOnlyTo
	}
	return out
}

func ruleEqual(a, b ConnectRule) bool {
	return slices.Equal(a.Dest, b.Dest) && slices.Equal(a.DNSOnlyTo, b.DNSOnlyTo) && (a.DNSOnlyTo == nil) == (b.DNSOnlyTo == nil)
}

func ruleString(r ConnectRule) string {
	var parts []string
	if len(r.Dest) > 0 {
		ds := make([]string, len(r.Dest))
		for i, d := range r.Dest {
			ds[i] = d.String()
		}
		parts = append(parts, "dest "+strings.Join(ds, ","))
	}
	if r.DNSOnlyTo != nil {
		rs := make([]string, len(r.DNSOnlyTo))
		for i, a := range r.DNSOnlyTo {
			rs[i] = a.String()
		}
		parts = append(parts, "dns only to "+strings.Join(rs, ","))
	}
	return strings.Join(parts, "; ")
}

func (c *Controller) denyConnect(it item, e *entry) (string, error) {
	now := c.now()
	rule, note, err := c.connectRule(it)
	if err != nil {
		return "", err
	}
	if dc := e.s.DenyConnect; dc != nil {
		merged := mergeRule(dc.Rule, rule)
		c.update(func() { dc.Classes = addClass(dc.Classes, it.class); dc.LastVerdict = now })
		if ruleEqual(merged, dc.Rule) {
			return fmt.Sprintf("already in force (%s); restore at %s", ruleString(dc.Rule), dc.RestoreAt().Format(time.RFC3339)), nil
		}
		if err := c.cfg.Actuator.DenyConnect(it.t, merged); err != nil {
			return "", fmt.Errorf("deny connect %s: %w", ruleString(merged), err)
		}
		c.count(ActDenyConnect, false)
		c.update(func() { dc.Rule = merged })
		return ruleString(merged) + note, nil
	}
	if err := c.cfg.Actuator.DenyConnect(it.t, rule); err != nil {
		return "", fmt.Errorf("deny connect %s: %w", ruleString(rule), err)
	}
	c.count(ActDenyConnect, false)
	wait := c.backoffOf(e, ActDenyConnect).next(now, it.pol.RestoreAfter)
	c.update(func() {
		e.s.DenyConnect = &DenyConnectState{
			Timed: Timed{Since: now, Classes: []detector.Class{it.class}, LastVerdict: now, Wait: wait},
			Rule:  rule,
		}
	})
	return fmt.Sprintf("%s%s; restore after %s without a %s verdict", ruleString(rule), note, wait, it.class), nil
}

// syscallNrs converts names (validated before) to numbers.
func syscallNrs(names []string) []int32 {
	nrs := make([]int32, 0, len(names))
	for _, n := range names {
		if nr, ok := event.SyscallNr(n); ok {
			nrs = append(nrs, int32(nr))
		}
	}
	return nrs
}

func errnoName(e syscall.Errno) string {
	if n := event.ErrnoName(int(e)); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}

func (c *Controller) denySyscall(it item, e *entry) (string, error) {
	names := it.pol.DenySyscall.Syscalls
	if len(names) == 0 {
		names = c.notifySet
	}
	if len(names) == 0 {
		return "", errors.New("no syscalls to deny: the policy names none and the notify set is empty")
	}
	errno := it.pol.DenySyscall.Errno
	if ds := e.s.DenySyscall; ds != nil {
		union := slices.Clone(ds.Syscalls)
		for _, n := range names {
			if !slices.Contains(union, n) {
				union = append(union, n)
			}
		}
		if len(union) == len(ds.Syscalls) && ds.Errno == errnoName(errno) {
			return fmt.Sprintf("already in force (%d syscalls, %s)", len(ds.Syscalls), ds.Errno), nil
		}
		names = union
	}
	if err := c.cfg.Actuator.DenySyscalls(it.t, syscallNrs(names), errno); err != nil {
		return "", fmt.Errorf("deny syscalls: %w", err)
	}
	c.count(ActDenySyscall, false)
	now := c.now()
	c.update(func() {
		since := now
		if e.s.DenySyscall != nil {
			since = e.s.DenySyscall.Since
		}
		e.s.DenySyscall = &DenySyscallState{Since: since, Syscalls: slices.Clone(names), Errno: errnoName(errno)}
	})
	return fmt.Sprintf("%s with %s", strings.Join(names, ","), errnoName(errno)), nil
}

func (c *Controller) freeze(it item, e *entry) (string, error) {
	if !e.s.FrozenSince.IsZero() {
		return "already in force (frozen since " + e.s.FrozenSince.Format(time.RFC3339) + ")", nil
	}
	if err := c.cfg.Actuator.Freeze(it.t, true); err != nil {
		return "", fmt.Errorf("freeze: %w", err)
	}
	c.count(ActFreeze, false)
	now := c.now()
	c.update(func() { e.s.FrozenSince = now })
	return "", nil
}

// expire undoes the throttles and deny-connects whose restore time has
// come: no verdict of their classes for their wait.
func (c *Controller) expire() {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	now := c.now()
	c.mu.Lock()
	es := make([]*entry, 0, len(c.entries))
	for _, e := range c.entries {
		if e.s.KilledAt.IsZero() && (e.s.Throttle != nil || e.s.DenyConnect != nil) {
			es = append(es, e)
		}
	}
	c.mu.Unlock()
	for _, e := range es {
		if th := e.s.Throttle; th != nil && c.due(e, &th.Timed, now) {
			r := Record{CgroupID: e.t.CgroupID, ContainerID: e.s.ContainerID, Action: ActThrottle, Undo: true}
			cpu := restoreCPU(th)
			err := c.cfg.Actuator.SetCPU(e.t, cpu)
			r.Effective = c.now()
			if err != nil {
				r.Error = fmt.Sprintf("restore cpu %s: %v", cpuString(cpu), err)
				c.update(func() { th.LastVerdict = now }) // try again after another wait
			} else {
				c.count(ActThrottle, true)
				r.Detail = fmt.Sprintf("%s after %s without a %s verdict", cpuString(cpu), th.Wait, joinClassList(th.Classes))
				c.update(func() { e.s.Throttle = nil })
				c.backoffOf(e, ActThrottle).LastRestore = r.Effective
			}
			c.emit(r)
		}
		if dc := e.s.DenyConnect; dc != nil && c.due(e, &dc.Timed, now) {
			r := Record{CgroupID: e.t.CgroupID, ContainerID: e.s.ContainerID, Action: ActDenyConnect, Undo: true}
			err := c.cfg.Actuator.AllowConnect(e.t)
			r.Effective = c.now()
			if err != nil {
				r.Error = fmt.Sprintf("allow connect: %v", err)
				c.update(func() { dc.LastVerdict = now })
			} else {
				c.count(ActDenyConnect, true)
				r.Detail = fmt.Sprintf("%s lifted after %s without a %s verdict", ruleString(dc.Rule), dc.Wait, joinClassList(dc.Classes))
				c.update(func() { e.s.DenyConnect = nil })
				c.backoffOf(e, ActDenyConnect).LastRestore = r.Effective
			}
			c.emit(r)
		}
	}
	c.saveIfChanged()
}

// due moves tm's last verdict to the latest verdict of its classes that
// Decide saw, and reports whether its wait has passed since.
func (c *Controller) due(e *entry, tm *Timed, now time.Time) bool {
	last := tm.LastVerdict
	c.seenMu.Lock()
	if s := c.seen[e.t.CgroupID]; s != nil {
		for _, cl := range tm.Classes {
			if t := s.last[cl]; t.After(last) {
				last = t
			}
		}
	}
	c.seenMu.Unlock()
	if last.After(tm.LastVerdict) {
		c.update(func() { tm.LastVerdict = last })
	}
	return !now.Before(last.Add(tm.Wait))
}

func joinClassList(cs []detector.Class) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, " or ")
}

// dropIfEmpty removes an entry that holds nothing. Called with opMu held.
func (c *Controller) dropIfEmpty(e *entry) {
	if !e.empty() {
		return
	}
	c.mu.Lock()
	if c.entries[e.s.CgroupID] == e {
		delete(c.entries, e.s.CgroupID)
	}
	c.mu.Unlock()
}

// saveIfChanged writes the state file after a change. Called with opMu
// held; a failure is logged and the next change tries again.
func (c *Controller) saveIfChanged() {
	if !c.changed || c.cfg.StateFile == "" {
		c.changed = false
		return
	}
	c.mu.Lock()
	data, err := encodeState(c.entries, c.now())
	c.mu.Unlock()
	if err == nil {
		err = writeStateFile(c.cfg.StateFile, data)
	}
	if err != nil {
		c.log.WithError(err).WithField("file", c.cfg.StateFile).Warn("save response state")
		return
	}
	c.changed = false
}

// Release undoes everything undoable on t (vigil release): a throttle
// (the CPU values read before it are written back), deny-syscall,
// deny-connect and freeze. It returns a record per undo; the error joins
// the undos that failed (those stay in force and recorded).
func (c *Controller) Release(t Target) ([]Record, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	e := c.entries[t.CgroupID]
	c.mu.Unlock()
	if e == nil {
		return nil, nil
	}
	if t.ContainerID == "" {
		t.ContainerID = e.s.ContainerID
	}
	var recs []Record
	var errs []error
	undo := func(a Action, detail string, f func() error, done func()) {
		r := Record{CgroupID: t.CgroupID, ContainerID: t.ContainerID, Action: a, Undo: true, Detail: detail}
		err := f()
		r.Effective = c.now()
		if err != nil {
			r.Error = err.Error()
			errs = append(errs, fmt.Errorf("release %s: %w", a, err))
		} else {
			c.count(a, true)
			c.update(done)
			delete(e.backoff, a)
		}
		c.emit(r)
		recs = append(recs, r)
	}
	if th := e.s.Throttle; th != nil {
		cpu := restoreCPU(th)
		undo(ActThrottle, "released: "+cpuString(cpu), func() error { return c.cfg.Actuator.SetCPU(t, cpu) },
			func() { e.s.Throttle = nil })
	}
	if ds := e.s.DenySyscall; ds != nil {
		undo(ActDenySyscall, "released: "+strings.Join(ds.Syscalls, ","), func() error { return c.cfg.Actuator.AllowSyscalls(t) },
			func() { e.s.DenySyscall = nil })
	}
	if dc := e.s.DenyConnect; dc != nil {
		undo(ActDenyConnect, "released: "+ruleString(dc.Rule), func() error { return c.cfg.Actuator.AllowConnect(t) },
			func() { e.s.DenyConnect = nil })
	}
	if !e.s.FrozenSince.IsZero() {
		undo(ActFreeze, "released: thawed", func() error { return c.cfg.Actuator.Freeze(t, false) },
			func() { e.s.FrozenSince = time.Time{} })
	}
	c.dropIfEmpty(e)
	c.saveIfChanged()
	return recs, errors.Join(errs...)
}

// Unfreeze thaws t (vigil unfreeze), whether or not vigil froze it.
func (c *Controller) Unfreeze(t Target) (Record, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	r := Record{CgroupID: t.CgroupID, ContainerID: t.ContainerID, Action: ActFreeze, Undo: true, Detail: "thawed"}
	err := c.cfg.Actuator.Freeze(t, false)
	r.Effective = c.now()
	if err != nil {
		r.Error = err.Error()
		c.emit(r)
		return r, fmt.Errorf("unfreeze: %w", err)
	}
	c.count(ActFreeze, true)
	c.mu.Lock()
	e := c.entries[t.CgroupID]
	c.mu.Unlock()
	if e != nil && !e.s.FrozenSince.IsZero() {
		c.update(func() { e.s.FrozenSince = time.Time{} })
		c.dropIfEmpty(e)
		c.saveIfChanged()
	} else {
		r.Detail = "thawed (vigil had not frozen it)"
	}
	c.emit(r)
	return r, nil
}

// InForce lists per container what is in force, by cgroup id.
func (c *Controller) InForce() []State {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []State
	for _, e := range c.entries {
		s := &e.s
		if s.Throttle == nil && s.DenySyscall == nil && s.DenyConnect == nil && s.FrozenSince.IsZero() && s.KilledAt.IsZero() {
			continue
		}
		out = append(out, e.clone())
	}
	slices.SortFunc(out, func(a, b State) int {
		switch {
		case a.CgroupID < b.CgroupID:
			return -1
		case a.CgroupID > b.CgroupID:
			return 1
		}
		return 0
	})
	return out
}

// Restore takes over the state loaded from the state file after an agent
// restart: containers resolve does not know are dropped; for the others
// the deny-syscall set is applied again (the seccomp server does not keep
// it), and throttles and deny-connects keep their restore timers. Call it
// before Run.
func (c *Controller) Restore(resolve func(cgroupID uint64) (Target, bool)) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	es := make([]*entry, 0, len(c.entries))
	for _, e := range c.entries {
		es = append(es, e)
	}
	c.mu.Unlock()
	for _, e := range es {
		t, ok := resolve(e.s.CgroupID)
		if !ok {
			c.logFor(e.t).Info("container gone since the last run: dropping its response state")
			c.mu.Lock()
			delete(c.entries, e.s.CgroupID)
			c.mu.Unlock()
			c.changed = true
			continue
		}
		if t.ContainerID == "" {
			t.ContainerID = e.s.ContainerID
		}
		c.update(func() { e.t = t; e.s.ContainerID = t.ContainerID })
		ds := e.s.DenySyscall
		if ds == nil || !e.s.KilledAt.IsZero() {
			continue
		}
		errno, ok := errnoByName(ds.Errno)
		if !ok {
			errno = syscall.EPERM
		}
		r := Record{CgroupID: t.CgroupID, ContainerID: t.ContainerID, Action: ActDenySyscall,
			Detail: fmt.Sprintf("re-applied after agent restart: %s with %s", strings.Join(ds.Syscalls, ","), errnoName(errno))}
		err := c.cfg.Actuator.DenySyscalls(t, syscallNrs(ds.Syscalls), errno)
		r.Effective = c.now()
		if err != nil {
			r.Error = err.Error()
			c.logFor(t).WithError(err).Warn("re-apply deny-syscall")
		} else {
			c.count(ActDenySyscall, false)
		}
		c.emit(r)
	}
	c.saveIfChanged()
}

// Forget drops the state of a container that is gone, undoing nothing.
func (c *Controller) Forget(cgroupID uint64) {
	c.seenMu.Lock()
	delete(c.seen, cgroupID)
	c.seenMu.Unlock()
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	_, ok := c.entries[cgroupID]
	delete(c.entries, cgroupID)
	c.mu.Unlock()
	if ok {
		c.changed = true
		c.saveIfChanged()
	}
}

// Stats returns the counters.
func (c *Controller) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{
		Queued: c.queued.Load(), Dropped: c.dropped.Load(), Pending: len(c.queue),
		Failures: c.failures.Load(), Skipped: c.skipped.Load(),
		Executed: make(map[Action]uint64, len(c.executed)), Undone: make(map[Action]uint64, len(c.undone)),
	}
	for a, n := range c.executed {
		s.Executed[a] = n
	}
	for a, n := range c.undone {
		s.Undone[a] = n
	}
	return s
}
