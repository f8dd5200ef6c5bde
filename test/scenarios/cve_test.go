package scenarios

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"vigil.dev/vigil/detector"
)

// Measured on the development data (deterministic: the data is fixed):
// the baselines' figures, and the model's, which must hold exactly or
// improve.
const (
	zscoreCaught      = 25
	zscoreFalseAlarms = 17
	stideCaught       = 14
	stideFalseAlarms  = 425
	modelCaught       = 26
	modelFalseAlarms  = 6
)

// TestCVEProtocol runs the CVE protocol on the development data set
// (../shared/datasets/sok-dev beside the repository, or $VIGIL_SOK_DEV)
// for the model and both baselines (z-score, STIDE), and fails when the
// model catches fewer runs or raises more false alarms than either
// baseline, or than its own measured figures. It skips only when the data set directory does
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
	evals, err := CVEEval(d, []Method{ModelMethod("model", "", defaultModelOptions()), ZScoreBaseline(), STIDEBaseline()}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", CVETable(evals, d.CVEs))
	m, z, st := evals[0], evals[1], evals[2]
	if z.Caught != zscoreCaught || z.FalseAlarms != zscoreFalseAlarms {
		t.Errorf("z-score baseline: %d runs caught, %d false alarms; measured %d and %d (the harness changed?)", z.Caught, z.FalseAlarms, zscoreCaught, zscoreFalseAlarms)
	}
	if st.Caught != stideCaught || st.FalseAlarms != stideFalseAlarms {
		t.Errorf("STIDE baseline: %d runs caught, %d false alarms; measured %d and %d (the harness changed?)", st.Caught, st.FalseAlarms, stideCaught, stideFalseAlarms)
	}
	for _, b := range []CVEMethodEval{z, st} {
		if m.Caught <= b.Caught || m.FARate >= b.FARate {
			t.Errorf("model: %d/%d runs caught at %.3f%% false alarms; the %s baseline %d at %.3f%%: want more runs at fewer false alarms", m.Caught, m.Runs, 100*m.FARate, b.Method, b.Caught, 100*b.FARate)
		}
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
