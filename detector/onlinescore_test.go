package detector

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"vigil.dev/vigil/event"
)

// TestOnlineScoreIsUnitScore: the engine scores a window from its syscall
// numbers with reused buffers (onlineModel.score); that must give exactly
// what Model.Score gives the same window cut as a Unit (the form training
// uses), for every component, with many threads, syscalls outside the
// model's vocabulary and numbers outside the syscall table, across
// windows (thread contexts carried over, and dropped past modelTailCap).
func TestOnlineScoreIsUnitScore(t *testing.T) {
	evs := tarRm(t)
	train := NewLearner(100, 0)
	for i := range evs {
		train.Observe(&evs[i])
	}
	units := train.units[train.cgroups[evs[0].CgroupID].key]
	models := map[string]TrainOptions{
		"default": {WindowN: 100},
		"all":     {WindowN: 100, Components: []string{"ngram", "stide", "freq", "count", "pca"}},
		"whole":   {WindowN: 100, Whole: true, Rank: true},
	}
	for name, opt := range models {
		t.Run(name, func(t *testing.T) {
			m, err := Train(units, opt)
			if err != nil {
				t.Fatal(err)
			}
			o := newOnlineModel(m)
			r := rand.New(rand.NewPCG(3, 4))
			wu, ws := newWindower(100), newWindower(100)
			var sc scoreScratch
			windows, anomalous := 0, 0
			for i := 0; i < 60_000; i++ {
				e := evs[r.IntN(len(evs))]
				switch k := r.IntN(100); {
				case k < 3:
					e.Nr = int32(r.IntN(maxNativeNr + 1)) // mostly outside the vocabulary
				case k < 4:
					e.Nr = int32(maxNativeNr + 1 + r.IntN(50)) // outside the table
				}
				e.TID = uint32(1 + r.IntN(8))
				if i > 30_000 {
					e.TID = uint32(1 + r.IntN(3*modelTailCap)) // threads come and go
				}
				if wu.add(&e) != ws.add(&e) {
					t.Fatal("windowers disagree")
				}
				if wu.count < wu.n {
					continue
				}
				ws.bound()
				got := o.score(ws, &sc)
				ws.next()
				u := wu.unit("", windows)
				want := m.Score(&u)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("window %d: online %+v, unit %+v", windows, got, want)
				}
				windows++
				if got.Anomalous {
					anomalous++
				}
			}
			if windows < 500 || anomalous == 0 {
				t.Fatalf("%d windows, %d anomalous: the test does not exercise scoring", windows, anomalous)
			}
		})
	}
}

// TestWindowerContext: a thread's context in the next window is its last
// ngramOrder-1 syscalls, across short windows too.
func TestWindowerContext(t *testing.T) {
	w := newWindower(3)
	add := func(tid uint32, nr int32) bool { return w.add(&event.Event{TID: tid, Nr: nr}) }
	add(1, 1)
	add(2, 2)
	add(1, 3)
	u := w.unit("", 0)
	if !reflect.DeepEqual(u.Prefix, [][]string{nil, nil}) {
		t.Fatalf("first window's prefixes %q", u.Prefix)
	}
	for i := int32(10); i < 16; i++ {
		if add(1, i) {
			w.unit("", 1)
		}
	}
	add(1, 20)
	add(1, 21)
	add(2, 22)
	u = w.unit("", 2)
	want := [][]string{syscallNames([]int32{11, 12, 13, 14, 15}), syscallNames([]int32{2})}
	if !reflect.DeepEqual(u.Prefix, want) {
		t.Fatalf("prefixes %q, want %q", u.Prefix, want)
	}
}
