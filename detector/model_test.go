package detector

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"vigil.dev/vigil/event"
)

// normalTrace is a trace of a small server: startup, then requests that
// read files or talk to a backend, in varying numbers and orders.
func normalTrace(r *rand.Rand) []string {
	s := []string{"execve", "brk", "arch_prctl", "mmap", "access", "openat", "fstat", "mmap", "close",
		"openat", "read", "fstat", "mmap", "mprotect", "mmap", "close", "mprotect", "munmap", "socket", "bind", "listen"}
	for n := 3 + r.IntN(20); n > 0; n-- {
		s = append(s, "epoll_wait", "accept4", "read")
		switch r.IntN(3) {
		case 0:
			s = append(s, "openat", "fstat", "read", "read", "close")
		case 1:
			s = append(s, "socket", "connect", "sendto", "recvfrom", "close")
		default:
			s = append(s, "getpid", "clock_gettime")
		}
		if r.IntN(4) == 0 {
			s = append(s, "futex")
		}
		s = append(s, "write", "close")
	}
	return append(s, "exit_group")
}

// attackTrace is a normal trace with an attack spliced in.
func attackTrace(r *rand.Rand, kind int) []string {
	s := normalTrace(r)
	at := 21 + r.IntN(len(s)-22)
	var inj []string
	switch kind % 3 {
	case 0: // reverse shell: known calls, new order
		inj = []string{"socket", "connect", "dup2", "dup2", "dup2", "execve", "brk", "openat"}
	case 1: // escape: unknown calls
		inj = []string{"unshare", "mount", "pivot_root", "chdir"}
	default: // scan of files
		for i := 0; i < 12; i++ {
			inj = append(inj, "openat", "getdents64", "close")
		}
	}
	return append(s[:at], append(inj, s[at:]...)...)
}

func seqUnitsOf(traces [][]string) []Unit {
	var u []Unit
	for i, t := range traces {
		u = append(u, Unit{Source: "synthetic", Index: i, Seqs: [][]string{t}})
	}
	return u
}

func trainedModel(t testing.TB) (*Model, *rand.Rand) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	var tr [][]string
	for i := 0; i < 200; i++ {
		tr = append(tr, normalTrace(r))
	}
	m, err := Train(seqUnitsOf(tr), TrainOptions{Name: "synthetic", UnitKind: "seq"})
	if err != nil {
		t.Fatal(err)
	}
	return m, r
}

func TestModelSeparatesAttacks(t *testing.T) {
	m, r := trainedModel(t)
	var normal, attack []float64
	fp, tp := 0, 0
	for i := 0; i < 100; i++ {
		u := Unit{Seqs: [][]string{normalTrace(r)}}
		s := m.Score(&u)
		normal = append(normal, s.Score)
		if s.Anomalous {
			fp++
		}
		a := Unit{Seqs: [][]string{attackTrace(r, i)}}
		sa := m.Score(&a)
		attack = append(attack, sa.Score)
		if sa.Anomalous {
			tp++
		}
	}
	auc := aucOf(attack, normal)
	t.Logf("AUC %.3f, detection %d%%, false positives %d%%, threshold %.3f", auc, tp, fp, m.Threshold)
	if auc < 0.95 {
		t.Errorf("AUC %.3f, want >= 0.95", auc)
	}
	if tp < 90 {
		t.Errorf("detected %d of 100 attack traces at the calibrated threshold, want >= 90", tp)
	}
	if fp > 5 {
		t.Errorf("%d of 100 normal traces above the threshold, want <= 5", fp)
	}
}

func aucOf(pos, neg []float64) float64 {
	w := 0.0
	for _, p := range pos {
		for _, n := range neg {
			if p > n {
				w++
			} else if p == n {
				w += 0.5
			}
		}
	}
	return w / float64(len(pos)*len(neg))
}

func TestModelCounts(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	window := func(scale float64, extra string) Unit {
		c := map[string]float64{"read": 100 * scale * (0.8 + 0.4*r.Float64()), "write": 50 * scale * (0.8 + 0.4*r.Float64()),
			"epoll_wait": 30 * scale, "futex": 10 * scale * r.Float64()}
		if extra != "" {
			c[extra] = 20
		}
		return Unit{Counts: c}
	}
	var tr []Unit
	for i := 0; i < 300; i++ {
		tr = append(tr, window(1+float64(i%3), ""))
	}
	m, err := Train(tr, TrainOptions{UnitKind: "counts"})
	if err != nil {
		t.Fatal(err)
	}
	if m.HasSeq || !m.HasCounts {
		t.Fatalf("count windows: HasSeq %v HasCounts %v", m.HasSeq, m.HasCounts)
	}
	for _, tc := range []struct {
		name string
		u    Unit
		want bool
	}{
		{"normal", window(2, ""), false},
		{"new syscall", window(2, "ptrace"), true},
		{"volume x100", window(300, ""), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := m.Score(&tc.u)
			if s.Anomalous != tc.want {
				t.Errorf("score %.3f (threshold %.3f): anomalous %v, want %v", s.Score, m.Threshold, s.Anomalous, tc.want)
			}
		})
	}
}

func TestModelSaveLoadDeterministic(t *testing.T) {
	m1, _ := trainedModel(t)
	m2, r := trainedModel(t)
	var b1, b2 bytes.Buffer
	if err := m1.Save(&b1); err != nil {
		t.Fatal(err)
	}
	m2.Save(&b2)
	if !bytes.Equal(b1.Bytes(), b2.Bytes()) {
		t.Fatal("training twice on the same data gave different model files")
	}
	path := filepath.Join(t.TempDir(), "m.model")
	if err := m1.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	l, err := LoadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		u := Unit{Seqs: [][]string{attackTrace(r, i)}}
		a, b := m1.Score(&u), l.Score(&u)
		if a.Score != b.Score || a.Anomalous != b.Anomalous || !reflect.DeepEqual(a.Parts, b.Parts) {
			t.Fatalf("loaded model scores %+v, saved one %+v", b, a)
		}
	}
	if _, err := ReadModel(strings.NewReader("not a model")); err == nil || !strings.Contains(err.Error(), "not a vigil model file") {
		t.Errorf("garbage model: %v", err)
	}
	if !strings.Contains(l.Summary(), "n-gram order 6") {
		t.Errorf("summary: %s", l.Summary())
	}
}

func TestProfile(t *testing.T) {
	m, _ := trainedModel(t)
	b, skipped, err := m.ProfileJSON(event.X8664)
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 0 {
		t.Errorf("skipped %v", skipped)
	}
	var p SeccompProfile
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.DefaultAction != "SCMP_ACT_ERRNO" || len(p.Syscalls) != 1 || p.Syscalls[0].Action != "SCMP_ACT_ALLOW" {
		t.Fatalf("profile shape: %s", b)
	}
	allowed := map[string]bool{}
	for _, n := range p.Syscalls[0].Names {
		allowed[n] = true
	}
	for _, n := range append(m.Vocab, "execve", "exit_group") {
		if !allowed[n] {
			t.Errorf("%s not allowed", n)
		}
	}
	if allowed["mount"] || allowed["ptrace"] || len(allowed) != len(m.Vocab)+2 { // + exit, rt_sigreturn
		t.Errorf("profile allows more than seen: %d names for %d seen", len(allowed), len(m.Vocab))
	}
}

func TestReadFormats(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	for _, tc := range []struct {
		name, file, text string
		opt              ReadOptions
		format           string
		units            int
		first            []string
		seqs             [][]string // every sequence of the first unit
		err              string
	}{
		{name: "x86_64 numbers", file: "a.txt", text: "59 12 257\n3 60\n", format: FormatSeq, units: 1, first: []string{"execve", "brk", "openat", "close", "exit"}},
		{name: "i386 numbers", file: "b.txt", text: "11 45 5 6 1", opt: ReadOptions{ABI: event.I386}, format: FormatSeq, units: 1, first: []string{"execve", "brk", "open", "close", "exit"}},
		{name: "comma numbers", file: "c2.txt", text: "59,12,257\n", format: FormatSeq, units: 1, first: []string{"execve", "brk", "openat"}},
		{name: "names", file: "c.txt", text: "openat read close", format: FormatSeq, units: 1, first: []string{"openat", "read", "close"}},
		{name: "counts", file: "d.csv", text: "time_ms,read,write,openat\n0,10,5,1\n1000,0,0,0\n2000,3,4,5\n", format: FormatCounts, units: 3},
		{name: "bad count", file: "e.csv", text: "time,read\n0,x\n", err: `e.csv:2: column "read": "x" is not a count`},
		{name: "ragged", file: "f.csv", text: "time,read\n0,1,2\n", err: "f.csv:2"},
		{name: "events", file: "g.jsonl", text: `{"seq":1,"cgroup":5,"pid":1,"tid":1,"syscall":"read","ret":0}
{"verdict":{"id":"x"}}
{"seq":2,"cgroup":5,"pid":1,"tid":2,"syscall":"write","ret":0}
{"summary":{"seen":2}}
`, opt: ReadOptions{Window: 1000}, format: FormatEvents, units: 1},
		{name: "bad event", file: "h.jsonl", text: `{"seq":1,"syscall":"nosuch"}` + "\n", err: "h.jsonl:1"},
		{name: "empty trace", file: "j.txt", text: "\n", format: FormatSeq, units: 1, first: []string{}},
		{name: "bad token", file: "i.txt", text: "1 2 -3", err: `token 3 "-3"`},
		{name: "pid column", file: "k.int", text: "551 2\n551 59\n551 3\n552 0\n\n552 60\n552 1\n552 3\n551 0\n", format: FormatSeq, units: 1,
			seqs: [][]string{{"open", "execve", "close", "read"}, {"read", "exit", "write", "close"}}},
		{name: "two numbers once", file: "l.txt", text: "59 12\n", format: FormatSeq, units: 1, first: []string{"execve", "brk"}},
		{name: "two numbers a line", file: "m.txt", text: "59 12\n3 60\n", format: FormatSeq, units: 1, first: []string{"execve", "brk", "close", "exit"}},
		{name: "pidseq asked", file: "n.int", text: "551 2\n", opt: ReadOptions{Format: FormatPidSeq}, format: FormatSeq, units: 1, seqs: [][]string{{"open"}}},
		{name: "pidseq bad line", file: "o.int", text: "551 2\n551 2 3\n", opt: ReadOptions{Format: FormatPidSeq}, err: "o.int: line 2: 3 fields, want PID SYSCALL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write(tc.file, tc.text)
			units, format, err := ReadUnits(p, tc.opt)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if format != tc.format || len(units) != tc.units {
				t.Fatalf("format %s, %d units; want %s, %d", format, len(units), tc.format, tc.units)
			}
			if tc.first != nil && !reflect.DeepEqual(units[0].Seqs[0], tc.first) {
				t.Errorf("sequence %v, want %v", units[0].Seqs[0], tc.first)
			}
			if tc.seqs != nil && !reflect.DeepEqual(units[0].Seqs, tc.seqs) {
				t.Errorf("sequences %v, want %v (one per pid)", units[0].Seqs, tc.seqs)
			}
		})
	}
	files, err := ExpandPaths([]string{dir})
	if err != nil || len(files) != 16 {
		t.Errorf("ExpandPaths: %d files, %v", len(files), err)
	}
}

func TestEventWindowsSplitThreads(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 25; i++ {
		tid := 1 + i%2
		b.WriteString(`{"seq":` + itoa(i+1) + `,"cgroup":9,"pid":1,"tid":` + itoa(tid) + `,"syscall":"` + []string{"read", "write"}[tid-1] + `"}` + "\n")
	}
	units, err := eventUnits("mem", strings.NewReader(b.String()), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(units) != 3 || units[2].Len() != 5 {
		t.Fatalf("%d units (last %d syscalls), want 3 (10, 10, 5)", len(units), units[len(units)-1].Len())
	}
	for _, s := range units[0].Seqs[0] {
		if s != "read" {
			t.Fatalf("thread 1's sequence holds %q: threads were mixed", s)
		}
	}
	// The second window's sequences start from the thread's last syscalls.
	if p := units[0].Prefix[0]; len(p) != 0 {
		t.Errorf("first window has a prefix %v", p)
	}
	if p := units[1].Prefix[1]; len(p) != ngramOrder-1 || p[0] != "write" {
		t.Errorf("second window, thread 2: prefix %v, want %d writes", p, ngramOrder-1)
	}
}

func TestOnlineModelVerdicts(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	// Train the way the agent does: windows of a cgroup's event stream.
	w := newWindower(200)
	var train []Unit
	seq := 0
	mk := func(cg uint64, n string) *event.Event {
		seq++
		return &event.Event{Seq: uint64(seq), KTime: uint64(seq) * 1000, CgroupID: cg, PID: 1, TID: 1, Nr: nr(t, n)}
	}
	for i := 0; i < 300; i++ {
		for _, n := range normalTrace(r) {
			if w.add(mk(1, n)) {
				train = append(train, w.unit("train", len(train)))
			}
		}
	}
	m, err := Train(train, TrainOptions{Name: "synthetic", UnitKind: "events", WindowN: 200})
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Config{NoDefaultRules: true, Model: m})
	feed := func(cg uint64, names []string) []Verdict {
		var out []Verdict
		for _, n := range names {
			out = append(out, e.Observe(mk(cg, n))...)
		}
		return out
	}
	var normal []Verdict
	windows := 0
	for i := 0; i < 30; i++ {
		tr := normalTrace(r)
		windows += len(tr)
		normal = append(normal, feed(1, tr)...)
	}
	windows /= 200
	if len(normal) > windows/10 {
		t.Errorf("normal stream: %d model verdicts in %d windows", len(normal), windows)
	}
	var bad []Verdict
	for i := 0; i < 3; i++ {
		bad = append(bad, feed(2, []string{"unshare", "mount", "pivot_root", "mount", "setns", "ptrace", "bpf", "init_module"})...)
		bad = append(bad, feed(2, normalTrace(r)[:40])...)
	}
	bad = append(bad, e.Flush()...)
	found := false
	for _, v := range bad {
		if v.CgroupID == 2 && v.Class == ClassAnomaly && v.Rule == "model:synthetic" && len(v.Evidence) == 1 && len(v.Evidence[0].Sequence) > 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("no anomaly verdict for an escape sequence (got %d verdicts)", len(bad))
	}
}

func TestTrainErrors(t *testing.T) {
	if _, err := Train(nil, TrainOptions{}); err == nil {
		t.Error("no units accepted")
	}
	if _, err := Train([]Unit{{Counts: map[string]float64{}}}, TrainOptions{}); err == nil {
		t.Error("empty units accepted")
	}
}

func TestLearnerPerWorkload(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	l := NewLearner(100, 0)
	web := &event.Container{Name: "web", Image: "nginx:1"}
	seq := 0
	// two replicas of web (cgroups 1 and 2) and an unnamed cgroup 3
	for i := 0; i < 60; i++ {
		for _, n := range normalTrace(r) {
			seq++
			cg := uint64(1 + seq%3)
			var c *event.Container
			if cg != 3 {
				c = web
			}
			l.Observe(&event.Event{Seq: uint64(seq), KTime: uint64(seq), CgroupID: cg, PID: 1, TID: 1, Nr: nr(t, n), Container: c})
		}
	}
	w := l.Workloads()
	if len(w) != 2 || w["nginx:1/web"] < 2*w["cgroup:3"]-2 || w["cgroup:3"] == 0 {
		t.Fatalf("workloads %v: want nginx:1/web (two replicas) and cgroup:3", w)
	}
	m, err := l.Model("nginx:1/web")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "nginx:1/web" || m.WindowN != 100 || m.Units > w["nginx:1/web"] || m.Units < w["nginx:1/web"]-2 {
		t.Errorf("model %q window %d units %d (workloads %v)", m.Name, m.WindowN, m.Units, w)
	}
	if _, err := l.Model("nope"); err == nil {
		t.Error("model of an unknown workload")
	}
}

func TestTraceKind(t *testing.T) {
	for kind, want := range map[string]bool{"trace": true, "seq": true, "seq+trace": true, "": false,
		"events": false, "window": false, "counts": false, "seq+events": false} {
		if got := TraceKind(kind); got != want {
			t.Errorf("TraceKind(%q) = %v, want %v", kind, got, want)
		}
	}
}

// TestTraceDefaults checks the defaults for whole traces: the n-gram
// model and the tf-idf distance, length- and rank-normalized; an explicit
// choice of components keeps the event-window scoring.
func TestTraceDefaults(t *testing.T) {
	m, _ := trainedModel(t)
	if !m.Whole || m.Max || !reflect.DeepEqual(m.Calib.Components, DefaultTraceComponents) {
		t.Errorf("trace model: whole %v, max %v, components %v; want whole, mean, %v", m.Whole, m.Max, m.Calib.Components, DefaultTraceComponents)
	}
	for _, c := range []int{compNgram, compFreq} {
		if len(m.Ranks[c]) != rankCount {
			t.Errorf("%s: %d rank points, want %d", compNames[c], len(m.Ranks[c]), rankCount)
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	var tr [][]string
	for i := 0; i < 50; i++ {
		tr = append(tr, normalTrace(r))
	}
	w, err := Train(seqUnitsOf(tr), TrainOptions{UnitKind: "seq", Components: DefaultComponents})
	if err != nil {
		t.Fatal(err)
	}
	if w.Whole || !reflect.DeepEqual(w.Ranks, [5][]float64{}) || len(w.Calib.Components) != 4 {
		t.Errorf("explicit components: whole %v, ranks %v, components %v", w.Whole, w.Ranks, w.Calib.Components)
	}
	// a saved model scores as the one it came from
	back, err := ReadModel(saved(t, m))
	if err != nil {
		t.Fatal(err)
	}
	u := Unit{Seqs: [][]string{attackTrace(r, 1)}}
	if a, b := m.Score(&u), back.Score(&u); a.Score != b.Score {
		t.Errorf("score %v, after save and read %v", a.Score, b.Score)
	}
}

// TestRankNorm checks the rarity of a score among held-out scores: 0 for
// the most common, increasing, continuous past the largest.
func TestRankNorm(t *testing.T) {
	vals := make([]float64, 200)
	for i := range vals {
		if i >= 100 {
			vals[i] = float64(i - 100) // half the scores are 0
		}
	}
	m := &Model{Norm: [5]float64{10}, Calib: calibInfo{HeldOut: len(vals)}}
	m.Ranks[0] = rankPoints(vals)
	if got := m.norm(0, 0); got != 0 {
		t.Errorf("rarity of the most common score %v, want 0", got)
	}
	prev := -1.0
	for x := 0.0; x <= 120; x += 0.5 {
		got := m.norm(0, x)
		if got < prev {
			t.Fatalf("rarity of %v is %v, below that of a smaller score (%v)", x, got, prev)
		}
		prev = got
	}
	top := m.Ranks[0][rankCount-1]
	if a, b := m.norm(0, top), m.norm(0, top+1e-9); math.Abs(a-b) > 1e-3 {
		t.Errorf("rarity jumps past the largest held-out score: %v to %v", a, b)
	}
	if got, want := m.norm(0, top+10), m.norm(0, top)+1; math.Abs(got-want) > 1e-9 {
		t.Errorf("rarity 10 past the largest %v, want %v (one normalizer more)", got, want)
	}
	m.Ranks[0] = nil
	if got := m.norm(0, 5); got != 0.5 {
		t.Errorf("without ranks %v, want 5/Norm = 0.5", got)
	}
}

// saved is m as Save writes it.
func saved(t *testing.T, m *Model) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	if err := m.Save(&b); err != nil {
		t.Fatal(err)
	}
	return &b
}
