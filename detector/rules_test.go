package detector

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

func nr(t testing.TB, name string) int32 {
	t.Helper()
	n, ok := event.SyscallNr(name)
	if !ok {
		t.Fatalf("no syscall %q in the native ABI", name)
	}
	return int32(n)
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// ev builds an event of pid 100 in cgroup 7.
func ev(t testing.TB, seq int, name string, mod func(e *event.Event)) *event.Event {
	e := &event.Event{Seq: uint64(seq), Time: t0.Add(time.Duration(seq) * time.Millisecond), CgroupID: 7,
		PID: 100, TID: 100, Comm: "app", Nr: nr(t, name)}
	if mod != nil {
		mod(e)
	}
	return e
}

func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func TestDefaultRulesCoverEveryClass(t *testing.T) {
	e := newEngine(t, Config{})
	rs := e.rs.Load()
	per := map[Class]int{}
	for _, r := range rs.rules {
		per[r.class]++
	}
	for _, r := range rs.samples {
		per[r.class]++
	}
	for _, c := range []Class{ClassCPU, ClassNetwork, ClassFSEscape, ClassPrivesc} {
		if per[c] < 4 {
			t.Errorf("class %s: %d default rules, want at least 4", c, per[c])
		}
	}
}

func TestRuleErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"yaml syntax", "rules:\n  - rule: x\n   class: [", "bad.yaml"},
		{"top-level key", "rulez: []\n", `bad.yaml:1: unknown top-level key "rulez"`},
		{"unnamed rule", "rules:\n  - class: privesc\n", "bad.yaml:2: rule without a name"},
		{"unknown class", "rules:\n  - rule: x\n    class: evil\n    severity: high\n    syscalls: [bpf]\n", `bad.yaml:3: rule "x": class "evil": unknown, use one of cpu-abuse, network, fs-escape, privesc, anomaly`},
		{"unknown severity", "rules:\n  - rule: x\n    class: privesc\n    severity: huge\n    syscalls: [bpf]\n", `bad.yaml:4: rule "x": severity "huge": unknown, use one of low, medium, high, critical`},
		{"missing syscalls", "rules:\n  - rule: x\n    class: privesc\n    severity: high\n", `bad.yaml:2: rule "x": missing "syscalls"`},
		{"unknown syscall", "rules:\n  - rule: x\n    class: privesc\n    severity: high\n    syscalls: [bpff]\n", `bad.yaml:5: syscall "bpff": unknown in every ABI`},
		{"unknown field", "rules:\n  - rule: x\n    class: privesc\n    severity: high\n    syscalls: [bpf]\n    when: {pth: /x}\n", `bad.yaml:6: unknown condition field "pth"; allowed:`},
		{"unknown key", "rules:\n  - rule: x\n    class: privesc\n    severity: high\n    syscalls: [bpf]\n    wehn: {}\n", `bad.yaml:6: rule "x": unknown key "wehn"`},
		{"undefined list", "rules:\n  - rule: x\n    class: privesc\n    severity: high\n    syscalls: [open]\n    when: {path: $nolist}\n", `bad.yaml:6: list "nolist" is not defined`},
		{"undefined macro", "rules:\n  - rule: x\n    class: privesc\n    severity: high\n    syscalls: [open]\n    when: {macro: nomacro}\n", `bad.yaml:6: macro "nomacro" is not defined`},
		{"macro cycle", "macros:\n  a: {macro: b}\n  b: {macro: a}\nrules:\n  - rule: x\n    class: privesc\n    severity: high\n    syscalls: [open]\n    when: {macro: a}\n", `refers to itself`},
		{"bad number", "rules:\n  - rule: x\n    class: privesc\n    severity: high\n    syscalls: [open]\n    when: {arg1: {mask_any: O_WRITE}}\n", `bad.yaml:6: mask_any: "O_WRITE" is not a number or a known constant`},
		{"bad number op", "rules:\n  - rule: x\n    class: privesc\n    severity: high\n    syscalls: [open]\n    when: {arg1: {bigger: 3}}\n", `number test "bigger": unknown`},
		{"bad errno", "rules:\n  - rule: x\n    class: privesc\n    severity: high\n    syscalls: [open]\n    when: {errno: ENOPE}\n", `errno: "ENOPE" is not an errno name`},
		{"bad ip", "rules:\n  - rule: x\n    class: network\n    severity: high\n    syscalls: [connect]\n    when: {ip: 10.0.0/8}\n", `ip: "10.0.0/8": want an address or a CIDR prefix`},
		{"bad rate", "rules:\n  - rule: x\n    class: network\n    severity: high\n    syscalls: [connect]\n    rate: {count: 0, window: 1s}\n", `rate count "0": want an integer >= 1`},
		{"bad window", "rules:\n  - rule: x\n    class: network\n    severity: high\n    syscalls: [connect]\n    rate: {count: 3, window: soon}\n", `rate window "soon"`},
		{"sample with syscalls", "rules:\n  - sample: x\n    class: cpu-abuse\n    severity: high\n    syscalls: [bpf]\n", `"syscalls" belongs to event rules`},
		{"sample field", "rules:\n  - sample: x\n    class: cpu-abuse\n    severity: high\n    when: {cpu: {ge: 1}}\n", `unknown sample field "cpu"`},
		{"sample without tests", "rules:\n  - sample: x\n    class: cpu-abuse\n    severity: high\n", `a sample rule needs when`},
		{"string test", "rules:\n  - rule: x\n    class: privesc\n    severity: high\n    syscalls: [open]\n    when: {path: {regex: x}}\n", `string test "regex": unknown`},
		{"bool field", "rules:\n  - rule: x\n    class: privesc\n    severity: high\n    syscalls: [open]\n    when: {ok: maybe}\n", `ok: want true or false`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "bad.yaml")
			if err := os.WriteFile(path, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := New(Config{NoDefaultRules: true, RuleFiles: []string{path}})
			if err == nil {
				t.Fatalf("no error for %q", tc.text)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\n does not contain %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "bad.yaml") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	if _, err := New(Config{RuleFiles: []string{"/nonexistent/rules.yaml"}}); err == nil {
		t.Error("a missing rule file gave no error")
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"/proc/1/root*", "/proc/1/root/etc/shadow", true},
		{"/proc/1/root*", "/proc/12/root", false},
		{"/proc/*/root/*", "/proc/42/root/etc", true},
		{"/proc/*/root/*", "/proc/42/rootx", false},
		{"*/release_agent", "/sys/fs/cgroup/memory/release_agent", true},
		{"*/sh", "/bin/bash", false},
		{"/dev/sd?", "/dev/sda", true},
		{"/dev/sd?", "/dev/sda1", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXcYYb", false},
		{"", "", true},
		{"*", "", true},
	} {
		t.Run(tc.p+"~"+tc.s, func(t *testing.T) {
			if got := glob(tc.p, tc.s); got != tc.want {
				t.Errorf("glob(%q, %q) = %v", tc.p, tc.s, got)
			}
			var m strMatcher
			m.addGlob(tc.p)
			if got := m.match(tc.s); got != tc.want {
				t.Errorf("strMatcher(%q).match(%q) = %v", tc.p, tc.s, got)
			}
		})
	}
}

// TestConditions checks each condition field and combinator on one rule
// file of small rules.
func TestConditions(t *testing.T) {
	rules := `
lists:
  bad_ips: [203.0.113.0/24, "2001:db8::/32"]
  tools: ["*/nc"]
macros:
  wronly: {arg2: {mask_any: O_WRONLY|O_RDWR}}
rules:
  - {rule: mask, class: privesc, severity: high, syscalls: [mprotect], when: {arg2: {mask_all: PROT_WRITE|PROT_EXEC}}}
  - {rule: errno, class: privesc, severity: low, syscalls: [setuid], when: {errno: [EPERM]}}
  - {rule: okonly, class: privesc, severity: low, syscalls: [capset], when: {ok: true}}
  - {rule: macro, class: fs-escape, severity: low, syscalls: [openat], when: {path: {prefix: /etc/}, macro: wronly}}
  - {rule: cidr, class: network, severity: low, syscalls: [connect], when: {ip: $bad_ips, port: {ge: 1000}}}
  - {rule: family, class: network, severity: low, syscalls: [sendto], when: {family: unix}}
  - {rule: argv, class: network, severity: low, syscalls: [execve], when: {any: [{path: $tools}, {argv: "--exec=*"}]}}
  - {rule: notcomm, class: privesc, severity: low, syscalls: [ptrace], when: {not: {comm: [gdb, strace]}}}
  - {rule: ctr, class: privesc, severity: low, syscalls: [chroot], when: {container.image: "registry/app:*"}}
  - {rule: ret, class: privesc, severity: low, syscalls: [getuid], when: {ret: {in: [0]}}}
`
	e := newEngine(t, Config{NoDefaultRules: true, RuleTexts: [][]byte{[]byte(rules)}})
	app := &event.Container{ID: "c1", Name: "web", Image: "registry/app:1.2"}
	for _, tc := range []struct {
		name string
		ev   *event.Event
		want string // rule that must fire, "" none
	}{
		{"mask hit", ev(t, 1, "mprotect", func(e *event.Event) { e.Args[2] = 7 }), "mask"},
		{"mask miss", ev(t, 2, "mprotect", func(e *event.Event) { e.Args[2] = 5 }), ""},
		{"errno hit", ev(t, 3, "setuid", func(e *event.Event) { e.Ret = -1 }), "errno"},
		{"errno miss", ev(t, 4, "setuid", func(e *event.Event) { e.Ret = -13 }), ""},
		{"ok hit", ev(t, 5, "capset", nil), "okonly"},
		{"ok miss", ev(t, 6, "capset", func(e *event.Event) { e.Ret = -1 }), ""},
		{"macro hit", ev(t, 7, "openat", func(e *event.Event) { e.Path = "/etc/passwd"; e.Args[2] = 2 }), "macro"},
		{"macro read", ev(t, 8, "openat", func(e *event.Event) { e.Path = "/etc/passwd" }), ""},
		{"macro path", ev(t, 9, "openat", func(e *event.Event) { e.Path = "/tmp/x"; e.Args[2] = 1 }), ""},
		{"cidr hit", ev(t, 10, "connect", func(e *event.Event) {
			e.Addr = event.Addr{Family: event.AFInet, IP: netip.MustParseAddr("203.0.113.9"), Port: 4444}
		}), "cidr"},
		{"cidr v6", ev(t, 11, "connect", func(e *event.Event) {
			e.Addr = event.Addr{Family: event.AFInet6, IP: netip.MustParseAddr("2001:db8::1"), Port: 1443}
		}), "cidr"},
		{"cidr low port", ev(t, 12, "connect", func(e *event.Event) {
			e.Addr = event.Addr{Family: event.AFInet, IP: netip.MustParseAddr("203.0.113.9"), Port: 80}
		}), ""},
		{"cidr other", ev(t, 13, "connect", func(e *event.Event) {
			e.Addr = event.Addr{Family: event.AFInet, IP: netip.MustParseAddr("198.51.100.1"), Port: 4444}
		}), ""},
		{"family", ev(t, 14, "sendto", func(e *event.Event) { e.Addr = event.Addr{Family: event.AFUnix, Path: "/x"} }), "family"},
		{"argv path", ev(t, 15, "execve", func(e *event.Event) { e.Path = "/usr/bin/nc" }), "argv"},
		{"argv arg", ev(t, 16, "execve", func(e *event.Event) { e.Path = "/bin/tool"; e.Argv = []string{"tool", "--exec=/bin/sh"} }), "argv"},
		{"argv none", ev(t, 17, "execve", func(e *event.Event) { e.Path = "/bin/ls"; e.Argv = []string{"ls"} }), ""},
		{"not comm", ev(t, 18, "ptrace", nil), "notcomm"},
		{"not comm gdb", ev(t, 19, "ptrace", func(e *event.Event) { e.Comm = "gdb" }), ""},
		{"container", ev(t, 20, "chroot", func(e *event.Event) { e.Container = app }), "ctr"},
		{"no container", ev(t, 21, "chroot", nil), ""},
		{"ret", ev(t, 22, "getuid", nil), "ret"},
		{"ret miss", ev(t, 23, "getuid", func(e *event.Event) { e.Ret = 1000 }), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.ev.PID = uint32(1000 + tc.ev.Seq) // own process: no throttling between cases
			vs := e.Observe(tc.ev)
			var got []string
			for _, v := range vs {
				got = append(got, v.Rule)
			}
			switch {
			case tc.want == "" && len(got) > 0:
				t.Errorf("fired %v, want nothing", got)
			case tc.want != "" && (len(got) != 1 || got[0] != tc.want):
				t.Errorf("fired %v, want [%s]", got, tc.want)
			}
		})
	}
}

func TestRateAndThrottle(t *testing.T) {
	rules := `
rules:
  - {rule: burst, class: fs-escape, severity: medium, syscalls: [rename], rate: {count: 5, window: 1s, per: process}, throttle: 2s}
  - {rule: each, class: privesc, severity: low, syscalls: [bpf], throttle: 0s}
  - {rule: once, class: privesc, severity: low, syscalls: [keyctl]}
`
	e := newEngine(t, Config{NoDefaultRules: true, RuleTexts: [][]byte{[]byte(rules)}})
	count := func(name string, n int, step time.Duration, pid uint32) int {
		fired := 0
		for i := 0; i < n; i++ {
			x := ev(t, i, name, nil)
			x.Time = t0.Add(time.Duration(i) * step)
			x.PID = pid
			fired += len(e.Observe(x))
		}
		return fired
	}
	// 4 renames in a second: below the rate.
	if n := count("rename", 4, 100*time.Millisecond, 1); n != 0 {
		t.Errorf("4 renames in 400ms fired %d", n)
	}
	// 20 renames at 10 ms: fires once (then throttled for 2 s).
	if n := count("rename", 20, 10*time.Millisecond, 2); n != 1 {
		t.Errorf("20 renames in 200ms fired %d, want 1", n)
	}
	// slow renames over 10 s never reach 5 per second.
	if n := count("rename", 20, 500*time.Millisecond, 3); n != 0 {
		t.Errorf("renames every 500ms fired %d", n)
	}
	if n := count("bpf", 5, time.Millisecond, 4); n != 5 {
		t.Errorf("throttle 0s: %d verdicts for 5 events", n)
	}
	if n := count("keyctl", 5, time.Second, 5); n != 1 {
		t.Errorf("default throttle (10s): %d verdicts for 5 events in 5s", n)
	}
	if n := count("keyctl", 1, 0, 6); n != 1 {
		t.Errorf("another process is not throttled: %d", n)
	}
}

func TestOverridesAndReload(t *testing.T) {
	dir := t.TempDir()
	over := filepath.Join(dir, "over.yaml")
	os.WriteFile(over, []byte(`
lists:
  allowed_resolvers: {append: [192.0.2.53]}
rules:
  - {rule: capset, enabled: false}
  - {rule: bpf-syscall, class: privesc, severity: critical, syscalls: [bpf], message: "custom {comm}"}
`), 0o644)
	dns := func(ip string) *event.Event {
		return ev(t, 1, "connect", func(e *event.Event) {
			e.Addr = event.Addr{Family: event.AFInet, IP: netip.MustParseAddr(ip), Port: 53}
		})
	}
	e := newEngine(t, Config{Lists: map[string][]string{"allowed_resolvers": {"10.0.0.10"}}})
	if vs := e.Observe(dns("10.0.0.10")); len(vs) != 0 {
		t.Errorf("allowed resolver from Config.Lists fired %v", vs[0].Rule)
	}
	if vs := e.Observe(dns("192.0.2.53")); len(vs) != 1 || vs[0].Rule != "dns-unauthorized-resolver" {
		t.Errorf("resolver not yet allowed: %+v", vs)
	}
	if vs := e.Observe(ev(t, 2, "capset", func(e *event.Event) { e.Ret = -1 })); len(vs) != 1 {
		t.Fatalf("default capset rule: %d verdicts", len(vs))
	}
	// Reload with the override: capset off, bpf replaced, resolver allowed.
	if err := e.Reload(Config{RuleFiles: []string{over}}); err != nil {
		t.Fatal(err)
	}
	if vs := e.Observe(ev(t, 3, "capset", func(e *event.Event) { e.PID, e.Ret = 5, -1 })); len(vs) != 0 {
		t.Errorf("disabled rule fired")
	}
	vs := e.Observe(ev(t, 4, "bpf", nil))
	if len(vs) != 1 || vs[0].Severity != Critical || vs[0].Message != "custom app" {
		t.Errorf("replaced rule: %+v", vs)
	}
	if vs := e.Observe(dns("192.0.2.53")); len(vs) != 0 {
		t.Errorf("appended resolver still fires")
	}
	// A bad reload keeps the running rules.
	if err := e.Reload(Config{RuleTexts: [][]byte{[]byte("rules: [{rule: x}]")}}); err == nil {
		t.Fatal("bad reload accepted")
	}
	if vs := e.Observe(ev(t, 5, "bpf", func(e *event.Event) { e.PID = 9 })); len(vs) != 1 || vs[0].Severity != Critical {
		t.Errorf("rules after a failed reload: %+v", vs)
	}
}

func TestParseNumber(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0x10", 16}, {"010", 8}, {"0o17", 15}, {"PROT_WRITE|PROT_EXEC", 6}, {"CLONE_NEWUSER", 0x10000000},
		{"-100", -100}, {"0xffffffffffffffff", -1}, {"AT_FDCWD", -100},
	} {
		got, err := parseNumber(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseNumber(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	if _, err := parseNumber("PROT_WHAT"); err == nil {
		t.Error("unknown constant accepted")
	}
}
