package scenarios

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// TestReadTraces cuts a tiny event file into per-process and per-thread
// traces: verdict and summary lines and lost-event records are skipped,
// traces come in the order of their first event.
func TestReadTraces(t *testing.T) {
	ev := func(pid, tid int, sc string) string {
		return `{"seq":1,"time":"2026-12-01T19:35:55.361677598Z","cgroup":7,"pid":` + strconv.Itoa(pid) + `,"tid":` + strconv.Itoa(tid) + `,"comm":"x","syscall":"` + sc + `","args":[0,0,0,0,0,0],"ret":0}`
	}
	lines := []string{
		ev(10, 10, "execve"),
		ev(10, 10, "brk"),
		ev(10, 11, "futex"), // a second thread of process 10
		`{"verdict":{"id":"a","pid":10,"tid":10,"syscall":"capset"}}`,
		ev(20, 20, "read"),
		ev(10, 10, "mmap"),
		`{"seq":9,"pid":10,"tid":11,"syscall":"write","nr":1,"flags":"lost","count":3}`,
		ev(10, 11, "exit"),
		ev(20, 20, "exit_group"),
		`{"summary":{"seen":9}}`,
	}
	data := strings.Join(lines, "\n") + "\n"
	for _, tc := range []struct {
		by   string
		want [][]string
	}{
		{TraceByPID, [][]string{{"execve", "brk", "futex", "mmap", "exit"}, {"read", "exit_group"}}},
		{TraceByTID, [][]string{{"execve", "brk", "mmap"}, {"futex", "exit"}, {"read", "exit_group"}}},
	} {
		t.Run(tc.by, func(t *testing.T) {
			us, err := readTraces(strings.NewReader(data), "f", tc.by)
			if err != nil {
				t.Fatal(err)
			}
			var got [][]string
			for i, u := range us {
				if u.Index != i || u.Source != "f" || len(u.Seqs) != 1 {
					t.Errorf("trace %d: index %d, source %q, %d sequences; want %d, f, 1", i, u.Index, u.Source, len(u.Seqs), i)
				}
				got = append(got, u.Seqs...)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("traces %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := readTraces(strings.NewReader(data), "f", "cgroup"); err == nil {
		t.Error("by cgroup: no error")
	}
}

// TestTraceThreshold checks the threshold at a share of false positives.
func TestTraceThreshold(t *testing.T) {
	normal := make([]float64, 100)
	for i := range normal {
		normal[i] = float64(i)
	}
	if got := TraceThreshold(normal, 0.05); got != 94 || above(normal, got) != 0.05 {
		t.Errorf("threshold %v (%v above), want 94 (0.05)", got, above(normal, got))
	}
	if got := TraceThreshold([]float64{0, 0, 0, 1}, 0.05); got != 1 {
		t.Errorf("threshold %v, want 1", got)
	}
}

// TestTraceProtocol runs the per-process trace protocol on kept scenario
// recordings: VIGIL_SEQ_KEEP names directories of NAME-RUN.jsonl.gz files
// (make eval with Keep), separated by ':' (VIGIL_SEQ_BY=tid: one trace
// per thread; VIGIL_SEQ_METHODS=a,b: only these methods). It fails when
// the model's trace or run AUC falls below a STIDE variant's.
func TestTraceProtocol(t *testing.T) {
	env := os.Getenv("VIGIL_SEQ_KEEP")
	if env == "" {
		t.Skip("VIGIL_SEQ_KEEP is not set: it names directories of kept scenario runs (NAME-RUN.jsonl.gz) to cut into per-process traces")
	}
	by := os.Getenv("VIGIL_SEQ_BY")
	if by == "" {
		by = TraceByPID
	}
	for _, dir := range filepath.SplitList(env) {
		runs, err := LoadTraceRuns(dir, by)
		if err != nil {
			t.Fatal(err)
		}
		var evals []TraceMethodEval
		only := map[string]bool{}
		for _, n := range strings.Split(os.Getenv("VIGIL_SEQ_METHODS"), ",") {
			if n != "" {
				only[n] = true
			}
		}
		for _, m := range TraceMethods() {
			if len(only) > 0 && !only[m.Name] {
				continue
			}
			protocol := TraceLOO
			if os.Getenv("VIGIL_SEQ_PROTOCOL") == "seen" {
				protocol = TraceSeen
			}
			e, err := protocol(runs, m)
			if err != nil {
				t.Fatal(err)
			}
			evals = append(evals, e)
		}
		t.Logf("%s (one trace per %s):\n%s", dir, by, TraceTable(evals))
		var model *TraceMethodEval
		for i := range evals {
			if evals[i].Method == "model" {
				model = &evals[i]
			}
		}
		for _, b := range evals {
			if model == nil || !strings.HasPrefix(b.Method, "stide") {
				continue
			}
			if model.TraceAUC < b.TraceAUC || model.RunAUC < b.RunAUC {
				t.Errorf("%s: model trace AUC %.3f, run AUC %.3f; %s %.3f, %.3f: want at least STIDE's", dir, model.TraceAUC, model.RunAUC, b.Method, b.TraceAUC, b.RunAUC)
			}
		}
	}
}
