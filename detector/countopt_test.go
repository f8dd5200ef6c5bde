package detector

import (
	"math"
	"strings"
	"testing"

	"vigil.dev/vigil/event"
)

// stableWindows are count windows whose syscalls vary a little, the same
// way in every window (deterministic).
func stableWindows(source string, n int, futex float64) []Unit {
	var out []Unit
	for i := 0; i < n; i++ {
		d := float64(i%5) - 2 // -2..2
		out = append(out, Unit{Source: source, Index: i, Counts: map[string]float64{
			"read": 100 + 10*d, "write": 50 + 5*d, "futex": futex * (1 + 0.05*d)}})
	}
	return out
}

func trainCounts(t *testing.T, units []Unit, o CountOptions, ctx int) *Model {
	t.Helper()
	m, err := Train(units, TrainOptions{UnitKind: "counts", Components: []string{"count"}, Count: o, Context: ctx})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCountExcess(t *testing.T) {
	tr := stableWindows("a", 200, 10)
	plain := trainCounts(t, tr, CountOptions{Features: FeatSyscall, Tier: true}, 1)
	ex := trainCounts(t, tr, CountOptions{Features: FeatSyscall, Tier: true, Excess: 10}, 1)
	sd := func(m *Model, name string) (float64, float64) {
		i := m.index[name]
		return m.Count.Mean[i], m.Count.SD[i]
	}
	// a window whose read lies k SDs above the mean, the rest at the mean
	at := func(m *Model, kRead, kWrite float64) map[string]float64 {
		mr, sr := sd(m, "read")
		mw, sw := sd(m, "write")
		mf, _ := sd(m, "futex")
		return map[string]float64{"read": math.Expm1(mr + kRead*sr), "write": math.Expm1(mw + kWrite*sw), "futex": math.Expm1(mf)}
	}
	for _, tc := range []struct {
		name          string
		kRead, kWrite float64
		plain, excess float64
	}{
		{"ordinary spread", 3, 2, 3, 0},
		{"one far off", 25, 0, 25, 15},
		{"two far off add up", 15, 14, 15, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := plain.countScore(at(plain, tc.kRead, tc.kWrite)); math.Abs(got-tc.plain) > 0.01 {
				t.Errorf("largest deviation %.3f, want %.3f", got, tc.plain)
			}
			if got := ex.countScore(at(ex, tc.kRead, tc.kWrite)); math.Abs(got-tc.excess) > 0.01 {
				t.Errorf("deviation beyond 10 SD %.3f, want %.3f", got, tc.excess)
			}
		})
	}
	// a syscall never seen in training stays above everything under Tier
	if got := ex.countScore(map[string]float64{"read": 100, "write": 50, "futex": 10, "ptrace": 1}); got < NewTier {
		t.Errorf("new syscall: %.3f, want >= %d", got, NewTier)
	}
}

func TestCountNovel(t *testing.T) {
	tr := stableWindows("a", 100, 10)
	m := trainCounts(t, tr, CountOptions{Features: FeatSyscall, Novel: 0.1}, 1)
	c := map[string]float64{"read": 100, "write": 50, "futex": 10, "ptrace": 4}
	want := math.Log1p(4) / 0.1
	if got := m.countScore(c); math.Abs(got-want) > 1e-9 {
		t.Errorf("new syscall with Novel 0.1: %.6f, want log(1+4)/0.1 = %.6f", got, want)
	}
}

func TestCountHeldOut(t *testing.T) {
	// futex is steady within each file but ten times higher in the second
	// one: its held-out deviation is large, read's and write's are not.
	tr := append(stableWindows("file1", 100, 10), stableWindows("file2", 100, 100)...)
	m := trainCounts(t, tr, CountOptions{Features: FeatSyscall, Tier: true, HeldOut: true}, 1)
	sc := m.Count.Scale
	if len(sc) != len(m.Vocab) {
		t.Fatalf("%d scales for %d syscalls", len(sc), len(m.Vocab))
	}
	if s := sc[m.index["futex"]]; s < 10 {
		t.Errorf("futex, shifted between the files: scale %.2f, want >= 10", s)
	}
	for _, n := range []string{"read", "write"} {
		if s := sc[m.index[n]]; s != 1 {
			t.Errorf("%s, alike in both files: scale %.3f, want 1", n, s)
		}
	}
	plain := trainCounts(t, tr, CountOptions{Features: FeatSyscall, Tier: true}, 1)
	c := map[string]float64{"read": 100, "write": 50, "futex": 1000}
	if a, b := plain.countScore(c), m.countScore(c); !(b < a/10) {
		t.Errorf("futex x10 beyond the second file: %.2f held out, %.2f without; want the held-out scale to divide it", b, a)
	}
	// one source: the halves in order
	one := append(stableWindows("f", 100, 10), stableWindows("f", 100, 100)...)
	m1 := trainCounts(t, one, CountOptions{Features: FeatSyscall, Tier: true, HeldOut: true}, 1)
	if s := m1.Count.Scale[m1.index["futex"]]; s < 10 {
		t.Errorf("one source split in halves: futex scale %.2f, want >= 10", s)
	}
}

func TestCountHeldOutExcess(t *testing.T) {
	// read and write vary alike in both files, futex is ten times higher
	// in the second: read's excess level falls to the floor, futex's
	// stays at Excess.
	tr := append(stableWindows("file1", 100, 10), stableWindows("file2", 100, 100)...)
	o := CountOptions{Features: FeatSyscall, Tier: true, Excess: 10}
	plain := trainCounts(t, tr, o, 1)
	o.HeldOutExcess = true
	m := trainCounts(t, tr, o, 1)
	lv := m.Count.Excess
	if len(lv) != len(m.Vocab) {
		t.Fatalf("%d excess levels for %d syscalls", len(lv), len(m.Vocab))
	}
	if l := lv[m.index["futex"]]; l != 10 {
		t.Errorf("futex, shifted between the files: excess level %.3f, want 10 (the cap)", l)
	}
	for _, n := range []string{"read", "write"} {
		if l := lv[m.index[n]]; l != HeldOutFloor {
			t.Errorf("%s, alike in both files: excess level %.3f, want the floor %d", n, l, HeldOutFloor)
		}
	}
	at := func(m *Model, name string, k float64) map[string]float64 {
		c := map[string]float64{}
		for _, n := range []string{"read", "write", "futex"} {
			i := m.index[n]
			x := m.Count.Mean[i]
			if n == name {
				x += k * m.Count.SD[i]
			}
			c[n] = math.Expm1(x)
		}
		return c
	}
	for _, tc := range []struct {
		name          string
		sys           string
		k             float64
		plain, levels float64
	}{
		{"read 6 SD off", "read", 6, 0, 6 - HeldOutFloor},
		{"read 2 SD off", "read", 2, 0, 0},
		{"futex 8 SD off", "futex", 8, 0, 0},
		{"read 14 SD off", "read", 14, 4, 14 - HeldOutFloor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := plain.countScore(at(plain, tc.sys, tc.k)); math.Abs(got-tc.plain) > 0.01 {
				t.Errorf("one excess level of 10: %.3f, want %.3f", got, tc.plain)
			}
			if got := m.countScore(at(m, tc.sys, tc.k)); math.Abs(got-tc.levels) > 0.01 {
				t.Errorf("per-syscall levels: %.3f, want %.3f", got, tc.levels)
			}
		})
	}
	// the levels survive a save and a read; broken ones are refused
	back, err := ReadModel(saved(t, m))
	if err != nil {
		t.Fatal(err)
	}
	c := at(m, "read", 6)
	if a, z := m.countScore(c), back.countScore(c); a != z {
		t.Errorf("read back: %.3f, before %.3f", z, a)
	}
	m.Count.Excess[0] = 0
	if _, err := ReadModel(saved(t, m)); err == nil || !strings.Contains(err.Error(), "excess level of 0") {
		t.Errorf("an excess level of 0: error %v", err)
	}
	// without Excess the option does nothing
	o.Excess = 0
	if n := trainCounts(t, tr, o, 1); n.Count.Excess != nil {
		t.Errorf("no Excess: %d excess levels, want none", len(n.Count.Excess))
	}
}

func TestScoreSeriesContext(t *testing.T) {
	tr := stableWindows("a", 200, 10)
	normal := stableWindows("b", 6, 10)
	spike := Unit{Counts: map[string]float64{"read": 5000, "write": 50, "futex": 10}}
	series := func(m *Model, spikes ...int) []float64 {
		u := append([]Unit(nil), normal...)
		for _, i := range spikes {
			u[i] = spike
		}
		var out []float64
		for _, s := range m.ScoreSeries(u) {
			out = append(out, s.Score)
		}
		return out
	}
	one := trainCounts(t, tr, CountOptions{Features: FeatSyscall, Tier: true, Excess: 10}, 1)
	two := trainCounts(t, tr, CountOptions{Features: FeatSyscall, Tier: true, Excess: 10}, 2)
	if one.Context != 1 || two.Context != 2 {
		t.Fatalf("contexts %d and %d, want 1 and 2", one.Context, two.Context)
	}
	alone := one.Score(&spike).Score
	if alone <= one.Threshold {
		t.Fatalf("the spike scores %.3f, not above the threshold %.3f", alone, one.Threshold)
	}
	if s := series(one, 3); s[3] != alone {
		t.Errorf("context 1: the spike scores %.3f in a series, %.3f alone", s[3], alone)
	}
	if s := series(two, 3); s[3] != 0 || s[4] != 0 {
		t.Errorf("context 2: a single spike scores %v, want 0 (a deviation must last two windows)", s)
	}
	if s := series(two, 3, 4); s[3] != 0 || s[4] != alone {
		t.Errorf("context 2: two spikes in a row score %v, want the second at %.3f", s, alone)
	}
	if s := series(two, 0); s[0] != alone {
		t.Errorf("context 2: the first window of a stream scores %.3f, want its own %.3f", s[0], alone)
	}
	// count windows get DefaultContext unless told
	def, err := Train(tr, TrainOptions{UnitKind: "counts"})
	if err != nil {
		t.Fatal(err)
	}
	if def.Context != DefaultContext || def.Count.Opt.Excess != WindowCountOptions.Excess {
		t.Errorf("count-window defaults: context %d, excess %v; want %d and %v", def.Context, def.Count.Opt.Excess, DefaultContext, WindowCountOptions.Excess)
	}
}

func TestContextScoresPush(t *testing.T) {
	var c contextScores
	got := []float64{}
	for _, s := range []float64{5, 1, 7, 8, 9, 2} {
		got = append(got, c.push(s, 3))
	}
	want := []float64{5, 1, 1, 1, 7, 2}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("smallest of the last 3: %v, want %v", got, want)
		}
	}
}

func TestReadModelCountChecks(t *testing.T) {
	tr := append(stableWindows("file1", 50, 10), stableWindows("file2", 50, 100)...)
	m := trainCounts(t, tr, CountOptions{Features: FeatSyscall, Tier: true, HeldOut: true}, 2)
	back, err := ReadModel(saved(t, m))
	if err != nil {
		t.Fatal(err)
	}
	if back.Context != 2 || len(back.Count.Scale) != len(m.Count.Scale) || !back.Count.Opt.HeldOut {
		t.Errorf("read back: context %d, %d scales, held out %v", back.Context, len(back.Count.Scale), back.Count.Opt.HeldOut)
	}
	for _, tc := range []struct {
		name, want string
		edit       func(m *Model)
	}{
		{"short scales", "count scales of 1 syscalls", func(m *Model) { m.Count.Scale = m.Count.Scale[:1] }},
		{"scale below 1", "held-out scale of 0.5", func(m *Model) { m.Count.Scale[0] = 0.5 }},
		{"context too long", "context of 101 windows, want 0..100", func(m *Model) { m.Context = 101 }},
		{"negative context", "context of -1 windows", func(m *Model) { m.Context = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := trainCounts(t, tr, CountOptions{Features: FeatSyscall, Tier: true, HeldOut: true}, 2)
			tc.edit(c)
			_, err := ReadModel(saved(t, c))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestModelRulesOnlyForOtherWorkloads(t *testing.T) {
	// a model of workload img/web (learned the way the agent learns)
	l := NewLearner(50, 0)
	web := &event.Container{Image: "img", Name: "web"}
	seq := 0
	mk := func(cg uint64, c *event.Container, n string) *event.Event {
		seq++
		return &event.Event{Seq: uint64(seq), KTime: uint64(seq) * 1000, CgroupID: cg, PID: 1, TID: 1, Nr: nr(t, n), Container: c}
	}
	for i := 0; i < 3000; i++ {
		l.Observe(mk(1, web, []string{"read", "write", "epoll_wait", "futex"}[i%4]))
	}
	m, err := l.Model("img/web")
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Config{NoDefaultRules: true, Model: m})
	escape := []string{"unshare", "mount", "pivot_root", "mount", "setns", "ptrace", "bpf", "init_module"}
	feed := func(cg uint64, c *event.Container) int {
		n := 0
		for i := 0; i < 40; i++ {
			for _, s := range escape {
				for _, v := range e.Observe(mk(cg, c, s)) {
					if v.Class == ClassAnomaly {
						n++
					}
				}
			}
		}
		return n
	}
	if n := feed(2, &event.Container{Image: "img", Name: "web"}); n == 0 {
		t.Error("a replica of img/web: no model verdict for an escape sequence")
	}
	if s := e.ModelStatus(2); s != "model img/web" {
		t.Errorf("replica's model status %q, want %q", s, "model img/web")
	}
	if n := feed(3, &event.Container{Image: "other", Name: "db"}); n != 0 {
		t.Errorf("a workload without a model: %d model verdicts, want none (rules only)", n)
	}
	if s, want := e.ModelStatus(3), `rules only: no model for workload "other/db" (the model is for "img/web")`; s != want {
		t.Errorf("unmodelled workload's status %q, want %q", s, want)
	}
	if s := e.ModelStatus(99); s != "" {
		t.Errorf("unseen cgroup's status %q, want empty", s)
	}
	if v := e.FlushCgroup(3); len(v) != 0 {
		t.Errorf("flushing the unmodelled workload: %d verdicts", len(v))
	}
}
