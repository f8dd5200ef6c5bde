package audit

import (
	"encoding/json"
	"math"
	"testing"
)

// TestGapBody: the gap body made without reflection is what json.Marshal
// makes of Gap, so the records and their signatures are unchanged.
func TestGapBody(t *testing.T) {
	for _, tc := range []struct {
		name        string
		from, count uint64
	}{
		{"zero", 0, 0},
		{"one", 1, 1},
		{"typical", 4_123_456, 3},
		{"max", math.MaxUint64, math.MaxUint64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal(Gap{FromSeq: tc.from, Count: tc.count})
			if err != nil {
				t.Fatal(err)
			}
			if got := gapBody(nil, tc.from, tc.count); string(got) != string(want) {
				t.Fatalf("gapBody(%d, %d) = %s, want %s", tc.from, tc.count, got, want)
			}
		})
	}
}

// TestAppendGapReadBack: a gap record reads back with its numbers, cgroup
// and container.
func TestAppendGapReadBack(t *testing.T) {
	o := testOptions(t)
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AppendGap(42, "ctr-1", 1_000_001, 17); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var gaps []*Record
	for _, r := range readAll(t, o.Dir) {
		if r.Kind == KindGap {
			gaps = append(gaps, r)
		}
	}
	if len(gaps) != 1 {
		t.Fatalf("%d gap records, want 1", len(gaps))
	}
	r := gaps[0]
	var g Gap
	if err := json.Unmarshal(r.Body, &g); err != nil {
		t.Fatalf("gap body %s: %v", r.Body, err)
	}
	if r.CgroupID != 42 || r.ContainerID != "ctr-1" || g.FromSeq != 1_000_001 || g.Count != 17 {
		t.Fatalf("gap record: cgroup %d container %q body %+v, want 42 ctr-1 {1000001 17}", r.CgroupID, r.ContainerID, g)
	}
}

func BenchmarkAppendGap(b *testing.B) {
	w, err := Open(testOptions(b))
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := w.AppendGap(7, "c1", uint64(3*i), 2); err != nil {
			b.Fatal(err)
		}
	}
}
