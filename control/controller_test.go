package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/detector"
)

// fakeActuator records the calls; it stands for the kernel and runtime
// edges, which have their own tests.
type fakeActuator struct {
	mu    sync.Mutex
	calls []string
	cpu   CPU   // what ReadCPU returns
	fail  error // returned by every call but ReadCPU when set
}

func (f *fakeActuator) add(format string, a ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
	return f.fail
}

func (f *fakeActuator) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeActuator) ReadCPU(t Target) (CPU, error) {
	f.add("read-cpu %d", t.CgroupID)
	return f.cpu, nil
}
func (f *fakeActuator) SetCPU(t Target, c CPU) error {
	return f.add("set-cpu %d %d/%d/%d", t.CgroupID, c.Shares, c.QuotaUs, c.PeriodUs)
}
func (f *fakeActuator) Freeze(t Target, frozen bool) error {
	return f.add("freeze %d %v", t.CgroupID, frozen)
}
func (f *fakeActuator) KillProcess(t Target, pid uint32) error {
	return f.add("kill-process %d %d", t.CgroupID, pid)
}
func (f *fakeActuator) KillContainer(t Target) error { return f.add("kill %d", t.CgroupID) }
func (f *fakeActuator) DenySyscalls(t Target, nrs []int32, errno syscall.Errno) error {
	return f.add("deny-syscalls %d %v %d", t.CgroupID, nrs, int(errno))
}
func (f *fakeActuator) AllowSyscalls(t Target) error { return f.add("allow-syscalls %d", t.CgroupID) }
func (f *fakeActuator) DenyConnect(t Target, r ConnectRule) error {
	return f.add("deny-connect %d %s", t.CgroupID, ruleString(r))
}
func (f *fakeActuator) AllowConnect(t Target) error { return f.add("allow-connect %d", t.CgroupID) }

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type harness struct {
	c    *Controller
	act  *fakeActuator
	clk  *clock
	recs []Record
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	h := &harness{act: &fakeActuator{cpu: CPU{Shares: 1024, QuotaUs: -1, PeriodUs: 100000}},
		clk: &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}}
	cfg := Config{
		Actuator:         h.act,
		Record:           func(r Record) { h.recs = append(h.recs, r) },
		NotifySet:        []string{"mount", "ptrace"},
		AllowedResolvers: func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("10.96.0.10")} },
		Now:              h.clk.Now,
		Log:              quietLog(),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	return h
}

func (h *harness) takeRecs() []Record {
	r := h.recs
	h.recs = nil
	return r
}

// verdict runs v through Decide and Execute on cgroup 7 (enforce) and the
// worker, as the agent would.
func (h *harness) verdict(v detector.Verdict) {
	t := target(7, annotations.ModeEnforce)
	acts := h.c.Decide(&v, t)
	h.c.Execute(&v, t, acts, h.clk.Now().Add(-time.Millisecond))
	h.c.drain()
}

func target(cg uint64, m annotations.Mode) Target {
	return Target{CgroupID: cg, ContainerID: fmt.Sprintf("ctr%d", cg), Mode: m, CgroupDir: "/sys/fs/cgroup/x"}
}

var (
	cpuVerdict = detector.Verdict{ID: "v-cpu", Class: detector.ClassCPU, Severity: detector.High, Rule: "cpu-miner", PID: 42}
	dnsVerdict = detector.Verdict{ID: "v-dns", Class: detector.ClassNetwork, Severity: detector.Medium,
		Rule: "dns-unauthorized-resolver", Evidence: []detector.Evidence{{Syscall: "sendto", Addr: "8.8.8.8:53"}}}
	metaVerdict = detector.Verdict{ID: "v-meta", Class: detector.ClassNetwork, Severity: detector.Medium,
		Rule: "metadata-endpoint", Evidence: []detector.Evidence{{Syscall: "connect", Addr: "169.254.169.254:80"}}}
	escVerdict = detector.Verdict{ID: "v-esc", Class: detector.ClassPrivesc, Severity: detector.Critical, Rule: "setuid", PID: 99}
)

func TestDecideModes(t *testing.T) {
	h := newHarness(t, nil)
	tests := map[annotations.Mode]struct {
		run               []Action
		wouldAct, actions []string
	}{
		annotations.ModeLearn:   {},
		annotations.ModeDetect:  {wouldAct: []string{"kill-process", "deny-syscall"}},
		annotations.ModeEnforce: {run: []Action{ActKillProcess, ActDenySyscall}, actions: []string{"kill-process", "deny-syscall"}},
	}
	for mode, tc := range tests {
		t.Run(string(mode), func(t *testing.T) {
			v := escVerdict
			run := h.c.Decide(&v, target(1, mode))
			if v.Mode != string(mode) || !slices.Equal(run, tc.run) || !slices.Equal(v.WouldAct, tc.wouldAct) || !slices.Equal(v.Actions, tc.actions) {
				t.Errorf("mode %q run %v would_act %v actions %v", v.Mode, run, v.WouldAct, v.Actions)
			}
		})
	}
	// An alert is marked but not run.
	v := detector.Verdict{Class: detector.ClassPrivesc, Severity: detector.Medium, Rule: "x"}
	if run := h.c.Decide(&v, target(1, annotations.ModeEnforce)); len(run) != 0 || !slices.Equal(v.Actions, []string{"alert"}) {
		t.Errorf("medium: run %v actions %v", run, v.Actions)
	}
}

func TestDecideFirstMatchAndRepeat(t *testing.T) {
	p, err := ParsePolicy("strict", "strict.yaml", []byte(examplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) { c.Policies = map[string]*Policy{"strict": p} })
	tg := target(1, annotations.ModeEnforce)
	tg.Policy = "strict"
	decide := func(tg Target, v detector.Verdict) []Action { return h.c.Decide(&v, tg) }

	// "network" (deny-connect) until the third verdict of the rule, then
	// "repeated" (kill), which comes first in the file.
	for i, want := range [][]Action{{ActDenyConnect}, {ActDenyConnect}, {ActKill}, {ActKill}} {
		if got := decide(tg, metaVerdict); !slices.Equal(got, want) {
			t.Errorf("verdict %d: %v, want %v", i+1, got, want)
		}
	}
	// Counted per container and per rule.
	other := tg
	other.CgroupID = 2
	if got := decide(other, metaVerdict); !slices.Equal(got, []Action{ActDenyConnect}) {
		t.Errorf("other container: %v", got)
	}
	if got := decide(other, dnsVerdict); !slices.Equal(got, []Action{ActDenyConnect}) {
		t.Errorf("other rule: %v", got)
	}
	// Forget resets the counts.
	h.c.Forget(1)
	if got := decide(tg, metaVerdict); !slices.Equal(got, []Action{ActDenyConnect}) {
		t.Errorf("after forget: %v", got)
	}
	// First match: a high cpu-abuse verdict is "cpu", not "medium".
	if got := decide(tg, cpuVerdict); !slices.Equal(got, []Action{ActThrottle}) {
		t.Errorf("cpu: %v", got)
	}
	// Score.
	if got := decide(tg, detector.Verdict{Class: detector.ClassAnomaly, Severity: detector.Low, Score: 0.95, Rule: "model"}); !slices.Equal(got, []Action{ActFreeze}) {
		t.Errorf("score: %v", got)
	}

	// An unknown policy name uses the default (no "repeated" rung there).
	tg.Policy = "nope"
	for range 3 {
		if got := decide(tg, metaVerdict); !slices.Equal(got, []Action{ActDenyConnect}) {
			t.Errorf("unknown policy: %v", got)
		}
	}

	// Live reload.
	h.c.SetPolicies(map[string]*Policy{"nope": mustParse(t, "responses: [{name: all, actions: [freeze]}]\n")})
	if got := decide(tg, metaVerdict); !slices.Equal(got, []Action{ActFreeze}) {
		t.Errorf("after reload: %v", got)
	}
}

func mustParse(t *testing.T, y string) *Policy {
	t.Helper()
	p, err := ParsePolicy("p", "p.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestThrottleRestore(t *testing.T) {
	h := newHarness(t, nil)
	h.verdict(cpuVerdict)
	if got := h.act.take(); !slices.Equal(got, []string{"read-cpu 7", "set-cpu 7 2/10000/100000"}) {
		t.Fatalf("calls %v", got)
	}
	recs := h.takeRecs()
	if len(recs) != 1 || recs[0].Action != ActThrottle || recs[0].Error != "" || recs[0].Verdict != "v-cpu" ||
		recs[0].Latency != time.Millisecond || !recs[0].Effective.Equal(h.clk.Now()) || recs[0].ContainerID != "ctr7" {
		t.Fatalf("records %+v", recs)
	}
	st := h.c.InForce()
	if len(st) != 1 || st[0].Throttle == nil || st[0].Throttle.Original.Shares != 1024 || st[0].Throttle.Applied.QuotaUs != 10000 {
		t.Fatalf("in force %+v", st)
	}

	// A second verdict while throttled only extends the timer.
	h.clk.advance(20 * time.Second)
	h.verdict(cpuVerdict)
	if got := h.act.take(); len(got) != 0 {
		t.Errorf("second verdict called %v", got)
	}
	if recs := h.takeRecs(); len(recs) != 1 || !strings.Contains(recs[0].Detail, "already in force") {
		t.Errorf("second verdict records %+v", recs)
	}
	// A verdict of the same class that runs nothing (a detector alert)
	// extends it too.
	h.clk.advance(20 * time.Second)
	v := detector.Verdict{Class: detector.ClassCPU, Severity: detector.Low, Rule: "cpu-other"}
	h.c.Decide(&v, target(7, annotations.ModeEnforce))

	h.clk.advance(29 * time.Second)
	h.c.expire()
	if got := h.act.take(); len(got) != 0 {
		t.Fatalf("restored early: %v", got)
	}
	h.clk.advance(time.Second)
	h.c.expire()
	if got := h.act.take(); !slices.Equal(got, []string{"set-cpu 7 1024/-1/100000"}) {
		t.Fatalf("restore calls %v", got)
	}
	recs = h.takeRecs()
	if len(recs) != 1 || !recs[0].Undo || recs[0].Action != ActThrottle || recs[0].Verdict != "" {
		t.Fatalf("restore records %+v", recs)
	}
	if st := h.c.InForce(); len(st) != 0 {
		t.Errorf("still in force %+v", st)
	}
	s := h.c.Stats()
	if s.Executed[ActThrottle] != 1 || s.Undone[ActThrottle] != 1 || s.Queued != 2 || s.Failures != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestThrottleNonCPUClassOnlyShares(t *testing.T) {
	p := mustParse(t, "responses: [{name: any, actions: [throttle]}]\n")
	h := newHarness(t, func(c *Config) { c.Policies = map[string]*Policy{"default": p} })
	h.act.cpu = CPU{Shares: 512, QuotaUs: 50000, PeriodUs: 200000}
	h.verdict(metaVerdict)
	if got := h.act.take(); !slices.Equal(got, []string{"read-cpu 7", "set-cpu 7 2/0/0"}) {
		t.Fatalf("calls %v", got)
	}
	// A cpu-abuse verdict then adds the quota (10% of the 200ms period).
	h.verdict(cpuVerdict)
	if got := h.act.take(); !slices.Equal(got, []string{"set-cpu 7 2/20000/200000"}) {
		t.Fatalf("calls %v", got)
	}
	// The restore waits for both classes to be quiet and writes the
	// original values back.
	h.clk.advance(30 * time.Second)
	h.c.expire()
	if got := h.act.take(); !slices.Equal(got, []string{"set-cpu 7 512/50000/200000"}) {
		t.Fatalf("restore %v", got)
	}
}

func TestHysteresis(t *testing.T) {
	h := newHarness(t, nil)
	// wait after each re-application, and the quiet time before it
	steps := []struct {
		quiet time.Duration // after the last restore
		wait  time.Duration
	}{
		{0, 30 * time.Second},
		{10 * time.Second, 60 * time.Second},
		{59 * time.Second, 120 * time.Second},
		{time.Second, 240 * time.Second},
		{time.Second, 240 * time.Second}, // capped at 8×
		{61 * time.Second, 30 * time.Second},
	}
	for i, s := range steps {
		h.clk.advance(s.quiet)
		h.verdict(cpuVerdict)
		st := h.c.InForce()
		if len(st) != 1 || st[0].Throttle == nil {
			t.Fatalf("step %d: not throttled: %+v %+v", i, st, h.recs)
		}
		if st[0].Throttle.Wait != s.wait {
			t.Errorf("step %d: wait %s, want %s", i, st[0].Throttle.Wait, s.wait)
		}
		h.clk.advance(s.wait - time.Second)
		h.c.expire()
		if len(h.c.InForce()) != 1 {
			t.Fatalf("step %d: restored before %s", i, s.wait)
		}
		h.clk.advance(time.Second)
		h.c.expire()
		if len(h.c.InForce()) != 0 {
			t.Fatalf("step %d: not restored after %s", i, s.wait)
		}
	}
}

func TestDenyConnect(t *testing.T) {
	h := newHarness(t, nil)
	h.verdict(dnsVerdict)
	h.verdict(metaVerdict)
	if got := h.act.take(); !slices.Equal(got, []string{
		"deny-connect 7 dns only to 10.96.0.10",
		"deny-connect 7 dest 169.254.169.254:80; dns only to 10.96.0.10",
	}) {
		t.Fatalf("calls %v", got)
	}
	h.verdict(metaVerdict)
	if got := h.act.take(); len(got) != 0 {
		t.Errorf("same destination again: %v", got)
	}
	st := h.c.InForce()
	if len(st) != 1 || st[0].DenyConnect == nil || len(st[0].DenyConnect.Rule.Dest) != 1 {
		t.Fatalf("in force %+v", st)
	}
	h.clk.advance(30 * time.Second)
	h.c.expire()
	if got := h.act.take(); !slices.Equal(got, []string{"allow-connect 7"}) {
		t.Errorf("restore %v", got)
	}

	// No ip:port in the evidence: an error record and no call.
	h.takeRecs()
	v := metaVerdict
	v.Evidence = []detector.Evidence{{Addr: "unix:/run/x.sock"}}
	h.verdict(v)
	recs := h.takeRecs()
	if got := h.act.take(); len(got) != 0 || len(recs) != 1 || !strings.Contains(recs[0].Error, "no ip:port") {
		t.Errorf("no address: calls %v records %+v", got, recs)
	}
}

func TestDenyConnectDNSWithoutResolvers(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AllowedResolvers = nil })
	h.verdict(dnsVerdict)
	if got := h.act.take(); !slices.Equal(got, []string{"deny-connect 7 dest 8.8.8.8:53"}) {
		t.Errorf("calls %v", got)
	}
}

func TestDenySyscallAndKillProcess(t *testing.T) {
	h := newHarness(t, nil)
	h.verdict(escVerdict)
	if got := h.act.take(); !slices.Equal(got, []string{"kill-process 7 99", "deny-syscalls 7 [165 101] 1"}) {
		t.Fatalf("calls %v", got)
	}
	h.verdict(escVerdict)
	if got := h.act.take(); !slices.Equal(got, []string{"kill-process 7 99"}) {
		t.Errorf("again: %v", got)
	}
	st := h.c.InForce()
	if len(st) != 1 || st[0].DenySyscall == nil || !slices.Equal(st[0].DenySyscall.Syscalls, []string{"mount", "ptrace"}) || st[0].DenySyscall.Errno != "EPERM" {
		t.Fatalf("in force %+v", st)
	}
	// Not undone by time.
	h.clk.advance(time.Hour)
	h.c.expire()
	if got := h.act.take(); len(got) != 0 {
		t.Errorf("deny-syscall undone by timer: %v", got)
	}

	// The policy's own set and errno.
	p := mustParse(t, "denySyscall: {errno: EACCES, syscalls: [unshare]}\nresponses: [{name: all, actions: [deny-syscall]}]\n")
	h2 := newHarness(t, func(c *Config) { c.Policies = map[string]*Policy{"default": p} })
	h2.verdict(escVerdict)
	if got := h2.act.take(); !slices.Equal(got, []string{"deny-syscalls 7 [272] 13"}) {
		t.Errorf("policy set: %v", got)
	}

	// kill-process without a pid.
	v := escVerdict
	v.PID = 0
	h.takeRecs()
	h.verdict(v)
	recs := h.takeRecs()
	if got := h.act.take(); len(got) != 0 || len(recs) < 1 || recs[0].Action != ActKillProcess || recs[0].Error == "" {
		t.Errorf("no pid: calls %v records %+v", got, recs)
	}
}

func TestKillStopsFurtherActions(t *testing.T) {
	p := mustParse(t, "responses:\n  - {name: kill, when: {class: privesc}, actions: [kill, throttle]}\n  - {name: cpu, actions: [throttle]}\n")
	h := newHarness(t, func(c *Config) { c.Policies = map[string]*Policy{"default": p} })
	h.verdict(escVerdict)
	h.verdict(cpuVerdict)
	if got := h.act.take(); !slices.Equal(got, []string{"kill 7"}) {
		t.Errorf("calls %v", got)
	}
	if s := h.c.Stats(); s.Skipped != 2 || s.Executed[ActKill] != 1 {
		t.Errorf("stats %+v", s)
	}
	if st := h.c.InForce(); len(st) != 1 || st[0].KilledAt.IsZero() {
		t.Errorf("in force %+v", st)
	}
}

func TestActuatorFailure(t *testing.T) {
	h := newHarness(t, nil)
	h.act.fail = errors.New("cgroup gone")
	h.verdict(cpuVerdict)
	recs := h.takeRecs()
	if len(recs) != 1 || !strings.Contains(recs[0].Error, "cgroup gone") {
		t.Errorf("records %+v", recs)
	}
	if st := h.c.InForce(); len(st) != 0 {
		t.Errorf("failed throttle in force: %+v", st)
	}
	if s := h.c.Stats(); s.Failures != 1 || s.Executed[ActThrottle] != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestReleaseAndUnfreeze(t *testing.T) {
	p := mustParse(t, "responses: [{name: all, actions: [throttle, deny-syscall, deny-connect, freeze]}]\n")
	h := newHarness(t, func(c *Config) { c.Policies = map[string]*Policy{"default": p} })
	h.verdict(metaVerdict)
	h.act.take()
	h.takeRecs()
	recs, err := h.c.Release(target(7, annotations.ModeEnforce))
	if err != nil {
		t.Fatal(err)
	}
	if got := h.act.take(); !slices.Equal(got, []string{"set-cpu 7 1024/-1/100000", "allow-syscalls 7", "allow-connect 7", "freeze 7 false"}) {
		t.Errorf("calls %v", got)
	}
	if len(recs) != 4 || !recs[0].Undo || !slices.EqualFunc(recs, h.takeRecs(), func(a, b Record) bool { return a == b }) {
		t.Errorf("records %+v", recs)
	}
	if st := h.c.InForce(); len(st) != 0 {
		t.Errorf("in force after release: %+v", st)
	}
	if recs, err := h.c.Release(target(7, annotations.ModeEnforce)); err != nil || len(recs) != 0 {
		t.Errorf("second release: %v %v", recs, err)
	}

	// A failed undo stays in force.
	h.verdict(metaVerdict)
	h.act.take()
	h.act.fail = errors.New("busy")
	if _, err := h.c.Release(target(7, annotations.ModeEnforce)); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("failed release: %v", err)
	}
	if st := h.c.InForce(); len(st) != 1 || st[0].FrozenSince.IsZero() || st[0].Throttle == nil {
		t.Errorf("in force after failed release: %+v", st)
	}
	h.act.fail = nil
	r, err := h.c.Unfreeze(target(7, annotations.ModeEnforce))
	if err != nil || !r.Undo || r.Action != ActFreeze {
		t.Errorf("unfreeze %+v %v", r, err)
	}
	if st := h.c.InForce(); len(st) != 1 || !st[0].FrozenSince.IsZero() {
		t.Errorf("in force after unfreeze: %+v", st)
	}
}

func TestStateRoundTripAndRestore(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state", "response.json")
	p := mustParse(t, "responses:\n  - {name: cpu, when: {class: cpu-abuse}, actions: [throttle]}\n  - {name: esc, actions: [deny-syscall]}\n")
	mod := func(c *Config) {
		c.StateFile = file
		c.Policies = map[string]*Policy{"default": p}
	}
	h := newHarness(t, mod)
	h.verdict(cpuVerdict)
	h.verdict(escVerdict)
	t2 := target(8, annotations.ModeEnforce)
	v := escVerdict
	h.c.Execute(&v, t2, h.c.Decide(&v, t2), time.Time{})
	h.c.drain()
	before := h.c.InForce()
	if len(before) != 2 {
		t.Fatalf("in force %+v", before)
	}

	// The agent restarts.
	h2 := newHarness(t, func(c *Config) {
		mod(c)
		c.Now = h.clk.Now
	})
	h2.clk = h.clk
	after := h2.c.InForce()
	if jsonOf(t, after) != jsonOf(t, before) {
		t.Errorf("loaded\n%s\nwant\n%s", jsonOf(t, after), jsonOf(t, before))
	}
	// Container 8 is gone; 7 gets its syscall set back.
	h2.c.Restore(func(cg uint64) (Target, bool) {
		if cg == 7 {
			return target(7, annotations.ModeEnforce), true
		}
		return Target{}, false
	})
	if got := h2.act.take(); !slices.Equal(got, []string{"deny-syscalls 7 [165 101] 1"}) {
		t.Errorf("restore calls %v", got)
	}
	if recs := h2.takeRecs(); len(recs) != 1 || !strings.Contains(recs[0].Detail, "re-applied") {
		t.Errorf("restore records %+v", recs)
	}
	if st := h2.c.InForce(); len(st) != 1 || st[0].CgroupID != 7 {
		t.Fatalf("after restore %+v", st)
	}
	// The throttle's timer went on: restored with the values read before
	// the restart.
	h.clk.advance(30 * time.Second)
	h2.c.expire()
	if got := h2.act.take(); !slices.Equal(got, []string{"set-cpu 7 1024/-1/100000"}) {
		t.Errorf("timer after restart: %v", got)
	}
	// The saved file says the same as the controller.
	h3 := newHarness(t, mod)
	if jsonOf(t, h3.c.InForce()) != jsonOf(t, h2.c.InForce()) {
		t.Errorf("file %s, controller %s", jsonOf(t, h3.c.InForce()), jsonOf(t, h2.c.InForce()))
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(file), "*"))
	if len(matches) != 1 {
		t.Errorf("temporary files left: %v", matches)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStateFileErrors(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{
		"version": `{"version": 99, "containers": []}`,
		"syntax":  `{"version": 1,`,
	} {
		file := filepath.Join(dir, name+".json")
		if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := New(Config{Actuator: &fakeActuator{}, StateFile: file, Log: quietLog()})
		if err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestQueueOverflow(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Queue = 2 })
	tg := target(7, annotations.ModeEnforce)
	for range 5 {
		v := escVerdict
		h.c.Execute(&v, tg, h.c.Decide(&v, tg), time.Time{})
	}
	s := h.c.Stats()
	if s.Queued != 4 || s.Dropped != 6 || s.Pending != 2 {
		t.Errorf("stats %+v", s)
	}
	h.c.drain()
	var dropped int
	for _, r := range h.takeRecs() {
		if strings.Contains(r.Error, "queue full") {
			dropped++
		}
	}
	if dropped != 6 {
		t.Errorf("%d drop records, want 6", dropped)
	}
}

func TestRun(t *testing.T) {
	recs := make(chan Record, 16)
	act := &fakeActuator{cpu: CPU{Shares: 1024}}
	p := mustParse(t, "restoreAfter: 50ms\nresponses: [{name: all, actions: [throttle]}]\n")
	c, err := New(Config{Actuator: act, Log: quietLog(), Policies: map[string]*Policy{"default": p}, Record: func(r Record) { recs <- r }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	v := cpuVerdict
	tg := target(7, annotations.ModeEnforce)
	c.Execute(&v, tg, c.Decide(&v, tg), time.Now())
	for _, undo := range []bool{false, true} {
		select {
		case r := <-recs:
			if r.Undo != undo || r.Error != "" {
				t.Errorf("record %+v", r)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("no record (undo %v)", undo)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	if got := act.take(); !slices.Equal(got, []string{"read-cpu 7", "set-cpu 7 2/10000/100000", "set-cpu 7 1024/-1/0"}) {
		t.Errorf("calls %v", got)
	}
}
