package pipeline

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Latency is a histogram of durations for metrics (see hist).
type Latency struct{ h hist }

// Add records one duration.
func (l *Latency) Add(d time.Duration) { l.h.add(d) }

// Quantile is the upper edge of the bucket holding quantile q (0..1).
func (l *Latency) Quantile(q float64) time.Duration { return l.h.quantile(q) }

// Count is the number of durations recorded.
func (l *Latency) Count() uint64 { return l.h.count.Load() }

// hist is a log-linear histogram of durations (4 buckets per power of
// two, from 1 ns to about 70 s), safe for one writer and many readers.
type hist struct {
	b     [4 * 36]atomic.Uint64
	count atomic.Uint64
}

func bucketOf(ns int64) int {
	if ns < 1 {
		ns = 1
	}
	lz := 63 - bits.LeadingZeros64(uint64(ns)) // floor(log2)
	sub := 0
	if lz >= 2 {
		sub = int(uint64(ns)>>(lz-2)) & 3
	} else {
		sub = int(uint64(ns)<<(2-lz)) & 3
	}
	i := lz*4 + sub
	return min(i, 4*36-1)
}

// upper is the upper edge of bucket i, in ns.
func upper(i int) float64 {
	lz, sub := i/4, i%4
	return math.Exp2(float64(lz)) * (1 + float64(sub+1)/4)
}

func (h *hist) add(d time.Duration) {
	h.b[bucketOf(int64(d))].Add(1)
	h.count.Add(1)
}

// quantile is the upper edge of the bucket holding quantile q (0..1).
func (h *hist) quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i := range h.b {
		seen += h.b[i].Load()
		if seen >= want {
			return time.Duration(upper(i))
		}
	}
	return time.Duration(upper(len(h.b) - 1))
}
