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
			want: with(func(p *Policy) { p.Monitor, p.Forced, p.Seccomp = true, true, "notify" })},
		{name: "node namespace pattern does not match", namespace: "dev", node: forceNS, want: def},
		{name: "node forces image with slashes", image: "registry.local/payments/api:1.2", node: forceImg,
			want: with(func(p *Policy) { p.Monitor, p.Forced, p.Seccomp = true, true, "notify" })},
		{name: "forced: learn raised to node minimum", pod: map[string]string{"vigil.dev/mode": "learn"}, namespace: "prod-1", node: forceEnforce,
			want: with(func(p *Policy) { p.Monitor, p.Forced, p.Seccomp, p.Mode = true, true, "notify", ModeDetect })},
		{name: "forced: pod may raise above minimum", pod: map[string]string{"vigil.dev/mode": "enforce"}, namespace: "prod-1", node: forceEnforce,
			want: with(func(p *Policy) { p.Monitor, p.Forced, p.Seccomp, p.Mode = true, true, "notify", ModeEnforce })},
		{name: "minimum holds for unforced pods too", pod: map[string]string{"ebpf-monitor": "true", "vigil.dev/mode": "learn"}, node: forceEnforce,
			want: with(func(p *Policy) { p.Monitor, p.Seccomp, p.Mode = true, "notify", ModeDetect })},
		{name: "node default mode", pod: map[string]string{"ebpf-monitor": "true"}, node: NodeConfig{DefaultMode: ModeEnforce},
			want: with(func(p *Policy) { p.Monitor, p.Seccomp, p.Mode = true, "notify", ModeEnforce })},
		{name: "priority", pod: map[string]string{"vigil.dev/priority": "80"},
			want: with(func(p *Policy) { p.Priority, p.PrioritySet = 80, true })},
		{name: "priority bounds", pod: map[string]string{"vigil.dev/priority": "0"},
			want: with(func(p *Policy) { p.Priority, p.PrioritySet = 0, true })},
		{name: "policy and mode", pod: map[string]string{"vigil.dev/policy": "web-strict", "vigil.dev/mode": "learn"},
			want: with(func(p *Policy) { p.PolicyName, p.Mode = "web-strict", ModeLearn })},
		{name: "named profile and unconfined allowed", ctr: map[string]string{"vigil.dev/seccomp": "nginx"}, node: named,
			want: with(func(p *Policy) { p.Seccomp = "nginx" })},
		{name: "unconfined allowed", pod: map[string]string{"vigil.dev/seccomp": "unconfined"}, node: named,
			want: with(func(p *Policy) { p.Seccomp = "unconfined" })},
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
	if c.MinMode != ModeDetect || c.OnInvalid != OnInvalidReject || c.ProfileDir != "/etc/vigil/seccomp" {
		t.Errorf("example config: %+v", c)
	}
}
