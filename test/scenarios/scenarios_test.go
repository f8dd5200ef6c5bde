package scenarios

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestEval runs every attack and benign scenario under vigil trace (as
// root) and asserts the targets: at least 95% of attacks detected with
// their class, no verdict on any benign run, and the learned model alone
// at least as good as the z-score and STIDE baselines when one benign
// workload is left out at a time.
func TestEval(t *testing.T) {
	privtest.Require(t)
	if testing.Short() {
		t.Skip("the evaluation runs every scenario (about a minute)")
	}
	for _, tool := range []string{"cc", "bash", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the scenarios need %s: %v (make deps installs it)", tool, err)
		}
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
	rep, err := Evaluate(Options{Vigil: vigil, Src: src, Work: work, Runs: 2, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("evaluation took %s\n%s", time.Since(start).Round(time.Second), rep.Table())
	if out := os.Getenv("VIGIL_EVAL_REPORT"); out != "" {
		if err := rep.WriteJSON(out); err != nil {
			t.Error(err)
		}
	}
	if rep.Attacks < 12 || rep.BenignWorkloads < 12 {
		t.Errorf("%d attacks and %d benign workloads, want at least 12 of each", rep.Attacks, rep.BenignWorkloads)
	}
	if rep.DetectionRate < 0.95 {
		t.Errorf("detection rate %.3f, want >= 0.95", rep.DetectionRate)
	}
	if rep.FalsePositives != 0 {
		for _, r := range rep.Runs {
			if !r.Attack && r.FalsePos > 0 {
				t.Errorf("benign %s run %d: %d verdicts (%v)", r.Scenario, r.Run, r.FalsePos, r.Rules)
			}
		}
	}
	// The learned model, leaving one benign workload out, with thresholds
	// from normal data only: at least as good as each baseline.
	ms := rep.Model.Methods
	if len(ms) < 3 || ms[0].Method != "model" {
		t.Fatalf("model evaluation: %+v, want the model then the baselines", ms)
	}
	for _, b := range ms[1:] {
		if ms[0].RunDetect < b.RunDetect || ms[0].WindowAUC < b.WindowAUC {
			t.Errorf("model: attack runs detected %.3f, window AUC %.3f; %s does better (%.3f, %.3f)", ms[0].RunDetect, ms[0].WindowAUC, b.Method, b.RunDetect, b.WindowAUC)
		}
	}
}
