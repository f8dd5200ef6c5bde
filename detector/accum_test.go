package detector

import (
	"strings"
	"testing"
)

func TestAccumulatorPush(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  AccumOptions
		in   []float64
		want []float64
	}{
		{"none", AccumOptions{}, []float64{0, 3, 1, 2}, []float64{0, 3, 1, 2}},
		// S = max(0, S + min(x, 20) - 1); the score is max(x, S)
		{"cusum", AccumOptions{Kind: AccumCUSUM, Drift: 1, Cap: 20},
			[]float64{0, 2, 2, 2, 0, 0, 0, 50, 0},
			[]float64{0, 2, 2, 3, 2, 1, 0, 50, 18}},
		{"cusum without drift", AccumOptions{Kind: AccumCUSUM, Cap: 20},
			[]float64{-5, 1, 0, 1},
			[]float64{0, 1, 1, 2}},
		// the sum of the last 3, each capped at 20
		{"sum", AccumOptions{Kind: AccumSum, N: 3, Cap: 20},
			[]float64{1, 2, 3, 4, 0, 0, 0, 30, 0},
			[]float64{1, 3, 6, 9, 7, 4, 0, 30, 20}},
		{"sum of one", AccumOptions{Kind: AccumSum, N: 1, Cap: 20},
			[]float64{1, 2, 0},
			[]float64{1, 2, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a accumulator
			var got []float64
			for _, x := range tc.in {
				got = append(got, a.push(x, tc.opt))
			}
			for i := range tc.want {
				if got[i] != tc.want[i] {
					t.Fatalf("scores %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestAccumOptionsCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  AccumOptions
		want string // "" for valid
	}{
		{"zero", AccumOptions{}, ""},
		{"cusum", AccumOptions{Kind: AccumCUSUM, Drift: 2}, ""},
		{"sum", AccumOptions{Kind: AccumSum, N: 5, Cap: 3}, ""},
		{"unknown kind", AccumOptions{Kind: "ewma"}, `kind "ewma" unknown, use cusum or sum`},
		{"negative drift", AccumOptions{Kind: AccumCUSUM, Drift: -1}, "cusum drift -1"},
		{"no windows", AccumOptions{Kind: AccumSum}, "sum over 0 windows, want 1..100"},
		{"too many windows", AccumOptions{Kind: AccumSum, N: 101}, "sum over 101 windows"},
		{"negative cap", AccumOptions{Kind: AccumSum, N: 2, Cap: -1}, "cap -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opt.check()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func trainAccum(t *testing.T, units []Unit, a AccumOptions) *Model {
	t.Helper()
	m, err := Train(units, TrainOptions{UnitKind: "counts", Components: []string{"count"},
		Count: CountOptions{Features: FeatSyscall, Tier: true, Excess: 3}, Context: 1, Accum: a})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestScoreSeriesAccum(t *testing.T) {
	tr := stableWindows("a", 200, 10)
	base := trainAccum(t, tr, AccumOptions{})
	// a small shift of read: each window deviates, but less than the
	// threshold on its own
	shift := Unit{Counts: map[string]float64{"read": 160, "write": 50, "futex": 10}}
	w := base.Score(&shift).Score
	if !(w > 0 && w < base.Threshold) {
		t.Fatalf("the shifted window scores %.3f, want above 0 and below the threshold %.3f", w, base.Threshold)
	}
	series := func(m *Model, from, to int) []Scores {
		u := stableWindows("b", 20, 10)
		for i := from; i < to; i++ {
			u[i] = shift
		}
		return m.ScoreSeries(u)
	}
	for _, s := range series(base, 2, 10) {
		if s.Anomalous {
			t.Fatalf("no accumulation: a window of the shift is anomalous (%.3f > %.3f)", s.Score, base.Threshold)
		}
	}
	for _, tc := range []struct {
		name string
		opt  AccumOptions
		// the score of the k-th window of the shift (k from 1)
		want func(k int) float64
	}{
		{"cusum", AccumOptions{Kind: AccumCUSUM, Drift: w / 2}, func(k int) float64 { return max(w, float64(k)*w/2) }},
		{"sum", AccumOptions{Kind: AccumSum, N: 5}, func(k int) float64 { return float64(min(k, 5)) * w }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := trainAccum(t, tr, tc.opt)
			if m.Accum == nil || m.Accum.Kind != tc.opt.Kind || m.Accum.Cap != DefaultAccumCap {
				t.Fatalf("model accumulation %+v, want kind %s with the default cap", m.Accum, tc.opt.Kind)
			}
			ss := series(m, 2, 10)
			for i, s := range ss[:2] {
				if s.Score != 0 {
					t.Errorf("window %d before the shift scores %.3f, want 0", i, s.Score)
				}
			}
			for k := 1; k <= 8; k++ {
				if got, want := ss[1+k].Score, tc.want(k); abs(got-want) > 1e-9 {
					t.Errorf("window %d of the shift scores %.6f, want %.6f", k, got, want)
				}
				if ss[1+k].Parts != base.Score(&shift).Parts {
					t.Errorf("window %d of the shift: parts %v, want the window's own", k, ss[1+k].Parts)
				}
			}
			if !ss[9].Anomalous {
				t.Errorf("eight windows of the shift add up to %.3f, not above the threshold %.3f", ss[9].Score, m.Threshold)
			}
			// the evidence goes back to zero once the shift ends
			if last := ss[len(ss)-1]; last.Score != 0 {
				t.Errorf("ten windows after the shift the score is %.3f, want 0", last.Score)
			}
			// a window with a syscall never seen stands out alone, and
			// adds at most the cap
			u := stableWindows("c", 4, 10)
			u[1] = Unit{Counts: map[string]float64{"read": 100, "write": 50, "futex": 10, "ptrace": 3}}
			got := m.ScoreSeries(u)
			if got[1].Score < NewTier || got[2].Score > DefaultAccumCap {
				t.Errorf("a new syscall: %.3f, then %.3f; want >= %d, then at most the cap %d", got[1].Score, got[2].Score, NewTier, DefaultAccumCap)
			}
		})
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestHeldOutSeries(t *testing.T) {
	m := &Model{Context: 1, Accum: &AccumOptions{Kind: AccumSum, N: 2, Cap: 20}}
	units := []Unit{{Source: "a"}, {Source: "a"}, {Source: "a"}, {Source: "b"}, {Source: "b"}}
	// held-out scores come fold by fold: units 1, 3, then 0, 2, 4
	idxs := []int{1, 3, 0, 2, 4}
	comb := []float64{2, 4, 1, 3, 5}
	// in training order: a: 1, 2, 3 -> 1, 3, 5; b (a new stream): 4, 5 -> 4, 9
	want := []float64{1, 3, 5, 4, 9}
	got := m.heldOutSeries(units, idxs, comb)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("held-out series %v, want %v", got, want)
		}
	}
}

func TestAccumCalibratedThreshold(t *testing.T) {
	// training windows that alternate between a quiet and a busy state
	// in runs of 5, so held-out windows deviate, one as much as another
	var tr []Unit
	for i := 0; i < 400; i++ {
		read := 100.0
		if (i/5)%2 == 1 {
			read = 180
		}
		tr = append(tr, Unit{Source: "a", Index: i, Counts: map[string]float64{"read": read + float64(i%3), "write": 50}})
	}
	train := func(a AccumOptions) *Model {
		// the largest deviation: every held-out window scores about 1
		m, err := Train(tr, TrainOptions{UnitKind: "counts", Components: []string{"count"},
			Count: CountOptions{Features: FeatSyscall, Tier: true}, Context: 1, Accum: a})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	one, sum := train(AccumOptions{}), train(AccumOptions{Kind: AccumSum, N: 5})
	if !(one.Threshold > 0.5 && sum.Threshold > 3*one.Threshold) {
		t.Errorf("threshold %.3f summing 5 windows, %.3f for one: want the held-out sums to set it about 5 times higher", sum.Threshold, one.Threshold)
	}
}

func TestReadModelAccum(t *testing.T) {
	tr := stableWindows("a", 100, 10)
	m := trainAccum(t, tr, AccumOptions{Kind: AccumCUSUM, Drift: 2})
	back, err := ReadModel(saved(t, m))
	if err != nil {
		t.Fatal(err)
	}
	if back.Accum == nil || *back.Accum != *m.Accum {
		t.Errorf("read back accumulation %+v, want %+v", back.Accum, m.Accum)
	}
	if !strings.Contains(back.Summary(), "accumulation across windows: cusum (drift 2") {
		t.Errorf("summary does not say how evidence accumulates:\n%s", back.Summary())
	}
	plain, err := ReadModel(saved(t, trainAccum(t, tr, AccumOptions{})))
	if err != nil {
		t.Fatal(err)
	}
	if plain.Accum != nil {
		t.Errorf("a model without accumulation reads back with %+v", plain.Accum)
	}
	for _, tc := range []struct {
		name, want string
		edit       func(a *AccumOptions)
	}{
		{"unknown kind", `kind "ewma" unknown`, func(a *AccumOptions) { a.Kind = "ewma" }},
		{"no kind", `accumulation of kind "" with cap 20`, func(a *AccumOptions) { a.Kind = "" }},
		{"no cap", "cap 0, want a kind and a cap > 0", func(a *AccumOptions) { a.Cap = 0 }},
		{"sum of nothing", "sum over 0 windows", func(a *AccumOptions) { a.Kind = AccumSum }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := trainAccum(t, tr, AccumOptions{Kind: AccumCUSUM, Drift: 2})
			tc.edit(c.Accum)
			_, err := ReadModel(saved(t, c))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := Train(tr, TrainOptions{UnitKind: "counts", Accum: AccumOptions{Kind: "ewma"}}); err == nil || !strings.Contains(err.Error(), "train: accumulation: kind") {
		t.Errorf("train with an unknown accumulation: %v", err)
	}
}
