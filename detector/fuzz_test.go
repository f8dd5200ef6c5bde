package detector

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/fuzzseed"
)

const seedRules = `lists:
  shells: [sh, bash]
  watched: [/etc/shadow, "/root/*"]
macros:
  shell_process: {comm: $shells}
rules:
  - rule: shell-reads-secret
    class: privesc
    severity: high
    desc: a shell opens a watched file
    message: "{comm} opens {path}"
    syscalls: [open, openat]
    when:
      path: $watched
      macro: shell_process
  - rule: connect-burst
    class: network
    severity: medium
    message: "{comm} connects at a high rate"
    syscalls: [connect]
    rate: {count: 3, window: 1s, per: process}
  - sample: busy
    class: cpu-abuse
    severity: low
    desc: busy
    when:
      cpu_cores: {ge: 0.5}
    for: 1s
`

func ruleSeeds() []fuzzseed.Seed {
	return []fuzzseed.Seed{
		fuzzseed.S("small", []byte(seedRules)),
		fuzzseed.S("default", DefaultRules()),
		fuzzseed.S("empty", []byte("")),
		fuzzseed.S("override-off", []byte("rules:\n  - rule: shell-reads-secret\n    enabled: false\n")),
		fuzzseed.S("unknown-field", []byte("rules:\n  - rule: x\n    class: privesc\n    severity: low\n    colour: red\n")),
		fuzzseed.S("bad-list-ref", []byte("rules:\n  - rule: x\n    class: privesc\n    severity: low\n    when: {path: $nope}\n")),
		fuzzseed.S("not-a-map", []byte("- a\n- b\n")),
	}
}

// fuzzEvents are a few events every compiled rule set sees.
func fuzzEvents(t *testing.T) []*event.Event {
	return []*event.Event{
		ev(t, 1, "execve", func(e *event.Event) { e.Path = "/bin/sh"; e.Argv = []string{"sh", "-c", "id"}; e.Comm = "sh" }),
		ev(t, 2, "connect", func(e *event.Event) { e.Addr = event.Addr{Family: event.AFUnix, Path: "/run/x"} }),
		ev(t, 3, "openat", func(e *event.Event) { e.Path = "/etc/shadow"; e.Ret = -13 }),
		ev(t, 4, "exit_group", nil),
	}
}

// FuzzRules: any rule file compiles or is refused with an error; a rule
// set that compiles observes events and samples, and its verdicts name its
// own rules.
func FuzzRules(f *testing.F) {
	f.Fuzz(func(t *testing.T, text []byte) {
		e, err := New(Config{NoDefaultRules: true, RuleTexts: [][]byte{text}, Shards: 1})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		names := map[string]bool{}
		for _, r := range e.Rules() {
			names[r] = true
		}
		check := func(vs []Verdict) {
			for _, v := range vs {
				if !names[v.Rule] {
					t.Fatalf("verdict of rule %q, not among the rules %v", v.Rule, e.Rules())
				}
			}
		}
		for _, x := range fuzzEvents(t) {
			check(e.Observe(x))
		}
		for i := 0; i < 3; i++ {
			check(e.Sample(Sample{CgroupID: 7, Time: t0.Add(time.Duration(i) * time.Second), CPUUsageNs: uint64(i) * 900_000_000, Threads: 1}))
		}
		e.Gap(7, 3)
		e.Forget(7)
	})
}

// modelSeeds are the JSON payloads of small trained models (Save
// compresses them; the fuzz target compresses its input the same way).
func modelSeeds(t *testing.T) []fuzzseed.Seed {
	r := rand.New(rand.NewPCG(1, 2))
	var tr [][]string
	for i := 0; i < 12; i++ {
		tr = append(tr, normalTrace(r)[:40])
	}
	seq, err := Train(seqUnitsOf(tr), TrainOptions{Name: "seq", UnitKind: "seq"})
	if err != nil {
		t.Fatal(err)
	}
	counts, err := Train([]Unit{{Counts: map[string]float64{"read": 10, "write": 3}}, {Counts: map[string]float64{"read": 8, "openat": 1}}},
		TrainOptions{Name: "counts", UnitKind: "counts"})
	if err != nil {
		t.Fatal(err)
	}
	var seeds []fuzzseed.Seed
	for _, m := range []*Model{seq, counts} {
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, fuzzseed.S("model-"+m.Name, data))
	}
	return append(seeds, fuzzseed.S("wrong-version", []byte(`{"version":0}`)),
		fuzzseed.S("sizes", []byte(`{"version":1,"vocab":["read"],"unigram":[],"idf":[1]}`)))
}

// FuzzReadModel: any model file is read or refused with an error, never a
// panic; a model read scores units and survives Save and ReadModel.
func FuzzReadModel(f *testing.F) {
	f.Fuzz(func(t *testing.T, payload []byte) {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write(payload)
		zw.Close()
		if _, err := ReadModel(bytes.NewReader(payload)); err == nil && !bytes.HasPrefix(payload, []byte{0x1f, 0x8b}) {
			t.Fatal("read a model from bytes that are not gzip")
		}
		m, err := ReadModel(&zb)
		if err != nil {
			return
		}
		units := []Unit{
			{Seqs: [][]string{{"read", "write", "openat", "close", "read", "write", "mmap", "exit_group", "read"}}},
			{Seqs: [][]string{{}}, Prefix: [][]string{{"read"}}},
			{Counts: map[string]float64{"read": 3, "unknown_call": 1}},
			{},
		}
		for i := range units {
			s := m.Score(&units[i])
			_ = s
		}
		var out bytes.Buffer
		if err := m.Save(&out); err != nil {
			t.Fatalf("save: %v", err)
		}
		back, err := ReadModel(&out)
		if err != nil {
			t.Fatalf("a model read does not read back after Save: %v", err)
		}
		if back.Summary() != m.Summary() {
			t.Fatalf("summary differs after Save:\n%s\n%s", back.Summary(), m.Summary())
		}
	})
}

func unitSeeds(t *testing.T) []fuzzseed.Seed {
	zr, err := gzip.NewReader(mustOpen(t, filepath.Join("testdata", "scenarios", "bash-dev-tcp.jsonl.gz")))
	if err != nil {
		t.Fatal(err)
	}
	var events []byte
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for i := 0; i < 12 && sc.Scan(); i++ {
		events = append(append(events, sc.Bytes()...), '\n')
	}
	return []fuzzseed.Seed{
		fuzzseed.S("events", events, uint8(0)),
		fuzzseed.S("events-lost", []byte(`{"seq":5,"cgroup":1,"syscall":"read","nr":0,"lost":3}`+"\n"+`{"verdict":{}}`+"\n"), uint8(1)),
		fuzzseed.S("seq-numbers", []byte("0 1 2 3 59 231\n"), uint8(0)),
		fuzzseed.S("seq-names", []byte("read,write,openat\nclose\n"), uint8(2)),
		fuzzseed.S("seq-negative", []byte("1 -5 2"), uint8(2)),
		fuzzseed.S("counts", []byte("time,read,write,openat\n0,10,2,\n1,3,0,1\n\n2, 4 ,1,1\n"), uint8(0)),
		fuzzseed.S("counts-short", []byte("time,read\n0,1,2\n"), uint8(3)),
		fuzzseed.S("counts-header-only", []byte("t\n"), uint8(3)),
		fuzzseed.S("counts-inf", []byte("t,read,write\n0,Inf,NaN\n"), uint8(3)),
	}
}

func mustOpen(t *testing.T, path string) *os.File {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// FuzzReadUnits: any input file in any format gives units or an error
// naming the file; units are well formed: counts finite and positive, a
// trace keeps every token.
func FuzzReadUnits(f *testing.F) {
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, format uint8) {
		path := filepath.Join(dir, "input")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fmtName := Formats[int(format)%len(Formats)]
		units, got, err := ReadUnits(path, ReadOptions{Format: fmtName, Window: 4})
		if err != nil {
			if !strings.Contains(err.Error(), path) && !strings.Contains(err.Error(), "event") {
				t.Fatalf("error %q does not name the input", err)
			}
			return
		}
		if fmtName != FormatAuto && got != fmtName {
			t.Fatalf("format %q read as %q", fmtName, got)
		}
		for i, u := range units {
			if u.Index != i {
				t.Fatalf("unit %d has index %d", i, u.Index)
			}
			for n, c := range u.Counts {
				if !(c > 0) || math.IsInf(c, 0) {
					t.Fatalf("unit %d: count of %q is %v", i, n, c)
				}
			}
			if u.Len() < 0 {
				t.Fatalf("unit %d: length %d", i, u.Len())
			}
		}
		if got == FormatSeq {
			if len(units) != 1 || len(units[0].Seqs) != 1 {
				t.Fatalf("a trace gave %d units", len(units))
			}
			tokens := strings.FieldsFunc(string(data), func(r rune) bool { return strings.ContainsRune(", \t\n\r", r) })
			if len(units[0].Seqs[0]) != len(tokens) {
				t.Fatalf("trace of %d tokens gave %d syscalls", len(tokens), len(units[0].Seqs[0]))
			}
		}
	})
}

func TestFuzzSeeds(t *testing.T) {
	fuzzseed.Update(t, "FuzzRules", ruleSeeds())
	fuzzseed.Update(t, "FuzzReadModel", modelSeeds(t))
	fuzzseed.Update(t, "FuzzReadUnits", unitSeeds(t))
}
