package detector

import (
	"bytes"
	"math"
	"testing"
)

// TestNLLCache: the negative log-likelihoods cached in the training grams
// are exactly what the smoothed n-gram model gives, so scores with the
// cache equal scores without it, for normal traces (grams seen in
// training) and attacks (grams never seen), after training and after a
// save and read.
func TestNLLCache(t *testing.T) {
	m, r := trainedModel(t)
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := ReadModel(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var units []Unit
	for i := 0; i < 20; i++ {
		units = append(units, Unit{Seqs: [][]string{normalTrace(r)}}, Unit{Seqs: [][]string{attackTrace(r, i)}})
	}
	for name, model := range map[string]*Model{"trained": m, "read back": back} {
		cached := 0
		model.stats.each(func(_ uint64, st *gramStat) {
			if st.cached {
				cached++
			}
		})
		if cached == 0 {
			t.Fatalf("%s: no gram has its likelihood cached", name)
		}
		with := make([]Scores, len(units))
		for i := range units {
			with[i] = model.Score(&units[i])
		}
		for _, g := range model.Grams {
			if len(g.Toks) != ngramOrder {
				continue
			}
			st := model.stats.at(hashToks(g.Toks))
			if want := -math.Log2(model.prob(g.Toks[:ngramOrder-1], g.Toks[ngramOrder-1])); !st.cached || st.nll != want {
				t.Fatalf("%s: gram %v: cached %v nll %v, want %v", name, g.Toks, st.cached, st.nll, want)
			}
		}
		model.stats.each(func(_ uint64, st *gramStat) { st.cached = false })
		for i := range units {
			if got := model.Score(&units[i]); got.Score != with[i].Score || got.Parts != with[i].Parts {
				t.Errorf("%s: unit %d scores %v %v without the cache, %v %v with it", name, i, got.Score, got.Parts, with[i].Score, with[i].Parts)
			}
		}
	}
}
