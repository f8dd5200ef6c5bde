package bpf

import (
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/internal/privtest"
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

// TestLoadIdleAfterLooks: the idle time defaults to at least two of the
// longest looks, and one set shorter is refused with both values named.
func TestLoadIdleAfterLooks(t *testing.T) {
	privtest.Require(t)
	m, err := Load(Config{RingBytes: 1 << 20, PollInterval: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.IdleAfter < 80*time.Millisecond {
		t.Errorf("idle time %v with 40ms looks, want at least 80ms", m.cfg.IdleAfter)
	}
	m.Close()
	_, err = Load(Config{RingBytes: 1 << 20, PollInterval: 40 * time.Millisecond, IdleAfter: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "idle time 50ms") || !strings.Contains(err.Error(), "40ms") {
		t.Errorf("idle time 50ms with 40ms looks: %v, want an error naming both", err)
	}
}
