package annotations

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestLookupOrder(t *testing.T) {
	tests := []struct {
		name     string
		pod, ctr map[string]string
		wantKey  string
		wantVal  string
		wantOK   bool
	}{
		{"none", nil, nil, "", "", false},
		{"plain key on pod", map[string]string{"ebpf-monitor": "true"}, nil, "ebpf-monitor", "true", true},
		{"pod form beats plain", map[string]string{"ebpf-monitor": "true", "ebpf-monitor/pod": "false"}, nil, "ebpf-monitor/pod", "false", true},
		{"container form beats pod form", map[string]string{"ebpf-monitor/pod": "false", "ebpf-monitor/container.app": "true"}, nil, "ebpf-monitor/container.app", "true", true},
		{"other container's form ignored", map[string]string{"ebpf-monitor/container.db": "true"}, nil, "", "", false},
		{"container annotations beat pod annotations for one form", map[string]string{"ebpf-monitor": "false"}, map[string]string{"ebpf-monitor": "true"}, "ebpf-monitor", "true", true},
		{"container form on pod beats plain key on container", map[string]string{"ebpf-monitor/container.app": "false"}, map[string]string{"ebpf-monitor": "true"}, "ebpf-monitor/container.app", "false", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, v, ok := Lookup(tt.pod, tt.ctr, KeyMonitor, "app")
			if k != tt.wantKey || v != tt.wantVal || ok != tt.wantOK {
				t.Errorf("Lookup = %q, %q, %v; want %q, %q, %v", k, v, ok, tt.wantKey, tt.wantVal, tt.wantOK)
			}
		})
	}
}

func TestParse(t *testing.T) {
	forceNS := NodeConfig{}
	forceNS.ForceMonitor.Namespaces = []string{"prod-*"}
	forceImg := NodeConfig{}
	forceImg.ForceMonitor.Images = []string{"registry.local/payments/*"}
	forceEnforce := forceNS
	forceEnforce.MinMode = ModeDetect
	named := NodeConfig{Profiles: []string{"nginx"}, AllowUnconfined: true}
	policies := NodeConfig{Policies: []string{"default", "web"}}

	def := Policy{Priority: 50, PolicyName: "default", Mode: ModeDetect}
	with := func(f func(*Policy)) Policy { p := def; f(&p); return p }

	tests := []struct {
		name      string
		pod, ctr  map[string]string
		namespace string
		image     string
		node      NodeConfig
		want      Policy
	}{
		{name: "unannotated: nothing", want: def},
		{name: "monitor true: notify by default", pod: map[string]string{"ebpf-monitor": "true"},
			want: with(func(p *Policy) { p.Monitor, p.Seccomp = true, "notify" })},
		{name: "monitor TRUE with spaces", pod: map[string]string{"ebpf-monitor": " TRUE "},
			want: with(func(p *Policy) { p.Monitor, p.Seccomp = true, "notify" })},
		{name: "monitor false", pod: map[string]string{"ebpf-monitor": "false"}, want: def},
		{name: "seccomp without monitoring", pod: map[string]string{"vigil.dev/seccomp": "strict"},
			want: with(func(p *Policy) { p.Seccomp = "strict" })},
		{name: "monitored with runtime-default", pod: map[string]string{"ebpf-monitor": "true", "vigil.dev/seccomp": "runtime-default"},
			want: with(func(p *Policy) { p.Monitor, p.Seccomp = true, "runtime-default" })},
		{name: "per-container override", pod: map[string]string{"ebpf-monitor": "true", "vigil.dev/seccomp/pod": "strict", "vigil.dev/seccomp/container.app": "notify"},
			want: with(func(p *Policy) { p.Monitor, p.Seccomp = true, "notify" })},
		{name: "node forces namespace over false", pod: map[string]string{"ebpf-monitor": "false"}, namespace: "prod-eu", node: forceNS,
			want: with(func(p *Policy) { p.Monitor, p.Forced, p.Seccomp, p.SeccompFloor = true, true, "notify", "notify" })},
		{name: "node namespace pattern does not match", namespace: "dev", node: forceNS, want: def},
		{name: "node forces image with slashes", image: "registry.local/payments/api:1.2", node: forceImg,
			want: with(func(p *Policy) { p.Monitor, p.Forced, p.Seccomp, p.SeccompFloor = true, true, "notify", "notify" })},
		{name: "forced: learn raised to node minimum", pod: map[string]string{"vigil.dev/mode": "learn"}, namespace: "prod-1", node: forceEnforce,
			want: with(func(p *Policy) {
				p.Monitor, p.Forced, p.Seccomp, p.SeccompFloor, p.Mode = true, true, "notify", "notify", ModeDetect
			})},
		{name: "forced: pod may raise above minimum", pod: map[string]string{"vigil.dev/mode": "enforce"}, namespace: "prod-1", node: forceEnforce,
			want: with(func(p *Policy) {
				p.Monitor, p.Forced, p.Seccomp, p.SeccompFloor, p.Mode = true, true, "notify", "notify", ModeEnforce
			})},
		{name: "minimum holds for unforced pods too", pod: map[string]string{"ebpf-monitor": "true", "vigil.dev/mode": "learn"}, node: forceEnforce,
			want: with(func(p *Policy) { p.Monitor, p.Seccomp, p.Mode = true, "notify", ModeDetect })},
		{name: "node default mode", pod: map[string]string{"ebpf-monitor": "true"}, node: NodeConfig{DefaultMode: ModeEnforce},
			want: with(func(p *Policy) { p.Monitor, p.Seccomp, p.Mode = true, "notify", ModeEnforce })},
		{name: "priority", pod: map[string]string{"ebpf-monitor": "true", "vigil.dev/priority": "80"},
			want: with(func(p *Policy) {
				p.Monitor, p.Seccomp, p.Priority, p.PrioritySet, p.PriorityAsked = true, "notify", 80, true, ptr(80)
			})},
		{name: "priority bounds", pod: map[string]string{"ebpf-monitor": "true", "vigil.dev/priority": "0"},
			want: with(func(p *Policy) {
				p.Monitor, p.Seccomp, p.Priority, p.PrioritySet, p.PriorityAsked = true, "notify", 0, true, ptr(0)
			})},
		{name: "policy and mode", pod: map[string]string{"vigil.dev/policy": "web-strict", "vigil.dev/mode": "learn"},
			want: with(func(p *Policy) { p.PolicyName, p.Mode = "web-strict", ModeLearn })},
		{name: "named profile and unconfined allowed", ctr: map[string]string{"vigil.dev/seccomp": "nginx"}, node: named,
			want: with(func(p *Policy) { p.Seccomp, p.AllowUnconfined = "nginx", true })},
		{name: "unconfined allowed", pod: map[string]string{"vigil.dev/seccomp": "unconfined"}, node: named,
			want: with(func(p *Policy) { p.Seccomp, p.AllowUnconfined = "unconfined", true })},
		{name: "listed policy", pod: map[string]string{"vigil.dev/policy": "web"}, node: policies,
			want: with(func(p *Policy) { p.PolicyName = "web" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.pod, tt.ctr, "app", tt.namespace, tt.image, tt.node)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestParsePriority(t *testing.T) {
	capped := NodeConfig{}
	capped.Priority.Max = ptr(60)
	capped.Priority.Min = ptr(20)
	capped.Priority.Namespaces = []PriorityRange{
		{Match: "kube-system", Min: ptr(0), Max: ptr(100)},
		{Match: "batch-*", Max: ptr(30)},
		{Match: "kube-*", Max: ptr(40)}, // not for kube-system: the first match wins
	}
	open := capped
	open.Priority.Unmonitored = true
	monitored := map[string]string{"ebpf-monitor": "true"}

	tests := []struct {
		name      string
		pod       map[string]string
		ctr       map[string]string
		namespace string
		node      NodeConfig
		wantPrio  int
		wantSet   bool
		wantAsked int      // -1: none
		warn      []string // substrings of the one warning; nil: no warning
	}{
		{name: "no priority", pod: monitored, node: capped, wantPrio: 50, wantAsked: -1},
		{name: "default bounds allow 100", pod: map[string]string{"ebpf-monitor": "true", "vigil.dev/priority": "100"},
			wantPrio: 100, wantSet: true, wantAsked: 100},
		{name: "within bounds", pod: map[string]string{"ebpf-monitor": "true", "vigil.dev/priority": "40"}, namespace: "shop", node: capped,
			wantPrio: 40, wantSet: true, wantAsked: 40},
		{name: "above max: clamped", pod: map[string]string{"ebpf-monitor": "true", "vigil.dev/priority": "100"}, namespace: "shop", node: capped,
			wantPrio: 60, wantSet: true, wantAsked: 100,
			warn: []string{`"vigil.dev/priority"`, "asks for priority 100", "applying 60 (2048 CPU shares)", "from 20 to 60", `namespace "shop"`}},
		{name: "below min: clamped", pod: map[string]string{"ebpf-monitor": "true"}, ctr: map[string]string{"vigil.dev/priority/container.app": "5"},
			namespace: "shop", node: capped, wantPrio: 20, wantSet: true, wantAsked: 5,
			warn: []string{`"vigil.dev/priority/container.app"`, "asks for priority 5", "applying 20"}},
		{name: "namespace bounds first match", pod: map[string]string{"ebpf-monitor": "true", "vigil.dev/priority": "100"}, namespace: "kube-system", node: capped,
			wantPrio: 100, wantSet: true, wantAsked: 100},
		{name: "namespace pattern, min from node", pod: map[string]string{"ebpf-monitor": "true", "vigil.dev/priority": "50"}, namespace: "batch-eu", node: capped,
			wantPrio: 30, wantSet: true, wantAsked: 50, warn: []string{"from 20 to 30", `namespace "batch-eu"`}},
		{name: "later pattern", pod: map[string]string{"ebpf-monitor": "true", "vigil.dev/priority": "50"}, namespace: "kube-public", node: capped,
			wantPrio: 40, wantSet: true, wantAsked: 50, warn: []string{"from 20 to 40"}},
		{name: "unmonitored: ignored", pod: map[string]string{"vigil.dev/priority": "80"}, namespace: "shop",
			wantPrio: 50, wantAsked: 80, warn: []string{`"vigil.dev/priority"`, "asks for priority 80", "ignored", "monitored pods only", "priority.unmonitored"}},
		{name: "unmonitored allowed and clamped", pod: map[string]string{"vigil.dev/priority": "80"}, namespace: "shop", node: open,
			wantPrio: 60, wantSet: true, wantAsked: 80, warn: []string{"applying 60"}},
		{name: "forced monitoring counts as monitored", pod: map[string]string{"vigil.dev/priority": "30"}, namespace: "prod",
			node:     func() NodeConfig { c := capped; c.ForceMonitor.Namespaces = []string{"prod"}; return c }(),
			wantPrio: 30, wantSet: true, wantAsked: 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.pod, tt.ctr, "app", tt.namespace, "", tt.node)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got.Priority != tt.wantPrio || got.PrioritySet != tt.wantSet {
				t.Errorf("priority %d set %v, want %d set %v", got.Priority, got.PrioritySet, tt.wantPrio, tt.wantSet)
			}
			switch {
			case tt.wantAsked < 0 && got.PriorityAsked != nil:
				t.Errorf("asked %d, want none", *got.PriorityAsked)
			case tt.wantAsked >= 0 && (got.PriorityAsked == nil || *got.PriorityAsked != tt.wantAsked):
				t.Errorf("asked %v, want %d", got.PriorityAsked, tt.wantAsked)
			}
			if tt.warn == nil {
				if len(got.Warnings) != 0 {
					t.Errorf("warnings %q, want none", got.Warnings)
				}
				return
			}
			if len(got.Warnings) != 1 {
				t.Fatalf("warnings %q, want one", got.Warnings)
			}
			for _, s := range tt.warn {
				if !strings.Contains(got.Warnings[0], s) {
					t.Errorf("warning %q lacks %q", got.Warnings[0], s)
				}
			}
		})
	}
}

func TestApplyPriority(t *testing.T) {
	lowered := NodeConfig{}
	lowered.Priority.Max = ptr(60)
	open := lowered
	open.Priority.Unmonitored = true
	tests := []struct {
		name     string
		pol      Policy
		node     NodeConfig
		wantPrio int
		wantSet  bool
		wantWarn bool
	}{
		{name: "nothing asked", pol: Policy{Priority: 50, Monitor: true}, node: lowered, wantPrio: 50},
		{name: "max lowered", pol: Policy{Monitor: true, Priority: 90, PrioritySet: true, PriorityAsked: ptr(90)}, node: lowered,
			wantPrio: 60, wantSet: true, wantWarn: true},
		{name: "max raised back: the asked value", pol: Policy{Monitor: true, Priority: 60, PrioritySet: true, PriorityAsked: ptr(90)},
			node: NodeConfig{}, wantPrio: 90, wantSet: true},
		{name: "unmonitored no longer allowed", pol: Policy{Priority: 60, PrioritySet: true, PriorityAsked: ptr(60)}, node: lowered,
			wantPrio: 50, wantWarn: true},
		{name: "unmonitored now allowed", pol: Policy{Priority: 50, PriorityAsked: ptr(70)}, node: open,
			wantPrio: 60, wantSet: true, wantWarn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, w := tt.node.ApplyPriority(tt.pol, "shop")
			if got.Priority != tt.wantPrio || got.PrioritySet != tt.wantSet || (w != "") != tt.wantWarn {
				t.Errorf("priority %d set %v warning %q; want %d set %v warning %v", got.Priority, got.PrioritySet, w, tt.wantPrio, tt.wantSet, tt.wantWarn)
			}
			if len(got.Warnings) != len(tt.pol.Warnings) {
				t.Errorf("warnings changed: %q", got.Warnings)
			}
		})
	}
}

func TestPriorityBounds(t *testing.T) {
	c := NodeConfig{}
	if lo, hi := c.PriorityBounds("any"); lo != 0 || hi != 100 {
		t.Errorf("zero configuration: %d..%d, want 0..100", lo, hi)
	}
	c.Priority.Min, c.Priority.Max = ptr(10), ptr(60)
	c.Priority.Namespaces = []PriorityRange{{Match: "kube-*", Max: ptr(100)}, {Match: "kube-system", Max: ptr(0), Min: ptr(0)}, {Match: "batch", Min: ptr(0)}}
	tests := []struct {
		namespace string
		lo, hi    int
	}{{"shop", 10, 60}, {"kube-system", 10, 100}, {"batch", 0, 60}, {"batch-2", 10, 60}, {"", 10, 60}}
	for _, tt := range tests {
		t.Run(tt.namespace, func(t *testing.T) {
			if lo, hi := c.PriorityBounds(tt.namespace); lo != tt.lo || hi != tt.hi {
				t.Errorf("PriorityBounds(%q) = %d..%d, want %d..%d", tt.namespace, lo, hi, tt.lo, tt.hi)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	forceNS := NodeConfig{}
	forceNS.ForceMonitor.Namespaces = []string{"prod"}
	tests := []struct {
		name    string
		pod     map[string]string
		node    NodeConfig
		key     string
		value   string
		allowed []string // substrings of the message
	}{
		{"monitor yes", map[string]string{"ebpf-monitor": "yes"}, NodeConfig{}, "ebpf-monitor", "yes", []string{`"true"`, `"false"`}},
		{"monitor yes even when forced", map[string]string{"ebpf-monitor": "yes"}, forceNS, "ebpf-monitor", "yes", []string{`"true"`}},
		{"unknown profile", map[string]string{"vigil.dev/seccomp": "bogus"}, NodeConfig{}, "vigil.dev/seccomp", "bogus", []string{`"runtime-default"`, `"strict"`, `"notify"`}},
		{"unconfined not allowed", map[string]string{"vigil.dev/seccomp/pod": "unconfined"}, NodeConfig{}, "vigil.dev/seccomp/pod", "unconfined", []string{`"notify"`}},
		{"priority word", map[string]string{"vigil.dev/priority": "high"}, NodeConfig{}, "vigil.dev/priority", "high", []string{"0 to 100"}},
		{"priority too big", map[string]string{"vigil.dev/priority/container.app": "101"}, NodeConfig{}, "vigil.dev/priority/container.app", "101", []string{"0 to 100"}},
		{"priority negative", map[string]string{"vigil.dev/priority": "-1"}, NodeConfig{}, "vigil.dev/priority", "-1", []string{"0 to 100"}},
		{"mode", map[string]string{"vigil.dev/mode": "block"}, NodeConfig{}, "vigil.dev/mode", "block", []string{`"learn"`, `"detect"`, `"enforce"`}},
		{"policy malformed", map[string]string{"vigil.dev/policy": "../etc"}, NodeConfig{}, "vigil.dev/policy", "../etc", []string{"policy name"}},
		{"policy not listed", map[string]string{"vigil.dev/policy": "web"}, NodeConfig{Policies: []string{"default"}}, "vigil.dev/policy", "web", []string{`"default"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.pod, nil, "app", "prod", "", tt.node)
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("Parse error = %v, want *Error", err)
			}
			if ae.Key != tt.key || ae.Value != tt.value {
				t.Errorf("error key/value = %q/%q, want %q/%q", ae.Key, ae.Value, tt.key, tt.value)
			}
			msg := err.Error()
			for _, s := range append([]string{tt.key, tt.value}, tt.allowed...) {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q lacks %q", msg, s)
				}
			}
			// Warn mode: same input gives the defaults and a warning.
			node := tt.node
			node.OnInvalid = OnInvalidWarn
			p, err := Parse(tt.pod, nil, "app", "prod", "", node)
			if err != nil {
				t.Fatalf("warn mode: %v", err)
			}
			if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], tt.value) {
				t.Errorf("warn mode warnings = %q", p.Warnings)
			}
		})
	}
}

func TestParseReportsEveryBadValue(t *testing.T) {
	_, err := Parse(map[string]string{"ebpf-monitor": "1", "vigil.dev/mode": "x"}, nil, "app", "", "", NodeConfig{})
	if err == nil || !strings.Contains(err.Error(), `"1"`) || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("error = %v, want both bad values named", err)
	}
}

func TestCPUShares(t *testing.T) {
	tests := []struct {
		priority int
		want     uint64
	}{{0, 32}, {40, 512}, {50, 1024}, {60, 2048}, {100, 32768}, {-5, 32}, {200, 32768}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.priority), func(t *testing.T) {
			if got := CPUShares(tt.priority); got != tt.want {
				t.Errorf("CPUShares(%d) = %d, want %d", tt.priority, got, tt.want)
			}
		})
	}
}

func TestParseNodeConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
		check   func(NodeConfig) bool
	}{
		{name: "empty", yaml: "", check: func(c NodeConfig) bool { return !c.Forces("prod", "x") }},
		{name: "full", yaml: "forceMonitor:\n  namespaces: [prod]\n  images: ['*/payments:*']\nallowUnconfined: true\nprofiles: [nginx]\nonInvalid: warn\nminMode: detect\n",
			check: func(c NodeConfig) bool {
				return c.Forces("prod", "") && c.Forces("", "r.io/payments:1") && !c.Forces("dev", "r.io/web:1") &&
					c.AllowUnconfined && c.OnInvalid == "warn" && c.MinMode == ModeDetect &&
					reflect.DeepEqual(c.SeccompProfiles(), []string{"runtime-default", "strict", "notify", "unconfined", "nginx"})
			}},
		{name: "unknown field", yaml: "forceMonitr: {}\n", wantErr: "forceMonitr"},
		{name: "bad onInvalid", yaml: "onInvalid: ignore\n", wantErr: `onInvalid "ignore"`},
		{name: "bad minMode", yaml: "minMode: block\n", wantErr: `minMode "block"`},
		{name: "bad defaultMode", yaml: "defaultMode: kill\n", wantErr: `defaultMode "kill": allowed values are "learn", "detect", "enforce"`},
		{name: "bad profile name", yaml: "profiles: ['../x']\n", wantErr: "profiles"},
		{name: "priority", yaml: "priority:\n  max: 60\n  namespaces:\n    - {match: kube-system, min: 0, max: 100}\n  unmonitored: true\n",
			check: func(c NodeConfig) bool {
				lo, hi := c.PriorityBounds("shop")
				klo, khi := c.PriorityBounds("kube-system")
				return lo == 0 && hi == 60 && klo == 0 && khi == 100 && c.Priority.Unmonitored
			}},
		{name: "priority max 0 allowed", yaml: "priority: {max: 0}\n",
			check: func(c NodeConfig) bool { lo, hi := c.PriorityBounds("x"); return lo == 0 && hi == 0 }},
		{name: "priority max above 100", yaml: "priority: {max: 120}\n", wantErr: "priority.max 120: allowed values are integers from 0 to 100"},
		{name: "priority min negative", yaml: "priority: {min: -1}\n", wantErr: "priority.min -1: allowed values are integers from 0 to 100"},
		{name: "priority min above max", yaml: "priority: {min: 70, max: 60}\n", wantErr: "priority: min 70 is above max 60"},
		{name: "priority min above default max of a namespace", yaml: "priority:\n  max: 40\n  namespaces: [{match: a, min: 50}]\n",
			wantErr: "priority.namespaces[0]: min 50 is above max 40"},
		{name: "priority namespace max out of range", yaml: "priority:\n  namespaces: [{match: a, max: 101}]\n",
			wantErr: "priority.namespaces[0].max 101: allowed values are integers from 0 to 100"},
		{name: "priority namespace without match", yaml: "priority:\n  namespaces: [{max: 10}]\n", wantErr: "priority.namespaces[0].match: empty"},
		{name: "priority not an integer", yaml: "priority: {max: high}\n", wantErr: "high"},
		{name: "priority unknown field", yaml: "priority: {maximum: 60}\n", wantErr: "maximum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseNodeConfig([]byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("config %+v fails its check", c)
			}
		})
	}
}

func TestLoadNodeConfigMissingFile(t *testing.T) {
	c, err := LoadNodeConfig(t.TempDir() + "/none.yaml")
	if err != nil || c.Forces("any", "any") {
		t.Fatalf("missing file: %+v, %v", c, err)
	}
}

func TestExampleNodeConfigParses(t *testing.T) {
	c, err := LoadNodeConfig("../install/node-config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Forces("payments", "") || !c.Forces("prod-eu", "") || !c.Forces("", "registry.example.com/finance/ledger:2") || c.Forces("dev", "nginx") {
		t.Errorf("example config forces the wrong pods: %+v", c.ForceMonitor)
	}
	if c.MinMode != ModeDetect || c.OnInvalid != OnInvalidReject || c.ProfileDir != "/etc/vigil/seccomp" || c.SeccompFloor != SeccompNotify {
		t.Errorf("example config: %+v", c)
	}
	if lo, hi := c.PriorityBounds("shop"); lo != 0 || hi != 60 || c.Priority.Unmonitored {
		t.Errorf("example config: priority %d..%d unmonitored %v, want 0..60 monitored only", lo, hi, c.Priority.Unmonitored)
	}
	if _, hi := c.PriorityBounds("kube-system"); hi != 100 {
		t.Errorf("example config: kube-system max %d, want 100", hi)
	}
	if c.RealtimeMax == nil || *c.RealtimeMax != 16 || c.BlockMax == nil || *c.BlockMax != 0 {
		t.Errorf("example config: realtimeMax %v blockMax %v, want 16 and 0", c.RealtimeMax, c.BlockMax)
	}
}

// TestParseSeccompFloor: a pod the node forces to be monitored cannot lower
// its seccomp profile below the node's floor, whatever key form or
// container override names it; unforced pods are not bound by it.
func TestParseSeccompFloor(t *testing.T) {
	node := func(floor string, allowUnconfined bool) NodeConfig {
		c := NodeConfig{SeccompFloor: floor, AllowUnconfined: allowUnconfined, Profiles: []string{"web", "unconfined", "notify"}}
		c.ForceMonitor.Namespaces = []string{"prod"}
		return c
	}
	tests := []struct {
		name      string
		pod, ctr  map[string]string
		namespace string
		node      NodeConfig
		want      string // the profile, or "" when rejected
		wantFloor string
		allowed   []string // with want "": substrings of the error
		refused   []string // with want "": values the error must not offer
	}{
		{name: "forced, default floor: runtime-default refused", pod: map[string]string{"vigil.dev/seccomp": "runtime-default"},
			namespace: "prod", node: node("", false), wantFloor: "notify", allowed: []string{`"notify"`, `"web"`, "seccompFloor", `below "notify"`},
			refused: []string{`"runtime-default", `, `"strict"`}},
		{name: "forced: pod form refused", pod: map[string]string{"vigil.dev/seccomp/pod": "strict"},
			namespace: "prod", node: node("", false), wantFloor: "notify", allowed: []string{"vigil.dev/seccomp/pod", `"strict"`}},
		{name: "forced: container override refused", pod: map[string]string{"vigil.dev/seccomp": "notify"},
			ctr:       map[string]string{"vigil.dev/seccomp/container.app": "runtime-default"},
			namespace: "prod", node: node("", false), wantFloor: "notify", allowed: []string{"vigil.dev/seccomp/container.app"}},
		{name: "forced: unconfined refused even when the node allows it", pod: map[string]string{"vigil.dev/seccomp": "unconfined"},
			namespace: "prod", node: node("runtime-default", true), wantFloor: "runtime-default", allowed: []string{`"runtime-default"`, `"strict"`, `"notify"`}},
		{name: "forced: notify kept", pod: map[string]string{"vigil.dev/seccomp": "notify"},
			namespace: "prod", node: node("", false), want: "notify", wantFloor: "notify"},
		{name: "forced: no annotation gets notify", namespace: "prod", node: node("", false), want: "notify", wantFloor: "notify"},
		{name: "forced: named profile allowed, applied with the floor", pod: map[string]string{"vigil.dev/seccomp": "web"},
			namespace: "prod", node: node("", false), want: "web", wantFloor: "notify"},
		{name: "forced, floor runtime-default: strict allowed", pod: map[string]string{"vigil.dev/seccomp": "strict"},
			namespace: "prod", node: node("runtime-default", false), want: "strict", wantFloor: "runtime-default"},
		{name: "forced, floor strict: notify refused", pod: map[string]string{"vigil.dev/seccomp": "notify"},
			namespace: "prod", node: node("strict", false), wantFloor: "strict", allowed: []string{`"strict"`}},
		{name: "forced, no floor: runtime-default allowed", pod: map[string]string{"vigil.dev/seccomp": "runtime-default"},
			namespace: "prod", node: node("unconfined", false), want: "runtime-default"},
		{name: "unforced pod: runtime-default allowed", pod: map[string]string{"ebpf-monitor": "true", "vigil.dev/seccomp": "runtime-default"},
			namespace: "dev", node: node("", false), want: "runtime-default"},
		{name: "unconfined.json in the profile dir is not unconfined", pod: map[string]string{"vigil.dev/seccomp": "unconfined"},
			namespace: "dev", node: node("", false), allowed: []string{`"web"`}, refused: []string{`"unconfined"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.pod, tt.ctr, "app", tt.namespace, "", tt.node)
			if tt.want != "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if p.Seccomp != tt.want || p.SeccompFloor != tt.wantFloor {
					t.Errorf("seccomp %q floor %q, want %q floor %q", p.Seccomp, p.SeccompFloor, tt.want, tt.wantFloor)
				}
				return
			}
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("Parse = %+v, %v; want an *Error", p, err)
			}
			for _, s := range append([]string{"vigil.dev/seccomp", "allowed values"}, tt.allowed...) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error lacks %s: %v", s, err)
				}
			}
			for _, s := range tt.refused {
				if strings.Contains(ae.Allowed, s) {
					t.Errorf("error offers %s: %v", s, err)
				}
			}
			// Warn mode falls back to the default profile, raised to the
			// floor when below it (strict).
			node := tt.node
			node.OnInvalid = OnInvalidWarn
			want := "notify"
			if node.SeccompFloor == "strict" {
				want = "strict"
			}
			if p, err := Parse(tt.pod, tt.ctr, "app", tt.namespace, "", node); err != nil || (tt.namespace == "prod" && p.Seccomp != want) {
				t.Errorf("warn mode: %+v, %v", p, err)
			}
		})
	}
}

func TestSeccompFloorConfig(t *testing.T) {
	tests := []struct{ yaml, wantErr string }{
		{"seccompFloor: notify\n", ""},
		{"seccompFloor: runtime-default\n", ""},
		{"seccompFloor: unconfined\n", ""},
		{"seccompFloor: low\n", `seccompFloor "low": allowed values are "notify", "strict", "runtime-default", "unconfined"`},
		{"profiles: [unconfined]\n", `profiles: name "unconfined": the name of a built-in profile`},
		{"profiles: [runtime-default]\n", `profiles: name "runtime-default"`},
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			_, err := ParseNodeConfig([]byte(tt.yaml))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}
