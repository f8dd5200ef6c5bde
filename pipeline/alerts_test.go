package pipeline

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata")

var alertT0 = time.Date(2026, 11, 28, 22, 1, 18, 337867483, time.UTC)

func escapeVerdict() *detector.Verdict {
	return &detector.Verdict{
		ID: "3f2a9c1e5b7d0a4c6e8f1a2b", Time: alertT0, CgroupID: 120,
		Container: &event.Container{ID: "c0ffee", Name: "web", Pod: "shop-7d9f", Namespace: "payments", Image: "example/shop:1.2",
			PodUID: "5f0c-91aa", PodLabels: map[string]string{"app": "shop", "tier": "front"}, Node: "node-1",
			OwnerKind: "Deployment", OwnerName: "shop"},
		PID: 4242, TID: 4243, Comm: "sh", Class: detector.ClassFSEscape, Severity: detector.Critical,
		Rule: "host-root-read", Score: 1, Message: "read of the host's root through /proc/1/root",
		Evidence: []detector.Evidence{{Seq: 7, Time: alertT0, PID: 4242, TID: 4243, Comm: "sh", Syscall: "openat",
			Path: "/proc/1/root/etc/shad\now\x1b[31m", Argv: []string{"cat", "/proc/1/root/etc/shadow"}}},
		Mode: "enforce", Actions: []string{"kill-process", "deny-syscall"},
	}
}

func alertInputs() []func(s Sink) {
	v1 := escapeVerdict()
	v2 := &detector.Verdict{
		ID: "a1b2c3d4e5f6a7b8c9d0e1f2", Time: alertT0.Add(time.Second), CgroupID: 121,
		Container: &event.Container{ID: "beef", Name: "api", Pod: "api-0", Namespace: "prod-eu"},
		PID:       77, Comm: "curl", Class: detector.ClassNetwork, Severity: detector.Medium, Rule: "unauthorized-dns",
		Message:  "DNS query to a resolver that is not allowed",
		Evidence: []detector.Evidence{{Syscall: "connect", PID: 77, Addr: "[::ffff:8.8.8.8]:53"}},
		Mode:     "detect", WouldAct: []string{"deny-connect"},
	}
	v3 := &detector.Verdict{
		ID: "00112233445566778899aabb", Time: alertT0.Add(2 * time.Second), CgroupID: 122, Class: detector.ClassCPU,
		Severity: detector.Low, Rule: "cpu-abuse", Message: "CPU use above 90% for 30s <all threads> & more",
		Evidence: []detector.Evidence{{Time: alertT0, Note: "cpu=0.97"}},
	}
	v4 := &detector.Verdict{
		ID: "ffeeddccbbaa998877665544", Time: alertT0.Add(3 * time.Second), Class: detector.ClassPrivesc,
		Severity: detector.High, Rule: "setuid-root", Message: "setuid(0)", Container: &event.Container{ID: "dead"},
		Evidence: []detector.Evidence{{Syscall: "connect", PID: 9, Addr: "unix:/run/docker.sock"}},
		Mode:     "enforce", Actions: []string{"kill"},
	}
	return []func(s Sink){
		func(s Sink) { s.Verdict(v1) },
		func(s Sink) { s.Verdict(v2) },
		func(s Sink) { s.Event(&event.Event{Seq: 1}) }, // not an alert
		func(s Sink) { s.Gap(Gap{CgroupID: 1, Count: 3}) },
		func(s Sink) {
			s.Action(control.Record{Verdict: v1.ID, CgroupID: 120, ContainerID: "c0ffee", Action: control.ActKillProcess,
				Detail: "pid 4242", Effective: alertT0.Add(3 * time.Millisecond), Latency: 3 * time.Millisecond})
		},
		func(s Sink) {
			s.Action(control.Record{Verdict: v1.ID, CgroupID: 120, ContainerID: "c0ffee", Action: control.ActDenySyscall,
				Error: "no notify fd", Effective: alertT0.Add(4 * time.Millisecond), Latency: 4 * time.Millisecond})
		},
		func(s Sink) { s.Verdict(v3) },
		func(s Sink) { s.Verdict(v4) },
		func(s Sink) {
			s.Action(control.Record{CgroupID: 121, ContainerID: "beef", Action: control.ActThrottle, Undo: true,
				Detail: "quiet for 30s", Effective: alertT0.Add(40 * time.Second)})
		},
		func(s Sink) {
			s.Action(control.Record{Verdict: "forgotten", CgroupID: 9, Action: control.ActFreeze, Effective: alertT0.Add(41 * time.Second)})
		},
	}
}

func TestAlertsGolden(t *testing.T) {
	var out bytes.Buffer
	s := NewAlerts(&out, "node-1")
	for _, in := range alertInputs() {
		in(s)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if s.Written() != 8 {
		t.Errorf("written %d lines, want 8", s.Written())
	}
	golden := filepath.Join("testdata", "alerts.golden.jsonl")
	if *updateGolden {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./pipeline -run TestAlertsGolden -update writes it)", err)
	}
	if got := out.String(); got != string(want) {
		t.Errorf("alerts differ from %s (-update rewrites it):\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
}

// TestAlertShape checks what falcosidekick needs of every line, whatever
// the golden file says.
func TestAlertShape(t *testing.T) {
	var out bytes.Buffer
	s := NewAlerts(&out, "node-1")
	for _, in := range alertInputs() {
		in(s)
	}
	s.Flush()
	prios := map[string]bool{"Emergency": true, "Alert": true, "Critical": true, "Error": true, "Warning": true,
		"Notice": true, "Informational": true, "Debug": true}
	for i, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, line)
		}
		for _, k := range []string{"time", "rule", "priority", "output", "output_fields", "tags", "hostname", "source", "vigil.actions"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d: no %q: %s", i, k, line)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil {
			t.Errorf("line %d: time: %v", i, err)
		}
		if !prios[m["priority"].(string)] {
			t.Errorf("line %d: priority %q is not Falco's", i, m["priority"])
		}
		if o := m["output"].(string); strings.ContainsAny(o, "\n\r\x1b\x00") {
			t.Errorf("line %d: output has control characters: %q", i, o)
		}
		if _, ok := m["output_fields"].(map[string]any); !ok {
			t.Errorf("line %d: output_fields is not an object", i)
		}
	}
}

func TestFalcoPriority(t *testing.T) {
	for sev, want := range map[detector.Severity]string{detector.Critical: "Critical", detector.High: "Error",
		detector.Medium: "Warning", detector.Low: "Notice", 0: "Debug"} {
		if got := FalcoPriority(sev); got != want {
			t.Errorf("%v: %q, want %q", sev, got, want)
		}
	}
}

func TestOneLine(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"plain":     {"/etc/passwd", "/etc/passwd"},
		"newline":   {"a\nb\r", `a\nb\r`},
		"escape":    {"\x1b[2J", `\x1b[2J`},
		"nul":       {"a\x00", `a\x00`},
		"c1":        {"a\u0085b", `a\u0085b`},
		"separator": {"a\u2028b", `a\u2028b`},
		"invalid":   {"a\xffb", `a\xffb`},
		"backslash": {`a\nb`, `a\\nb`},
		"unicode":   {"é→ü", "é→ü"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := oneLine(tc.in); got != tc.want {
				t.Errorf("oneLine(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestAlertsRecentBounded(t *testing.T) {
	a := newAlerter("h")
	for i := range maxRecent + 10 {
		a.remember(&Alert{VerdictID: fmt.Sprint("id", i)})
	}
	if _, ok := a.recent["id0"]; ok {
		t.Error("the oldest verdict is still remembered")
	}
	if len(a.recent) != maxRecent || len(a.order) != maxRecent {
		t.Errorf("remembered %d verdicts (%d ids), want %d", len(a.recent), len(a.order), maxRecent)
	}
}

// TestAlertTagsFromRule: the rule's tags and maturity reach the alert's tags.
func TestAlertTagsFromRule(t *testing.T) {
	v := escapeVerdict()
	v.Tags, v.Maturity, v.Mode, v.Actions, v.WouldAct = []string{"T1611", "container"}, "stable", "detect", nil, []string{"kill-process"}
	got := strings.Join(verdictTags(v), " ")
	if want := "fs-escape T1611 container maturity_stable mode:detect would_act:kill-process"; got != want {
		t.Errorf("tags %q, want %q", got, want)
	}
}
