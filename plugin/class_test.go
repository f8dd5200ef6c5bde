package plugin

import (
	"context"

	"github.com/containerd/nri/pkg/api"

	"strings"
	"testing"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/bpf"
)

func TestClassFor(t *testing.T) {
	two := 2
	zero := 0
	bounded := annotations.NodeConfig{RealtimeMax: &two, BlockMax: &zero}
	tests := []struct {
		name     string
		pol      annotations.Policy
		node     annotations.NodeConfig
		held     classCount
		want     bpf.TrackOptions
		warnings []string // substrings, one per warning
	}{
		{"normal", annotations.Policy{Monitor: true}, annotations.NodeConfig{}, classCount{}, bpf.TrackOptions{}, nil},
		{"realtime under the default bound", annotations.Policy{Realtime: true}, annotations.NodeConfig{}, classCount{Realtime: 15}, bpf.TrackOptions{Realtime: true}, nil},
		{"realtime at the default bound", annotations.Policy{Realtime: true}, annotations.NodeConfig{}, classCount{Realtime: 16}, bpf.TrackOptions{}, []string{"realtimeMax"}},
		{"realtime under a node bound", annotations.Policy{Realtime: true}, bounded, classCount{Realtime: 1}, bpf.TrackOptions{Realtime: true}, nil},
		{"block refused by blockMax 0, realtime kept", annotations.Policy{Realtime: true, Block: true}, bounded, classCount{}, bpf.TrackOptions{Realtime: true}, []string{"blockMax"}},
		{"both refused", annotations.Policy{Realtime: true, Block: true}, bounded, classCount{Realtime: 2}, bpf.TrackOptions{}, []string{"realtimeMax", "blockMax"}},
		{"block off by default", annotations.Policy{Block: true}, annotations.NodeConfig{}, classCount{}, bpf.TrackOptions{}, []string{"blockMax"}},
		{"block under a node bound", annotations.Policy{Block: true}, annotations.NodeConfig{BlockMax: &two}, classCount{Block: 1}, bpf.TrackOptions{Block: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ws := classFor(tt.pol, tt.node, tt.held)
			if got != tt.want {
				t.Fatalf("class %+v, want %+v", got, tt.want)
			}
			if len(ws) != len(tt.warnings) {
				t.Fatalf("warnings %q, want %d", ws, len(tt.warnings))
			}
			for i, w := range tt.warnings {
				if !strings.Contains(ws[i], w) {
					t.Errorf("warning %q lacks %q", ws[i], w)
				}
			}
		})
	}
}

// classTracer is fakeTracer with classes.
type classTracer struct {
	*fakeTracer
	class  map[uint64]bpf.TrackOptions
	paused map[uint64]uint64
}

func (f *classTracer) TrackWith(id uint64, o bpf.TrackOptions) error {
	if err := f.Track(id); err != nil {
		return err
	}
	if _, ok := f.class[id]; !ok {
		f.class[id] = o
	}
	return nil
}

func (f *classTracer) Class(id uint64) (bpf.TrackOptions, uint64, error) {
	o, ok := f.class[id]
	if !ok {
		return o, 0, bpf.ErrNotTracked
	}
	return o, f.paused[id], nil
}

func TestStartContainerClassBound(t *testing.T) {
	ctx := context.Background()
	one, four := 1, 4
	p, tr, _ := newTestPlugin(annotations.NodeConfig{RealtimeMax: &one, BlockMax: &four})
	ct := &classTracer{fakeTracer: tr, class: map[uint64]bpf.TrackOptions{}}
	p.tracer = ct
	pod := testPod(map[string]string{"ebpf-monitor": "true", "vigil.dev/latency": "realtime", "vigil.dev/loss": "block"})
	c1, c2 := testCtr("c1", nil), testCtr("c2", nil)
	for _, c := range []*api.Container{c1, c2} {
		if _, _, err := p.CreateContainer(ctx, pod, c); err != nil {
			t.Fatal(err)
		}
		if err := p.StartContainer(ctx, pod, c); err != nil {
			t.Fatal(err)
		}
	}
	// realtimeMax 1: the first holds realtime, the second runs normal;
	// blockMax 4: both block.
	if got := ct.class[101]; got != (bpf.TrackOptions{Realtime: true, Block: true}) {
		t.Errorf("c1 class %+v", got)
	}
	if got := ct.class[102]; got != (bpf.TrackOptions{Block: true}) {
		t.Errorf("c2 class %+v, want block only (over realtimeMax)", got)
	}
	info, _ := p.Lookup(102)
	if info.Policy.Realtime || !info.Policy.Block {
		t.Errorf("c2 policy %+v: want the class it holds", info.Policy)
	}
	// vigil status shows the class each holds and how often block stopped it.
	ct.paused = map[uint64]uint64{102: 7}
	live, _ := p.Containers()
	byID := map[string]ContainerStatus{}
	for _, c := range live {
		byID[c.ID] = c
	}
	if s := byID["c1"]; s.Class != "realtime,block" || s.Stopped != 0 {
		t.Errorf("c1 status class %q stopped %d, want realtime,block and 0", s.Class, s.Stopped)
	}
	if s := byID["c2"]; s.Class != "block" || s.Stopped != 7 {
		t.Errorf("c2 status class %q stopped %d, want block and 7", s.Class, s.Stopped)
	}
	// Stopping c1 frees its place: a container started next gets it.
	if _, err := p.StopContainer(ctx, pod, c1); err != nil {
		t.Fatal(err)
	}
	delete(ct.class, 101)
	if _, _, err := p.CreateContainer(ctx, pod, c1); err != nil {
		t.Fatal(err)
	}
	if err := p.StartContainer(ctx, pod, c1); err != nil {
		t.Fatal(err)
	}
	if got := ct.class[101]; !got.Realtime {
		t.Errorf("restarted c1 class %+v: the stopped container's place was not freed", got)
	}
}
