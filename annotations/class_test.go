package annotations

import (
	"strings"
	"testing"
)

func TestParseClass(t *testing.T) {
	mon := map[string]string{KeyMonitor: "true"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{KeyMonitor: "true"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name            string
		pod, ctr        map[string]string
		realtime, block bool
		errKey          string // the key the error must name ("" when none)
		errAllowed      string
	}{
		{name: "default classes", pod: mon},
		{name: "normal and drop said", pod: with(KeyLatency, "normal", KeyLoss, "drop")},
		{name: "realtime", pod: with(KeyLatency, "realtime"), realtime: true},
		{name: "block", pod: with(KeyLoss, "block"), block: true},
		{name: "both, per container", pod: with(KeyLatency+"/container.app", "realtime"), ctr: map[string]string{KeyLoss: " block "}, realtime: true, block: true},
		{name: "other container's form ignored", pod: with(KeyLatency+"/container.db", "realtime")},
		{name: "pod form beats plain", pod: with(KeyLoss, "block", KeyLoss+"/pod", "drop")},
		{name: "bad latency", pod: with(KeyLatency, "fast"), errKey: KeyLatency, errAllowed: `"normal", "realtime"`},
		{name: "bad loss", pod: with(KeyLoss+"/pod", "never"), errKey: KeyLoss + "/pod", errAllowed: `"drop", "block"`},
		{name: "case matters", pod: with(KeyLatency, "Realtime"), errKey: KeyLatency},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.pod, tt.ctr, "app", "default", "img", NodeConfig{})
			if tt.errKey != "" {
				if err == nil {
					t.Fatalf("Parse = %+v, want an error naming %q", p, tt.errKey)
				}
				if !strings.Contains(err.Error(), `"`+tt.errKey+`"`) || !strings.Contains(err.Error(), tt.errAllowed) {
					t.Fatalf("error %q: want the key %q and the allowed values %s", err, tt.errKey, tt.errAllowed)
				}
				// With onInvalid: warn, the normal class and a warning.
				p, err := Parse(tt.pod, tt.ctr, "app", "default", "img", NodeConfig{OnInvalid: OnInvalidWarn})
				if err != nil || p.Realtime || p.Block || len(p.Warnings) != 1 {
					t.Fatalf("warn: Parse = %+v, %v; want the normal class and one warning", p, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Realtime != tt.realtime || p.Block != tt.block {
				t.Fatalf("Parse: realtime %v block %v; want %v %v", p.Realtime, p.Block, tt.realtime, tt.block)
			}
		})
	}
}

func TestClassBounds(t *testing.T) {
	c, err := ParseNodeConfig([]byte("realtimeMax: 2\nblockMax: 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.RealtimeLimit() != 2 || c.BlockLimit() != 0 {
		t.Fatalf("limits %d %d, want 2 0", c.RealtimeLimit(), c.BlockLimit())
	}
	if d := (NodeConfig{}); d.RealtimeLimit() != DefaultRealtimeMax || d.BlockLimit() != DefaultBlockMax {
		t.Fatalf("default limits %d %d", d.RealtimeLimit(), d.BlockLimit())
	}
	for _, bad := range []struct{ yaml, field string }{
		{"realtimeMax: -1", "realtimeMax -1"},
		{"blockMax: 5000", "blockMax 5000"},
	} {
		_, err := ParseNodeConfig([]byte(bad.yaml))
		if err == nil || !strings.Contains(err.Error(), bad.field) || !strings.Contains(err.Error(), "from 0 to 4096") {
			t.Errorf("%s: error %v, want one naming %q and the allowed range", bad.yaml, err, bad.field)
		}
	}
	w := ClassOverBound(LossBlock, 16, 16)
	for _, want := range []string{KeyLoss, `"block"`, `"drop"`, "blockMax", "16"} {
		if !strings.Contains(w, want) {
			t.Errorf("warning %q lacks %q", w, want)
		}
	}
}
