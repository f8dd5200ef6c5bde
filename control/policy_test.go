package control

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"vigil.dev/vigil/detector"
)

// examplePolicy is the example of docs/response.md.
const examplePolicy = `# what: the response ladder of pods that name this policy
restoreAfter: 45s
throttle: {shares: 4, quota: 25%}
denySyscall: {errno: EACCES, syscalls: [ptrace, mount]}
responses:
  - name: cpu
    when: {class: cpu-abuse}
    actions: [throttle]
  - name: repeated
    when: {class: network, repeat: 3}
    actions: [kill]
  - name: network
    when: {class: network, rule: [dns-unauthorized-resolver, "metadata-*"]}
    actions: [deny-connect]
  - name: escape
    when: {class: [privesc, fs-escape], severity: high}
    actions: [kill-process, deny-syscall]
  - name: scored
    when: {score: 0.9}
    actions: freeze
  - name: medium
    when: {severity: medium}
    actions: [alert]
`

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy("strict", "strict.yaml", []byte(examplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "strict" || p.RestoreAfter != 45*time.Second {
		t.Errorf("name %q restoreAfter %s", p.Name, p.RestoreAfter)
	}
	if p.Throttle != (ThrottleSpec{Shares: 4, QuotaPercent: 25}) {
		t.Errorf("throttle %+v", p.Throttle)
	}
	if p.DenySyscall.Errno != syscall.EACCES || !slices.Equal(p.DenySyscall.Syscalls, []string{"ptrace", "mount"}) {
		t.Errorf("denySyscall %+v", p.DenySyscall)
	}
	var names []string
	for _, r := range p.Responses {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"cpu", "repeated", "network", "escape", "scored", "medium"}) {
		t.Fatalf("responses %v", names)
	}
	esc := p.Responses[3]
	if esc.Line != 15 || !slices.Equal(esc.Actions, []Action{ActKillProcess, ActDenySyscall}) ||
		esc.When.Severity != detector.High || !slices.Equal(esc.When.Classes, []detector.Class{detector.ClassPrivesc, detector.ClassFSEscape}) {
		t.Errorf("escape %+v", esc)
	}
	if p.Responses[1].When.Repeat != 3 || p.Responses[4].When.Score != 0.9 || p.Responses[4].Actions[0] != ActFreeze {
		t.Errorf("repeat/score %+v %+v", p.Responses[1], p.Responses[4])
	}
}

func TestParsePolicyDefaults(t *testing.T) {
	p, err := ParsePolicy("empty", "empty.yaml", []byte("# nothing\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.RestoreAfter != DefaultRestoreAfter || p.Throttle.Shares != DefaultThrottleShares ||
		p.Throttle.QuotaPercent != DefaultThrottleQuota || p.DenySyscall.Errno != syscall.EPERM || len(p.Responses) != 0 {
		t.Errorf("defaults %+v", p)
	}
	if r := p.Match(&detector.Verdict{Class: detector.ClassPrivesc, Severity: detector.Critical}, 1); r != nil {
		t.Errorf("an empty policy matched %q", r.Name)
	}
	p, err = ParsePolicy("q", "q.yaml", []byte("throttle: {quota: none}\n"))
	if err != nil || p.Throttle.QuotaPercent != 0 || p.Throttle.Shares != DefaultThrottleShares {
		t.Errorf("quota none: %+v %v", p, err)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	tests := map[string]struct {
		yaml string
		want []string // all in the error
	}{
		"unknown top-level key": {"restoreAfter: 30s\nrestore: 5s\n",
			[]string{"p.yaml:2:", `"restore"`, "restoreAfter, throttle, denySyscall, responses"}},
		"unknown when key": {"responses:\n  - name: a\n    when: {klass: network}\n    actions: [alert]\n",
			[]string{"p.yaml:3:", `"klass"`, "class, severity, rule, score, repeat"}},
		"unknown response key": {"responses:\n  - name: a\n    do: [alert]\n",
			[]string{"p.yaml:3:", `"do"`, "name, when, actions"}},
		"unknown action": {"responses:\n  - name: a\n    actions: [alert, nuke]\n",
			[]string{"p.yaml:3:", `"nuke"`, "alert, throttle, deny-syscall, deny-connect, freeze, kill-process, kill"}},
		"unknown class": {"responses:\n  - name: a\n    when:\n      class: [network, cpu]\n    actions: [alert]\n",
			[]string{"p.yaml:4:", `"cpu"`, "cpu-abuse, network, fs-escape, privesc, anomaly"}},
		"unknown severity": {"responses:\n  - name: a\n    when: {severity: severe}\n    actions: [alert]\n",
			[]string{"p.yaml:3:", `"severe"`, "low, medium, high, critical"}},
		"bad repeat": {"responses:\n  - name: a\n    when: {repeat: 0}\n    actions: [alert]\n",
			[]string{"p.yaml:3:", `"0"`, "integers >= 1"}},
		"bad score": {"responses:\n  - name: a\n    when: {score: high}\n    actions: [alert]\n",
			[]string{"p.yaml:3:", `"high"`, "numbers >= 0"}},
		"missing actions": {"responses:\n  - name: a\n    when: {class: network}\n",
			[]string{"p.yaml:2:", `"a"`, "missing actions", "alert, throttle"}},
		"missing name": {"responses:\n  - actions: [alert]\n",
			[]string{"p.yaml:2:", "without a name"}},
		"duplicate name": {"responses:\n  - {name: a, actions: [alert]}\n  - {name: a, actions: [kill]}\n",
			[]string{"p.yaml:3:", `"a"`, "line 2"}},
		"bad restoreAfter": {"restoreAfter: soon\n",
			[]string{"p.yaml:1:", `"soon"`, "durations above zero"}},
		"bad shares": {"throttle:\n  shares: 1\n",
			[]string{"p.yaml:2:", `"1"`, "2 to 262144"}},
		"bad quota": {"throttle: {quota: 10}\n",
			[]string{"p.yaml:1:", `"10"`, "percentage of one CPU"}},
		"unknown throttle key": {"throttle: {cpus: 1}\n",
			[]string{"p.yaml:1:", `"cpus"`, "shares, quota"}},
		"bad errno": {"denySyscall:\n  errno: NOPE\n",
			[]string{"p.yaml:2:", `"NOPE"`, "EPERM"}},
		"bad syscall": {"denySyscall:\n  syscalls: [ptrace, frobnicate]\n",
			[]string{"p.yaml:2:", `"frobnicate"`, "syscall names"}},
		"responses not a list": {"responses: {name: a}\n",
			[]string{"p.yaml:1:", "want a list"}},
		"not a mapping": {"- a\n",
			[]string{"p.yaml:1:", "a policy is a mapping", "restoreAfter, throttle"}},
		"yaml syntax": {"responses: [\n",
			[]string{"p.yaml:", "line"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParsePolicy("p", "p.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestDefaultPolicy(t *testing.T) {
	p := DefaultPolicy()
	if p.Name != "default" || p.RestoreAfter != 30*time.Second || p.Throttle != (ThrottleSpec{Shares: 2, QuotaPercent: 10}) ||
		p.DenySyscall.Errno != syscall.EPERM || len(p.DenySyscall.Syscalls) != 0 {
		t.Fatalf("default policy %+v", p)
	}
	tests := map[string]struct {
		v    detector.Verdict
		want []Action // nil: no match (alert)
	}{
		"cpu abuse":             {detector.Verdict{Class: detector.ClassCPU, Severity: detector.Medium, Rule: "cpu-miner"}, []Action{ActThrottle}},
		"unauthorized resolver": {detector.Verdict{Class: detector.ClassNetwork, Severity: detector.Medium, Rule: "dns-unauthorized-resolver"}, []Action{ActDenyConnect}},
		"metadata endpoint":     {detector.Verdict{Class: detector.ClassNetwork, Severity: detector.Medium, Rule: "metadata-endpoint"}, []Action{ActDenyConnect}},
		"miner pool":            {detector.Verdict{Class: detector.ClassNetwork, Severity: detector.Low, Rule: "miner-pool-connection"}, []Action{ActDenyConnect}},
		"network high":          {detector.Verdict{Class: detector.ClassNetwork, Severity: detector.High, Rule: "reverse-shell"}, []Action{ActDenyConnect}},
		"network medium":        {detector.Verdict{Class: detector.ClassNetwork, Severity: detector.Medium, Rule: "port-scan"}, []Action{ActAlert}},
		"privesc high":          {detector.Verdict{Class: detector.ClassPrivesc, Severity: detector.High, Rule: "setuid-binary"}, []Action{ActKillProcess, ActDenySyscall}},
		"fs escape critical":    {detector.Verdict{Class: detector.ClassFSEscape, Severity: detector.Critical, Rule: "core-pattern"}, []Action{ActKillProcess, ActDenySyscall}},
		"privesc medium":        {detector.Verdict{Class: detector.ClassPrivesc, Severity: detector.Medium, Rule: "x"}, []Action{ActAlert}},
		"anomaly low":           {detector.Verdict{Class: detector.ClassAnomaly, Severity: detector.Low, Rule: "model"}, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := p.Match(&tc.v, 1)
			var got []Action
			if r != nil {
				got = r.Actions
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLoadPolicies(t *testing.T) {
	m, err := LoadPolicies("")
	if err != nil || len(m) != 1 || m["default"] == nil {
		t.Fatalf("no dir: %v %v", m, err)
	}
	m, err = LoadPolicies(filepath.Join(t.TempDir(), "missing"))
	if err != nil || len(m) != 1 || m["default"] == nil {
		t.Fatalf("missing dir: %v %v", m, err)
	}

	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("strict.yaml", examplePolicy)
	write("default.yaml", "restoreAfter: 1m\n")
	write("README.md", "not a policy")
	m, err = LoadPolicies(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m["strict"].Throttle.Shares != 4 || m["default"].RestoreAfter != time.Minute {
		t.Errorf("loaded %v", m)
	}
	if m["default"].File != filepath.Join(dir, "default.yaml") {
		t.Errorf("default from %q", m["default"].File)
	}

	write("broken.yaml", "responses:\n  - name: a\n    actions: [explode]\n")
	_, err = LoadPolicies(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "broken.yaml")+":3:") {
		t.Errorf("broken file: %v", err)
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"metadata-endpoint", "metadata-endpoint", true},
		{"metadata-*", "metadata-endpoint", true},
		{"*-endpoint", "metadata-endpoint", true},
		{"*", "", true},
		{"m*a*t", "metadata-endpoint", true},
		{"m*a*x", "metadata-endpoint", false},
		{"dns-*", "metadata-endpoint", false},
		{"metadata", "metadata-endpoint", false},
	}
	for _, tc := range tests {
		if got := globMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.pattern, tc.s, got)
		}
	}
}
