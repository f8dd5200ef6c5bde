package bpf

import (
	"testing"
	"time"
)

func TestNextPoll(t *testing.T) {
	const lo, hi = 900 * time.Microsecond, 16 * time.Millisecond
	for _, tc := range []struct {
		name string
		poll time.Duration
		n    int
		want time.Duration
	}{
		{"few records stretch", lo, 10, 2 * lo},
		{"an empty look stretches", lo, 0, 2 * lo},
		{"a batch is few", lo, 300, 2 * lo},
		{"stretched to the bound", 12 * time.Millisecond, 1, hi},
		{"at the bound", hi, 1, hi},
		{"enough records keep it", 2 * lo, 1000, 2 * lo},
		{"many records shrink", hi, 5000, hi / 2},
		{"shrunk to the floor", lo + 100*time.Microsecond, 5000, lo},
		{"fixed interval", lo, 1, lo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hi
			if tc.name == "fixed interval" {
				h = lo
			}
			if got := nextPoll(tc.poll, tc.n, lo, h); got != tc.want {
				t.Errorf("nextPoll(%v, %d) = %v, want %v", tc.poll, tc.n, got, tc.want)
			}
		})
	}
}
