package detector

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vigil.dev/vigil/event"
)

// goldenModel is the model TestVerdictsGolden scores with: windows of two
// benign recordings, so that the attacks' windows stand out.
func goldenModel(t testing.TB) *Model {
	t.Helper()
	var units []Unit
	for _, name := range []string{"idle-service", "shell-pipeline", "compile"} {
		f, err := os.Open(filepath.Join("testdata", "scenarios", name+".jsonl.gz"))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		u, err := eventUnits(name, zr, 200)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		units = append(units, u...)
	}
	m, err := Train(units, TrainOptions{Name: "golden", WindowN: 200})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// goldenStream replays a recorded stream (scenario samples included)
// through e, then flushes the model's partial windows.
func goldenStream(t *testing.T, e *Engine, file string) []Verdict {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var samples []Sample
	if b, err := os.ReadFile(strings.TrimSuffix(file, ".jsonl.gz") + ".samples.json"); err == nil {
		if err := json.Unmarshal(b, &samples); err != nil {
			t.Fatal(err)
		}
	}
	var out []Verdict
	si := 0
	var cg uint64
	err = ReplayEvents(zr, file, func(ev *event.Event) error {
		cg = ev.CgroupID
		for ; si < len(samples) && !samples[si].Time.After(ev.Time); si++ {
			samples[si].CgroupID = cg
			out = append(out, e.Sample(samples[si])...)
		}
		out = append(out, e.Observe(ev)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for ; si < len(samples); si++ {
		samples[si].CgroupID = cg
		out = append(out, e.Sample(samples[si])...)
	}
	return append(out, e.Flush()...)
}

// TestVerdictsGolden replays every recorded stream (attacks and benign
// runs, and the benchmarks' tar-rm) through the default rules and a model,
// with and without FromFirstExec, and compares every verdict in full
// (rule, ids, pid, tid, comm, score, message, evidence) with
// testdata/verdicts.golden.gz: the engine's optimisations must not change
// what it decides or says.
func TestVerdictsGolden(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "scenarios", "*.jsonl.gz"))
	files = append(files, filepath.Join("testdata", "bench", "tar-rm.jsonl.gz"))
	m := goldenModel(t)
	var buf bytes.Buffer
	rules, anomalies := 0, 0
	for _, fromExec := range []bool{false, true} {
		for _, f := range files {
			e := newEngine(t, Config{Shards: 1, Model: m, FromFirstExec: fromExec,
				Lists: map[string][]string{"allowed_resolvers": {"10.255.255.53"}}})
			for _, v := range goldenStream(t, e, f) {
				v.Container = nil
				b, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&buf, "%s fromexec=%v %s\n", filepath.Base(f), fromExec, b)
				if v.Class == ClassAnomaly {
					anomalies++
				} else {
					rules++
				}
			}
		}
	}
	if rules == 0 || anomalies == 0 {
		t.Fatalf("%d rule and %d model verdicts: the golden replay must exercise both", rules, anomalies)
	}
	gpath := filepath.Join("testdata", "verdicts.golden.gz")
	if *update {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(buf.Bytes())
		zw.Close()
		if err := os.WriteFile(gpath, z.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(gpath)
	if err != nil {
		t.Fatalf("golden file: %v (run go test -run TestVerdictsGolden -update)", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if _, err := want.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	got, wl := strings.Split(buf.String(), "\n"), strings.Split(want.String(), "\n")
	for i := 0; i < max(len(got), len(wl)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("verdict %d differs from %s (%d verdicts, want %d; if intended, rerun with -update):\ngot  %s\nwant %s",
				i, gpath, len(got)-1, len(wl)-1, g, w)
		}
	}
	t.Logf("%d rule verdicts and %d model verdicts as in %s", rules, anomalies, gpath)
}
