package scenarios

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/internal/privtest"
)

func TestAUCAndDetectionAtFPR(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pos, neg []float64
		auc, det float64
	}{
		{"separated", []float64{5, 6, 7}, []float64{1, 2, 3}, 1, 1},
		{"reversed", []float64{1, 2}, []float64{5, 6}, 0, 0},
		{"ties", []float64{1, 1}, []float64{1, 1}, 0.5, 0},
		{"one overlap", []float64{2.5, 9}, []float64{1, 2, 3}, 5.0 / 6, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := AUC(tc.pos, tc.neg); got != tc.auc {
				t.Errorf("AUC = %v, want %v", got, tc.auc)
			}
			if got := DetectionAtFPR(tc.pos, tc.neg, 0.05); got != tc.det {
				t.Errorf("DetectionAtFPR = %v, want %v", got, tc.det)
			}
		})
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestEval runs every attack scenario and the benign workloads marked CI
// (make eval runs the whole corpus) under vigil trace (as root) and
// asserts the targets: at least 95% of attacks detected with their class,
// every class detected, no verdict on any benign run, and the learned
// model alone at least as good as the z-score and STIDE baselines when
// one benign workload is left out at a time.
func TestEval(t *testing.T) {
	privtest.Require(t)
	if testing.Short() {
		t.Skip("the evaluation runs every attack and the CI benign workloads (about two minutes)")
	}
	for _, tool := range []string{"cc", "bash", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the scenarios need %s: %v (make deps installs it)", tool, err)
		}
	}
	_, ci, err := Select(Options{CI: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, skipped := Available(ci); len(skipped) > 0 {
		t.Fatalf("the CI benign workloads need programs that are missing: %+v (make deps installs them)", skipped)
	}
	src, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	vigil := filepath.Join(work, "vigil")
	build := exec.Command("go", "build", "-o", vigil, "./cmd/vigil")
	build.Dir = filepath.Join(src, "..", "..")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build vigil: %v\n%s", err, b)
	}
	start := time.Now()
	rep, err := Evaluate(Options{Vigil: vigil, Src: src, Work: work, Runs: 2, Log: testLog{t}, CI: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("evaluation took %s\n%s", time.Since(start).Round(time.Second), rep.Table())
	if out := os.Getenv("VIGIL_EVAL_REPORT"); out != "" {
		if err := rep.WriteJSON(out); err != nil {
			t.Error(err)
		}
	}
	if rep.Attacks != len(Attacks) || rep.BenignWorkloads != len(ci) {
		t.Errorf("%d attacks and %d benign workloads, want %d and %d", rep.Attacks, rep.BenignWorkloads, len(Attacks), len(ci))
	}
	for _, c := range rep.Classes {
		if c.Attacks == 0 || c.Detected == 0 {
			t.Errorf("class %s: %d of %d attacks detected", c.Class, c.Detected, c.Attacks)
		}
	}
	if rep.DetectionRate < 0.95 {
		t.Errorf("detection rate %.3f, want >= 0.95", rep.DetectionRate)
	}
	if err := rep.BenignClean(); err != nil {
		t.Error(err)
	}
	// The learned model, leaving one benign workload out, with thresholds
	// from normal data only: at least as good as each baseline. Window AUC
	// ranks every window: the model must not rank worse. Attack runs
	// caught are decided, for the model and the z-score alike, mostly by
	// whether a run makes a syscall never seen in training, which differs
	// from one recording to the next: the runs are compared attack by
	// attack on the same recordings, and the model fails when the baseline
	// catches significantly more of them (one-sided Wilcoxon signed-rank
	// test on the folds each attack is caught in, p < 0.05),
	// or more than one attack run more in every fold on average.
	ms := rep.Model.Methods
	if len(ms) < 3 || ms[0].Method != "model" {
		t.Fatalf("model evaluation: %+v, want the model then the baselines", ms)
	}
	for _, b := range ms[1:] {
		if ms[0].WindowAUC < b.WindowAUC {
			t.Errorf("model: window AUC %.3f; %s does better (%.3f)", ms[0].WindowAUC, b.Method, b.WindowAUC)
		}
		worse, better, p := PairedRuns(ms[0], b)
		t.Logf("model vs %s: attack runs detected %.3f vs %.3f; attacks the model catches in fewer folds %d, in more %d (signed-rank p = %.3f)", b.Method, ms[0].RunDetect, b.RunDetect, worse, better, p)
		if p < 0.05 {
			t.Errorf("model: attack runs detected %.3f; %s does better (%.3f): it catches %d attacks in more folds, the model %d (signed-rank p = %.3f)", ms[0].RunDetect, b.Method, b.RunDetect, worse, better, p)
		}
		if one := 1 / float64(len(Attacks)); ms[0].RunDetect < b.RunDetect-one {
			t.Errorf("model: attack runs detected %.3f; %s catches more than one attack run more per fold (%.3f)", ms[0].RunDetect, b.Method, b.RunDetect)
		}
	}
}

func TestPairedRuns(t *testing.T) {
	// differences (base - model): b +1, c -1, d +6: ranks 1.5, 1.5, 3;
	// the baseline's side sums 4.5 of 6: 3 of 8 sign patterns reach it
	m := SeqMethodEval{RunFolds: map[string]int{"a": 20, "b": 0, "c": 5, "d": 3}}
	b := SeqMethodEval{RunFolds: map[string]int{"a": 20, "b": 1, "c": 4, "d": 9}}
	worse, better, p := PairedRuns(m, b)
	if worse != 2 || better != 1 || math.Abs(p-3.0/8) > 1e-12 {
		t.Errorf("PairedRuns = %d, %d, %v; want 2, 1, 3/8", worse, better, p)
	}
	// five attacks lost, none won: 1/32
	lost := SeqMethodEval{RunFolds: map[string]int{"a": 0, "b": 0, "c": 0, "d": 0, "e": 0}}
	all := SeqMethodEval{RunFolds: map[string]int{"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}}
	if w, bt, p := PairedRuns(lost, all); w != 5 || bt != 0 || math.Abs(p-1.0/32) > 1e-12 || p >= 0.05 {
		t.Errorf("PairedRuns(lost, all) = %d, %d, %v; want 5, 0, 1/32", w, bt, p)
	}
	if _, _, p := PairedRuns(all, lost); p != 1 {
		t.Errorf("nothing lost: p = %v, want 1", p)
	}
	// seven attacks lost by one fold each, one won in all 20: not a
	// difference; the same seven lost in every fold are
	small, big := SeqMethodEval{RunFolds: map[string]int{}}, SeqMethodEval{RunFolds: map[string]int{}}
	for i := range 7 {
		small.RunFolds[fmt.Sprint(i)], big.RunFolds[fmt.Sprint(i)] = 19, 20
	}
	small.RunFolds["won"], big.RunFolds["won"] = 20, 0
	if _, _, p := PairedRuns(small, big); p < 0.05 {
		t.Errorf("seven attacks a fold short, one caught in 20 more folds: p = %v, want no difference (>= 0.05)", p)
	}
	for i := range 7 {
		small.RunFolds[fmt.Sprint(i)] = 0
	}
	small.RunFolds["won"] = 1
	if _, _, p := PairedRuns(small, big); p >= 0.05 {
		t.Errorf("seven attacks lost in every fold: p = %v, want a difference (< 0.05)", p)
	}
	if p := signedRankP(nil); p != 1 {
		t.Errorf("no differences: p = %v, want 1", p)
	}
}

func TestClassEvals(t *testing.T) {
	runs := []Run{
		{Scenario: "a1", Attack: true, Class: "network", Detected: true, TTD: 10},
		{Scenario: "a2", Attack: true, Class: "network", Detected: true, TTD: 30},
		{Scenario: "a3", Attack: true, Class: "network"},
		{Scenario: "a4", Attack: true, Class: "privesc", Detected: true, TTD: 5},
		{Scenario: "b1", Verdicts: []detector.Verdict{{Class: detector.ClassCPU}, {Class: detector.ClassCPU}}},
		{Scenario: "b2", Verdicts: []detector.Verdict{{Class: detector.ClassCPU}, {Class: detector.ClassNetwork}}},
		{Scenario: "b3"},
	}
	got := map[string]ClassEval{}
	for _, c := range classEvals(runs) {
		got[c.Class] = c
	}
	want := map[string]ClassEval{
		"cpu-abuse": {Class: "cpu-abuse", FalseAlarms: 3, FalseAlarmRuns: 2},
		"network":   {Class: "network", Attacks: 3, Detected: 2, DetectionRate: 2.0 / 3, FalseAlarms: 1, FalseAlarmRuns: 1, MeanTTDms: 20, P99TTDms: 30},
		"fs-escape": {Class: "fs-escape"},
		"privesc":   {Class: "privesc", Attacks: 1, Detected: 1, DetectionRate: 1, MeanTTDms: 5, P99TTDms: 5},
	}
	if len(got) != len(want) {
		t.Fatalf("classes %v", got)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %+v, want %+v", k, got[k], w)
		}
	}
}

func TestSelect(t *testing.T) {
	a, b, err := Select(Options{CI: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(Attacks) || len(b) == 0 || len(b) >= len(Benign) {
		t.Errorf("CI: %d attacks, %d of %d benign", len(a), len(b), len(Benign))
	}
	if len(Benign) < 40 {
		t.Errorf("the benign corpus has %d workloads, want at least 40", len(Benign))
	}
	a, b, err = Select(Options{Only: []string{"cpu-miner", "go-build"}})
	if err != nil || len(a) != 1 || len(b) != 1 || a[0].Name != "cpu-miner" || b[0].Name != "go-build" {
		t.Errorf("only: %v %v %v", a, b, err)
	}
	if _, _, err := Select(Options{Only: []string{"no-such"}}); err == nil || !strings.Contains(err.Error(), "no-such") || !strings.Contains(err.Error(), "go-build") {
		t.Errorf("unknown name: %v", err)
	}
	// every corpus workload has its script
	for _, s := range Benign {
		for _, a := range s.Cmd {
			if p, ok := strings.CutPrefix(a, "{src}/"); ok {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("%s: %v", s.Name, err)
				}
			}
		}
	}
}

// TestLongScenariosHaveRoom: the workloads that run 40 s on purpose get
// more than the default 60 s (the Python miner took 57 s at load 20).
func TestLongScenariosHaveRoom(t *testing.T) {
	for _, s := range append(append([]Scenario{}, Attacks...), Benign...) {
		if strings.Contains(s.Desc, "40 s") && s.Timeout <= time.Minute {
			t.Errorf("%s runs 40 s with a timeout of %s", s.Name, s.Timeout)
		}
	}
}
