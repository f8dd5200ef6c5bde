package scenarios

// The per-process trace protocol: the classic sequence benchmarks' setting
// (one trace of syscalls per process, train on normal traces only, the
// threshold at 5% false positives of normal data) built from kept scenario
// recordings (Options.Keep: NAME-RUN.jsonl.gz).

import (
	"compress/gzip"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// What one trace follows.
const (
	TraceByPID = "pid" // a process: its threads interleaved, across execve
	TraceByTID = "tid" // a thread
)

// TraceFPR is the share of normal traces above the threshold of the trace
// protocol: the threshold is this quantile (from the top) of the scores of
// held-out normal traces.
const TraceFPR = 0.05

// ReadTraces reads a vigil event file (gzip-compressed when its name ends
// in .gz) into per-process traces: one unit per pid (or tid, by), holding
// its syscall names in order, the units in the order of their first event.
// Records standing for lost events are skipped.
func ReadTraces(path, by string) ([]detector.Unit, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("traces: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("traces: %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	return readTraces(r, path, by)
}

func readTraces(r io.Reader, source, by string) ([]detector.Unit, error) {
	if by != TraceByPID && by != TraceByTID {
		return nil, fmt.Errorf("traces: by %q: use %s or %s", by, TraceByPID, TraceByTID)
	}
	idx := map[uint32]int{}
	var units []detector.Unit
	err := detector.ReplayEvents(r, source, func(ev *event.Event) error {
		if ev.Flags&event.Lost != 0 {
			return nil
		}
		k := ev.PID
		if by == TraceByTID {
			k = ev.TID
		}
		i, ok := idx[k]
		if !ok {
			i = len(units)
			idx[k] = i
			units = append(units, detector.Unit{Source: source, Index: i, Seqs: [][]string{nil}})
		}
		units[i].Seqs[0] = append(units[i].Seqs[0], ev.Name())
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("traces: %w", err)
	}
	return units, nil
}

// TraceRun is one kept run cut into traces.
type TraceRun struct {
	Scenario string
	Attack   bool
	Run      int
	Traces   []detector.Unit
}

// LoadTraceRuns reads the kept runs of dir (NAME-RUN.jsonl.gz, NAME an
// attack or benign scenario; other files are ignored), sorted by name and
// run.
func LoadTraceRuns(dir, by string) ([]TraceRun, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl.gz"))
	if err != nil {
		return nil, err
	}
	attack := map[string]bool{}
	for _, s := range Attacks {
		attack[s.Name] = true
	}
	benign := map[string]bool{}
	for _, s := range Benign {
		benign[s.Name] = true
	}
	var runs []TraceRun
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".jsonl.gz")
		i := strings.LastIndexByte(base, '-')
		if i < 0 {
			continue
		}
		name := base[:i]
		n, err := strconv.Atoi(base[i+1:])
		if err != nil || (!attack[name] && !benign[name]) {
			continue
		}
		tr, err := ReadTraces(f, by)
		if err != nil {
			return nil, err
		}
		runs = append(runs, TraceRun{Scenario: name, Attack: attack[name], Run: n, Traces: tr})
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("traces: no kept scenario runs (NAME-RUN.jsonl.gz) in %s", dir)
	}
	sort.Slice(runs, func(i, j int) bool {
		if runs[i].Scenario != runs[j].Scenario {
			return runs[i].Scenario < runs[j].Scenario
		}
		return runs[i].Run < runs[j].Run
	})
	return runs, nil
}

// TraceMethodEval is one method under the trace protocol, leaving one
// benign workload out at a time: train on the first runs of the other
// workloads, threshold at TraceFPR of their second runs' traces, test on
// every attack run and the left-out workload's runs. AUCs and detection
// rates are means over the folds; false-positive rates are totals over
// the left-out workloads.
type TraceMethodEval struct {
	Method string `json:"method"`
	Desc   string `json:"desc"`
	// trace level: every trace of an attack run against every trace of
	// the left-out workload (some processes of an attack run are benign:
	// a shell that starts the attack)
	TraceAUC    float64 `json:"trace_auc"`
	TraceDetect float64 `json:"trace_detection"` // attack traces above the threshold
	TraceFPR    float64 `json:"trace_fpr"`       // left-out workload's traces above it
	// run level: an attack run scores its highest-scoring trace, against
	// the left-out workload's traces
	RunAUC    float64 `json:"run_auc"`
	RunDetect float64 `json:"run_detection"` // attack runs with a trace above the threshold
	// RunDetect5 is the run detection at 5% false positives of the
	// left-out workload's traces (a threshold from test negatives, as the
	// benchmarks report it; for comparison only).
	RunDetect5  float64 `json:"run_detection_at_test_5pct"`
	BenignRunFA float64 `json:"benign_run_false_alarm_rate"` // left-out runs with a trace above the threshold
	// CalibFPR is the share of the calibration traces above the
	// threshold (at most TraceFPR; less when scores tie).
	CalibFPR     float64 `json:"calibration_fpr"`
	AttackTraces int     `json:"attack_traces"`
	AttackRuns   int     `json:"attack_runs"`
	BenignTraces int     `json:"benign_traces"`
	// RunFolds is, per attack scenario, the folds in which a trace of it
	// rose above the fold's threshold.
	RunFolds map[string]int `json:"attack_run_folds"`
}

// TraceThreshold is the threshold at fpr false positives of the normal
// scores: the smallest score that at most fpr of them exceed.
func TraceThreshold(normal []float64, fpr float64) float64 {
	if len(normal) == 0 {
		return math.Inf(1)
	}
	s := append([]float64(nil), normal...)
	sort.Sort(sort.Reverse(sort.Float64Slice(s)))
	return s[int(fpr*float64(len(s)))]
}

// TraceLOO runs a method through the trace protocol.
func TraceLOO(runs []TraceRun, m Method) (TraceMethodEval, error) {
	e := TraceMethodEval{Method: m.Name, Desc: m.Desc, RunFolds: map[string]int{}}
	var workloads []string
	seen := map[string]bool{}
	for _, r := range runs {
		if !r.Attack && !seen[r.Scenario] {
			seen[r.Scenario] = true
			workloads = append(workloads, r.Scenario)
		}
	}
	var nCalib, nCalibFP, nNeg, nNegFP, nBRun, nBRunFA int
	for _, w := range workloads {
		var train, calib [][]detector.Unit
		for _, r := range runs {
			if r.Attack || r.Scenario == w {
				continue
			}
			if r.Run == 1 {
				train = append(train, r.Traces)
			} else {
				calib = append(calib, r.Traces)
			}
		}
		score, err := m.Fit(train)
		if err != nil {
			return e, fmt.Errorf("%s without %s: %w", m.Name, w, err)
		}
		var cs []float64
		for _, f := range calib {
			cs = append(cs, score(f)...)
		}
		thr := TraceThreshold(cs, TraceFPR)
		for _, s := range cs {
			nCalib++
			if s > thr {
				nCalibFP++
			}
		}
		var pos, neg, runMax []float64
		for _, r := range runs {
			if !r.Attack && r.Scenario != w {
				continue
			}
			sc := score(r.Traces)
			best := math.Inf(-1)
			for _, s := range sc {
				best = max(best, s)
			}
			if r.Attack {
				pos = append(pos, sc...)
				runMax = append(runMax, best)
				folds := e.RunFolds[r.Scenario]
				if best > thr {
					folds++
				}
				e.RunFolds[r.Scenario] = folds
				continue
			}
			neg = append(neg, sc...)
			nBRun++
			if best > thr {
				nBRunFA++
			}
		}
		nNeg += len(neg)
		for _, s := range neg {
			if s > thr {
				nNegFP++
			}
		}
		e.TraceAUC += AUC(pos, neg)
		e.RunAUC += AUC(runMax, neg)
		e.TraceDetect += above(pos, thr)
		e.RunDetect += above(runMax, thr)
		e.RunDetect5 += DetectionAtFPR(runMax, neg, TraceFPR)
		e.AttackTraces, e.AttackRuns = len(pos), len(runMax)
	}
	n := float64(len(workloads))
	e.TraceAUC /= n
	e.RunAUC /= n
	e.TraceDetect /= n
	e.RunDetect /= n
	e.RunDetect5 /= n
	e.BenignTraces = nNeg
	e.TraceFPR = ratio(nNegFP, nNeg)
	e.CalibFPR = ratio(nCalibFP, nCalib)
	e.BenignRunFA = ratio(nBRunFA, nBRun)
	return e, nil
}

// TraceSeen runs a method through the trace protocol's seen-workload
// variant, the setting of the classic benchmarks (one system's normal
// behaviour, attacks on the same system): train on the first runs of every
// benign workload; negatives are the traces of their second runs,
// positives the traces of the attack runs. One fold. The detection rates
// are at TraceFPR of the negatives (a threshold from the test negatives,
// as the benchmarks report it, so CalibFPR is TraceFPR); RunFolds counts
// each attack's runs caught, BenignRunFA the second runs with a trace
// above the threshold.
func TraceSeen(runs []TraceRun, m Method) (TraceMethodEval, error) {
	e := TraceMethodEval{Method: m.Name, Desc: m.Desc, RunFolds: map[string]int{}}
	var train [][]detector.Unit
	for _, r := range runs {
		if !r.Attack && r.Run == 1 {
			train = append(train, r.Traces)
		}
	}
	score, err := m.Fit(train)
	if err != nil {
		return e, fmt.Errorf("%s: %w", m.Name, err)
	}
	var pos, neg, runMax, benignMax []float64
	var runOf []string
	for _, r := range runs {
		if !r.Attack && r.Run == 1 {
			continue
		}
		sc := score(r.Traces)
		best := math.Inf(-1)
		for _, s := range sc {
			best = max(best, s)
		}
		if !r.Attack {
			neg = append(neg, sc...)
			benignMax = append(benignMax, best)
			continue
		}
		pos = append(pos, sc...)
		runMax = append(runMax, best)
		runOf = append(runOf, r.Scenario)
	}
	thr := TraceThreshold(neg, TraceFPR)
	e.BenignRunFA = above(benignMax, thr)
	for i, best := range runMax {
		n := e.RunFolds[runOf[i]] // every attack listed, caught or not
		if best > thr {
			n++
		}
		e.RunFolds[runOf[i]] = n
	}
	e.TraceAUC, e.RunAUC = AUC(pos, neg), AUC(runMax, neg)
	e.TraceDetect, e.RunDetect = above(pos, thr), above(runMax, thr)
	e.RunDetect5 = DetectionAtFPR(runMax, neg, TraceFPR)
	e.TraceFPR = above(neg, thr)
	e.CalibFPR = e.TraceFPR // the threshold comes from the negatives themselves
	e.AttackTraces, e.AttackRuns, e.BenignTraces = len(pos), len(runMax), len(neg)
	return e, nil
}

func above(xs []float64, thr float64) float64 {
	n := 0
	for _, x := range xs {
		if x > thr {
			n++
		}
	}
	return ratio(n, len(xs))
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// TraceModelMethod is vigil's model trained on traces (UnitKind "trace"),
// each trace scored on its own.
func TraceModelMethod(name, desc string, opt detector.TrainOptions) Method {
	return modelMethod(name, desc, opt, "trace", false)
}

// TraceSTIDE is STIDE (n=6) on whole traces: training keeps every run of
// 6 consecutive syscalls of a trace (shorter at its start); a trace scores
// its count of unseen runs, or that count over its length (rate).
func TraceSTIDE(rate bool) Method {
	const n = 6
	each := func(u *detector.Unit, fn func(key string)) {
		for _, s := range u.Seqs {
			for i := range s {
				fn(strings.Join(s[max(i-n+1, 0):i+1], " "))
			}
		}
	}
	name, desc := "stide-count", "STIDE n=6, the trace's count of unseen 6-grams (no locality frame)"
	if rate {
		name, desc = "stide-rate", "STIDE n=6, the trace's share of unseen 6-grams (no locality frame)"
	}
	return Method{Name: name, Desc: desc,
		Fit: func(train [][]detector.Unit) (func([]detector.Unit) []float64, error) {
			seen := map[string]bool{}
			for _, f := range train {
				for i := range f {
					each(&f[i], func(k string) { seen[k] = true })
				}
			}
			return func(file []detector.Unit) []float64 {
				out := make([]float64, len(file))
				for i := range file {
					mis, all := 0, 0
					each(&file[i], func(k string) {
						all++
						if !seen[k] {
							mis++
						}
					})
					out[i] = float64(mis)
					if rate && all > 0 {
						out[i] /= float64(all)
					}
				}
				return out
			}, nil
		}}
}

// TraceMethods are the methods the trace protocol compares: the model as
// trained today on traces, STIDE (with and without its locality frame),
// and the model's components and combinations.
func TraceMethods() []Method {
	frame := SeqSTIDEBaseline()
	frame.Name = "stide-frame"
	return []Method{
		TraceModelMethod("model", "vigil detect train on traces (the defaults)", detector.TrainOptions{}),
		TraceModelMethod("model/before", "the event-window defaults on traces (every component, worst window and frame, divided by the 95th percentile, mean)", detector.TrainOptions{Components: detector.DefaultComponents}),
		frame, TraceSTIDE(false), TraceSTIDE(true),
		TraceModelMethod("ngram", "the n-gram model alone (max mean NLL over 20 syscalls)", detector.TrainOptions{Components: []string{"ngram"}}),
		TraceModelMethod("freq", "the tf-idf distance alone", detector.TrainOptions{Components: []string{"freq"}}),
		TraceModelMethod("count", "the count z-scores alone", detector.TrainOptions{Components: []string{"count"}}),
		TraceModelMethod("stide+ngram", "the model's STIDE and n-gram components, mean", detector.TrainOptions{Components: []string{"ngram", "stide"}}),
		TraceModelMethod("max", "every component, max", detector.TrainOptions{Max: true}),
		TraceModelMethod("stide+ngram/max", "STIDE and n-gram, max", detector.TrainOptions{Components: []string{"ngram", "stide"}, Max: true}),
		TraceModelMethod("whole", "every component, n-gram and STIDE length-normalized (mean NLL, mismatch rate)", detector.TrainOptions{Whole: true}),
		TraceModelMethod("rank", "every component, rank-normalized, mean", detector.TrainOptions{Rank: true}),
		TraceModelMethod("rank/max", "every component, rank-normalized, max", detector.TrainOptions{Rank: true, Max: true}),
		TraceModelMethod("whole/rank", "every component, length-normalized, rank-normalized, mean", detector.TrainOptions{Whole: true, Rank: true}),
		TraceModelMethod("ngram/whole", "the n-gram model alone, mean NLL of the trace", detector.TrainOptions{Components: []string{"ngram"}, Whole: true}),
		TraceModelMethod("stide+ngram/whole", "STIDE and n-gram length-normalized, mean", detector.TrainOptions{Components: []string{"ngram", "stide"}, Whole: true}),
		TraceModelMethod("freq+seq/whole", "tf-idf distance, STIDE and n-gram length-normalized, mean", detector.TrainOptions{Components: []string{"ngram", "stide", "freq"}, Whole: true}),
		TraceModelMethod("freq+seq/whole/rank", "tf-idf distance, STIDE and n-gram length-normalized, rank-normalized, mean", detector.TrainOptions{Components: []string{"ngram", "stide", "freq"}, Whole: true, Rank: true}),
		TraceModelMethod("freq+ngram/whole", "tf-idf distance and mean NLL, mean", detector.TrainOptions{Components: []string{"ngram", "freq"}, Whole: true}),
		TraceModelMethod("freq+ngram/whole/rank", "tf-idf distance and mean NLL, rank-normalized, mean", detector.TrainOptions{Components: []string{"ngram", "freq"}, Whole: true, Rank: true}),
		TraceModelMethod("freq+stide/whole", "tf-idf distance and STIDE mismatch rate, mean", detector.TrainOptions{Components: []string{"stide", "freq"}, Whole: true}),
	}
}

// TraceTable formats trace protocol results.
func TraceTable(evals []TraceMethodEval) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-22s %8s %8s %8s %8s %8s %8s %8s %8s\n", "method", "trAUC", "trDet", "trFPR", "runAUC", "runDet", "runDet5", "runFA", "calFPR")
	for _, e := range evals {
		fmt.Fprintf(&b, "%-22s %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f\n", e.Method, e.TraceAUC, e.TraceDetect, e.TraceFPR, e.RunAUC, e.RunDetect, e.RunDetect5, e.BenignRunFA, e.CalibFPR)
	}
	if len(evals) > 0 {
		fmt.Fprintf(&b, "(%d attack runs, %d attack traces, %d left-out benign traces over the folds)\n", evals[0].AttackRuns, evals[0].AttackTraces, evals[0].BenignTraces)
	}
	return b.String()
}
