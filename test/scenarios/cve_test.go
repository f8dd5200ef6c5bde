package scenarios

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"vigil.dev/vigil/detector"
)

// Measured on the development data (deterministic: the data is fixed):
// the z-score baseline's figures, and the model's, which must hold exactly
// or improve.
const (
	zscoreCaught      = 25
	zscoreFalseAlarms = 17
	modelCaught       = 25
	modelFalseAlarms  = 17
)

// TestCVEProtocol runs the CVE protocol on the development data set
// (../shared/datasets/sok-dev beside the repository, or $VIGIL_SOK_DEV)
// for the model and the z-score baseline, and fails when the model catches
// fewer runs or raises more false alarms than the baseline, or than its
// own measured figures. It skips only when the data set directory does
// not exist.
func TestCVEProtocol(t *testing.T) {
	dir := SokDevDir(".")
	if dir == "" {
		t.Skip("no CVE data set: ../shared/datasets/sok-dev beside the repository does not exist and VIGIL_SOK_DEV is not set")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("no CVE data set: %v", err)
	}
	d, err := LoadCVEData(dir, CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	evals, err := CVEEval(d, []Method{ModelMethod("model", "", defaultModelOptions()), ZScoreBaseline()}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", CVETable(evals, d.CVEs))
	m, z := evals[0], evals[1]
	if z.Caught != zscoreCaught || z.FalseAlarms != zscoreFalseAlarms {
		t.Errorf("z-score baseline: %d runs caught, %d false alarms; measured %d and %d (the harness changed?)", z.Caught, z.FalseAlarms, zscoreCaught, zscoreFalseAlarms)
	}
	if m.Caught < z.Caught || m.FARate > z.FARate {
		t.Errorf("model: %d/%d runs caught at %.3f%% false alarms; the z-score baseline %d at %.3f%%", m.Caught, m.Runs, 100*m.FARate, z.Caught, 100*z.FARate)
	}
	if m.Caught < modelCaught || m.FalseAlarms > modelFalseAlarms {
		t.Errorf("model: %d runs caught, %d false alarms; measured before: %d and %d", m.Caught, m.FalseAlarms, modelCaught, modelFalseAlarms)
	}
}

// TestReadCountCSV checks the harness's fast reader against the
// detector's.
func TestReadCountCSV(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.csv")
	data := "timestamp,read[node1]:1,write[node1]:2,open:3\n1000,0,3,0.5\n1100,2,0,0\n1200,0,0,0\n"
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readCountCSV(p)
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := detector.ReadUnits(p, detector.ReadOptions{Format: detector.FormatCounts})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d units, the detector reads %d", len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i].Counts, want[i].Counts) {
			t.Errorf("unit %d: %v, the detector reads %v", i, got[i].Counts, want[i].Counts)
		}
	}
}
