package pipeline

import (
	"bytes"
	"strings"
	"testing"

	"vigil.dev/vigil/event"
)

func TestEventFilter(t *testing.T) {
	openat, _ := event.SyscallNr("openat")
	getpid, _ := event.SyscallNr("getpid")
	shop := &event.Container{Namespace: "shop", PodLabels: map[string]string{"app": "web", "tier": "front"}}
	batch := &event.Container{Namespace: "batch", PodLabels: map[string]string{"app": "etl"}}
	evs := []event.Event{
		{Nr: int32(openat), Container: shop},
		{Nr: int32(getpid), Container: shop},
		{Nr: int32(openat), Container: batch},
		{Nr: int32(openat)}, // no container
	}
	for _, tt := range []struct {
		name                string
		ns, labels, syscall []string
		want                []bool
	}{
		{"none", nil, nil, nil, []bool{true, true, true, true}},
		{"namespace", []string{"sh*"}, nil, nil, []bool{true, true, false, false}},
		{"label key=value", nil, []string{"app=we?"}, nil, []bool{true, true, false, false}},
		{"label key", nil, []string{"app"}, nil, []bool{true, true, true, false}},
		{"syscall", nil, nil, []string{"openat"}, []bool{true, false, true, true}},
		{"all parts", []string{"batch"}, []string{"app=etl"}, []string{"openat"}, []bool{false, false, true, false}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseEventFilter(tt.ns, tt.labels, tt.syscall)
			if err != nil {
				t.Fatal(err)
			}
			for i := range evs {
				if got := f.Match(&evs[i]); got != tt.want[i] {
					t.Errorf("event %d: match %v, want %v", i, got, tt.want[i])
				}
			}
		})
	}
	if _, err := ParseEventFilter(nil, nil, []string{"opne"}); err == nil || !strings.Contains(err.Error(), `"opne"`) {
		t.Errorf("bad syscall name: %v", err)
	}
	if _, err := ParseEventFilter([]string{"[x"}, nil, nil); err == nil {
		t.Error("bad pattern accepted")
	}
	// The stream writes the matching events only.
	var b bytes.Buffer
	f, _ := ParseEventFilter([]string{"batch"}, nil, nil)
	j := NewJSONLines(&b, true).Filter(f)
	for i := range evs {
		j.Event(&evs[i])
	}
	j.Flush()
	if n := strings.Count(b.String(), "\n"); n != 1 {
		t.Errorf("%d event lines written, want 1:\n%s", n, b.String())
	}
}
