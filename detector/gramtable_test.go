package detector

import (
	"math/rand/v2"
	"testing"
)

// TestGramTableAgainstMap: a gram table answers as a map of the same
// keys does, through its growth, with keys that share their slot (the
// same high bits after the spreading multiplication) and the key 0.
func TestGramTableAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var tab gramTable
	ref := map[uint64]gramStat{}
	var keys []uint64
	for i := 0; i < 50_000; i++ {
		var h uint64
		switch r := rng.IntN(20); {
		case r == 0:
			h = 0
		case r < 4 && len(keys) > 0:
			h = keys[rng.IntN(len(keys))] // an update
		case r < 8:
			h = uint64(rng.IntN(64)) // small keys: neighbours in one run of slots
		default:
			h = rng.Uint64()
		}
		st := gramStat{n: uint32(i), ctxN: uint32(rng.IntN(9)), types: uint32(i % 7), nll: float64(i) / 3, cached: i%2 == 0}
		tab.set(h, st)
		if _, ok := ref[h]; !ok {
			keys = append(keys, h)
		}
		ref[h] = st
		if q := rng.Uint64(); true {
			_, want := ref[q]
			if got := tab.has(q); got != want {
				t.Fatalf("step %d: has(%#x) = %v, want %v", i, q, got, want)
			}
		}
	}
	if tab.len() != len(ref) {
		t.Fatalf("%d keys held, want %d", tab.len(), len(ref))
	}
	for h, want := range ref {
		if got, ok := tab.get(h); !ok || got != want {
			t.Fatalf("get(%#x) = %+v, %v; want %+v", h, got, ok, want)
		}
	}
	seen := 0
	tab.each(func(h uint64, st *gramStat) {
		if ref[h] != *st {
			t.Errorf("each: %#x holds %+v, want %+v", h, *st, ref[h])
		}
		st.cached = !st.cached
		seen++
	})
	if seen != len(ref) {
		t.Errorf("each gave %d keys, want %d", seen, len(ref))
	}
	for h, want := range ref {
		if got := tab.at(h); got.cached == want.cached {
			t.Fatalf("%#x: a change through each was lost", h)
		}
	}
	var empty gramTable
	if _, ok := empty.get(7); ok || empty.has(0) || empty.at(7) != (gramStat{}) {
		t.Error("the zero table holds a key")
	}
}
