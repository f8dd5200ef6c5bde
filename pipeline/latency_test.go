package pipeline

import (
	"testing"
	"time"
)

func TestHistQuantiles(t *testing.T) {
	var h hist
	if h.quantile(.99) != 0 {
		t.Fatal("empty histogram has a quantile")
	}
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{.5, 500 * time.Microsecond}, {.99, 990 * time.Microsecond}, {1, time.Millisecond}} {
		got := h.quantile(tt.q)
		// A bucket is a quarter of a power of two wide: within 25% above.
		if got < tt.want || float64(got) > float64(tt.want)*1.25 {
			t.Errorf("quantile %.2f = %v, want %v (to +25%%)", tt.q, got, tt.want)
		}
	}
	for _, ns := range []int64{0, 1, 2, 3, 5, 1 << 40} {
		if b := bucketOf(ns); b < 0 || b >= len(h.b) || (ns > 0 && upper(b) < float64(ns) && b != len(h.b)-1) {
			t.Errorf("bucket of %d = %d (upper %v)", ns, b, upper(b))
		}
	}
}
