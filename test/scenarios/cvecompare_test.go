package scenarios

import (
	"testing"

	"vigil.dev/vigil/detector"
)

// ratioWindows are count windows at volumes 10..10+n-1 with twice as
// many reads as writes.
func ratioWindows(n int) []detector.Unit {
	var out []detector.Unit
	for i := 0; i < n; i++ {
		v := float64(10 + i)
		out = append(out, detector.Unit{Index: i, Counts: map[string]float64{"read": 2 * v, "write": v}})
	}
	return out
}

func TestPairMethod(t *testing.T) {
	score, err := PairMethod(20).Fit([][]detector.Unit{ratioWindows(50)})
	if err != nil {
		t.Fatal(err)
	}
	s := score([]detector.Unit{
		{Counts: map[string]float64{"read": 400, "write": 200}}, // the usual split, ten times the volume
		{Counts: map[string]float64{"read": 200, "write": 400}}, // the split reversed
		{Counts: map[string]float64{"read": 4, "write": 8}},     // reversed, too few calls to judge
		{Counts: map[string]float64{"read": 20, "write": 10, "ptrace": 1}},
	})
	if s[0] > 1 {
		t.Errorf("the usual split at a new volume scores %.2f, want at most 1", s[0])
	}
	if s[1] < 10 {
		t.Errorf("the split reversed scores %.2f, want at least 10", s[1])
	}
	if s[2] != 0 {
		t.Errorf("a pair of 12 calls scores %.2f, want 0 (fewer than 20)", s[2])
	}
	if s[3] < 1e6 {
		t.Errorf("a new syscall scores %.2f, want at least 1e6", s[3])
	}
}

func TestKNNMethod(t *testing.T) {
	train := ratioWindows(50)
	score, err := KNNMethod(1, 0.1).Fit([][]detector.Unit{train})
	if err != nil {
		t.Fatal(err)
	}
	s := score([]detector.Unit{
		train[7],
		{Counts: map[string]float64{"read": 2000, "write": 1000}},
		{Counts: map[string]float64{"read": 20, "write": 10, "ptrace": 1}},
	})
	if s[0] != 0 {
		t.Errorf("a training window scores %.3f, want 0", s[0])
	}
	if s[1] < 5 {
		t.Errorf("a window 30 times the largest volume scores %.3f, want at least 5", s[1])
	}
	if s[2] < 1e6 {
		t.Errorf("a new syscall scores %.2f, want at least 1e6", s[2])
	}
	if _, err := KNNMethod(60, 0.1).Fit([][]detector.Unit{train}); err == nil {
		t.Error("k above the training windows: no error")
	}
}
