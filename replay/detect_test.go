package replay

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// suspicious is a container's run that the default rules flag several
// times: its workload starts with an exec (before which the agent's
// detector inspects nothing), then reads the metadata endpoint, writes
// /proc/sysrq-trigger and execs netcat.
func suspicious(t testing.TB) []event.Event {
	c := &event.Container{ID: "3f2a9c0d1e2f30415263748596a7b8c9", Name: "web", Pod: "shop-1", Namespace: "prod", Image: "shop/web:1"}
	return events(t, 5000, c, []call{
		{pid: 1, comm: "runc", name: "mount", path: "proc", path2: "/proc"}, // set-up: before the first exec
		{pid: 1, comm: "runc", name: "clone", ret: 100},
		{pid: 100, comm: "runc", name: "execve", path: "/bin/app", argv: []string{"app"}},
		{pid: 100, comm: "app", name: "openat", path: "/etc/hosts", ret: 3},
		{pid: 100, comm: "app", name: "connect", addr: "169.254.169.254:80"},
		{pid: 100, comm: "app", name: "openat", path: "/proc/sysrq-trigger", ret: -13, arg0: 0xffffff9c},
		{pid: 100, comm: "app", name: "execve", path: "/usr/bin/nc", argv: []string{"nc", "10.0.0.9", "4444"}, noret: true},
	})
}

// recordLive writes evs to a log as the agent does (each event, then the
// verdicts the detector reaches on it), passing each verdict through keep
// first (nil: keep all), and appends extra verdicts at the end. It returns
// the log and the ids of the verdicts recorded.
func recordLive(t *testing.T, evs []event.Event, keep func(*detector.Verdict) bool, extra ...detector.Verdict) (string, []string) {
	t.Helper()
	eng, err := NewEngine(nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	dir := writeLog(t, func(w *audit.Writer) {
		for i := range evs {
			ev := &evs[i]
			mustAppendEvent(t, w, ev)
			for _, v := range eng.Observe(ev) {
				if keep == nil || keep(&v) {
					ids = append(ids, v.ID)
					mustAppend(t, w, audit.KindVerdict, ev.CgroupID, ev.Container.ID, v)
				}
			}
		}
		for _, v := range extra {
			ids = append(ids, v.ID)
			mustAppend(t, w, audit.KindVerdict, 5000, evs[0].Container.ID, v)
		}
	})
	return dir, ids
}

func ruleFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuildComparesVerdicts(t *testing.T) {
	// the ids a replay with the default rules reaches on this run
	full, all := recordLive(t, suspicious(t), nil)
	if len(all) < 3 {
		t.Fatalf("the default rules reached %d verdicts on the run; want several to compare", len(all))
	}
	t.Logf("recorded: %v", rulesOf(t, full))
	passwd := ruleFile(t, `rules:
  - rule: opens-hosts
    class: fs-escape
    severity: low
    desc: test rule
    message: "{comm} opens {path}"
    syscalls: [openat]
    when: {path: /etc/hosts}
`)
	bogus := detector.Verdict{ID: "000000000000000000000000", Rule: "made-up", Class: detector.ClassNetwork, Severity: detector.Low, Message: "never reached"}
	byRule := func(rule string) func(*detector.Verdict) bool {
		return func(v *detector.Verdict) bool { return v.Rule != rule }
	}

	cases := []struct {
		name       string
		dir        string
		rules      []string
		noDefault  bool
		same       bool
		recorded   int
		replayed   int
		reproduced int
		missing    []string // rules of the verdicts recorded, not reached
		new        []string // rules of the verdicts reached, not recorded
	}{
		{"the rules of the live run", full, nil, false, true, len(all), len(all), len(all), nil, nil},
		{"a verdict the log lost", func() string { d, _ := recordLive(t, suspicious(t), byRule("network-tool-exec")); return d }(),
			nil, false, false, len(all) - 1, len(all), len(all) - 1, nil, []string{"network-tool-exec"}},
		{"a verdict the detector does not reach", func() string { d, _ := recordLive(t, suspicious(t), nil, bogus); return d }(),
			nil, false, false, len(all) + 1, len(all), len(all), []string{"made-up"}, nil},
		{"other rules", full, []string{passwd}, true, false, len(all), 1, 0, rulesOf(t, full), []string{"opens-hosts"}},
		{"added rules", full, []string{passwd}, false, false, len(all), len(all) + 1, len(all), nil, []string{"opens-hosts"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eng, err := NewEngine(tc.rules, tc.noDefault, nil)
			if err != nil {
				t.Fatal(err)
			}
			tl, err := Build(tc.dir, audit.Filter{ContainerID: "3f2a"}, eng)
			if err != nil {
				t.Fatal(err)
			}
			d := tl.Detect
			if d == nil {
				t.Fatal("no comparison")
			}
			if d.Same != tc.same || d.Recorded != tc.recorded || d.Replayed != tc.replayed || d.Reproduced != tc.reproduced || d.Rules != len(eng.Rules()) {
				t.Errorf("same %v, %d recorded, %d replayed, %d reproduced, %d rules; want %v, %d, %d, %d, %d",
					d.Same, d.Recorded, d.Replayed, d.Reproduced, d.Rules, tc.same, tc.recorded, tc.replayed, tc.reproduced, len(eng.Rules()))
			}
			if got := rules(d.Missing); !reflect.DeepEqual(got, tc.missing) {
				t.Errorf("missing %v, want %v", got, tc.missing)
			}
			if got := rules(d.New); !reflect.DeepEqual(got, tc.new) {
				t.Errorf("new %v, want %v", got, tc.new)
			}
			if len(tl.Verdicts) != tc.recorded {
				t.Errorf("%d recorded verdicts in the timeline, want %d", len(tl.Verdicts), tc.recorded)
			}
		})
	}
}

// rules are the sorted rule names of vs (nil for none).
func rules(vs []detector.Verdict) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Rule)
	}
	sort.Strings(out)
	return out
}

// rulesOf are the sorted rule names of the verdicts recorded in dir.
func rulesOf(t *testing.T, dir string) []string {
	t.Helper()
	tl, err := Build(dir, audit.Filter{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var vs []detector.Verdict
	for _, r := range tl.Verdicts {
		vs = append(vs, r.Verdict)
	}
	return rules(vs)
}

func TestCompareVerdicts(t *testing.T) {
	v := func(id string) detector.Verdict { return detector.Verdict{ID: id, Rule: "r-" + id} }
	rec := func(ids ...string) []RecordedVerdict {
		var out []RecordedVerdict
		for i, id := range ids {
			out = append(out, RecordedVerdict{Index: uint64(i + 1), Verdict: v(id)})
		}
		return out
	}
	vs := func(ids ...string) []detector.Verdict {
		var out []detector.Verdict
		for _, id := range ids {
			out = append(out, v(id))
		}
		return out
	}
	ids := func(vs []detector.Verdict) []string {
		var out []string
		for _, v := range vs {
			out = append(out, v.ID)
		}
		return out
	}
	cases := []struct {
		name                     string
		recorded                 []RecordedVerdict
		replayed, flushed        []detector.Verdict
		want                     Comparison
		missing, new, endOfTrace []string
	}{
		{"nothing", nil, nil, nil, Comparison{Same: true}, nil, nil, nil},
		{"the same", rec("a", "b"), vs("a", "b"), nil, Comparison{Recorded: 2, Replayed: 2, Reproduced: 2, Same: true}, nil, nil, nil},
		{"in another order", rec("a", "b"), vs("b", "a"), nil, Comparison{Recorded: 2, Replayed: 2, Reproduced: 2, Same: true}, nil, nil, nil},
		{"one not reached", rec("a", "b"), vs("a"), nil, Comparison{Recorded: 2, Replayed: 1, Reproduced: 1}, []string{"b"}, nil, nil},
		{"one new", rec("a"), vs("a", "c"), nil, Comparison{Recorded: 1, Replayed: 2, Reproduced: 1}, nil, []string{"c"}, nil},
		{"recorded at the end of the live run", rec("a", "w"), vs("a"), vs("w"), Comparison{Recorded: 2, Replayed: 2, Reproduced: 2, Same: true}, nil, nil, nil},
		{"end-of-trace windows the live run had not reached", rec("a"), vs("a"), vs("w"), Comparison{Recorded: 1, Replayed: 1, Reproduced: 1, Same: true}, nil, nil, []string{"w"}},
		{"all different", rec("a"), vs("b"), vs("w"), Comparison{Recorded: 1, Replayed: 1}, []string{"a"}, []string{"b"}, []string{"w"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := compareVerdicts(tc.recorded, tc.replayed, tc.flushed)
			if got.Recorded != tc.want.Recorded || got.Replayed != tc.want.Replayed || got.Reproduced != tc.want.Reproduced || got.Same != tc.want.Same {
				t.Errorf("got %+v, want %+v", *got, tc.want)
			}
			if !reflect.DeepEqual(ids(got.Missing), tc.missing) || !reflect.DeepEqual(ids(got.New), tc.new) || !reflect.DeepEqual(ids(got.EndOfTrace), tc.endOfTrace) {
				t.Errorf("missing %v new %v end of trace %v; want %v %v %v", ids(got.Missing), ids(got.New), ids(got.EndOfTrace), tc.missing, tc.new, tc.endOfTrace)
			}
		})
	}
}
