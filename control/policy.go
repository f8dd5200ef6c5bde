package control

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

//go:embed policies/default.yaml
var defaultPolicyYAML []byte

// DefaultPolicyName is the policy of containers that name none, or name one
// the node does not have.
const DefaultPolicyName = "default"

// Defaults of a policy file's optional fields.
const (
	DefaultRestoreAfter           = 30 * time.Second
	DefaultThrottleShares uint64  = 2
	DefaultThrottleQuota  float64 = 10     // percent of one CPU
	DefaultPeriodUs       uint64  = 100000 // CFS period used when the cgroup has none
	// MaxBackoff caps the hysteresis: a throttle or deny-connect that comes
	// back soon after its restore waits at most MaxBackoff × restoreAfter.
	MaxBackoff = 8
)

// Policy is one response policy: the ladder of the containers that name it.
// It is read-only once parsed.
type Policy struct {
	Name string
	File string // where it was read ("default.yaml (built-in)" for the embedded one)
	// RestoreAfter is how long a throttle or deny-connect stays without a
	// new verdict of the class that caused it.
	RestoreAfter time.Duration
	Throttle     ThrottleSpec
	DenySyscall  DenySyscallSpec
	// Responses are tried in order; the first that matches gives the
	// actions. No match means alert.
	Responses []Response
}

// ThrottleSpec is what a throttle sets.
type ThrottleSpec struct {
	// Shares is the cgroup v1 cpu.shares while throttled (v2: the weight
	// converted from it). The throttle only lowers shares.
	Shares uint64
	// QuotaPercent is the CFS quota, in percent of one CPU, set for
	// cpu-abuse verdicts only; 0 sets no quota.
	QuotaPercent float64
}

// DenySyscallSpec is what deny-syscall denies.
type DenySyscallSpec struct {
	Errno syscall.Errno
	// Syscalls lists the denied syscall names; empty means the whole set
	// the notify profile sends to vigil (Config.NotifySet).
	Syscalls []string
}

// Response is one rung of the ladder: a condition and its actions.
type Response struct {
	Name    string
	Line    int // in the policy file
	When    When
	Actions []Action
}

// When is a response's condition. Zero fields match anything; all set
// fields must match.
type When struct {
	Classes  []detector.Class  // one of
	Severity detector.Severity // at least
	Rules    []string          // rule names, '*' matches any run of characters
	Score    float64           // at least
	Repeat   int               // at least this many verdicts of the rule in the container, this one included
}

// Matches reports whether verdict v, the repeat-th of its rule in its
// container, meets the condition.
func (w *When) Matches(v *detector.Verdict, repeat int) bool {
	if len(w.Classes) > 0 && !slices.Contains(w.Classes, v.Class) {
		return false
	}
	if v.Severity < w.Severity || v.Score < w.Score || repeat < w.Repeat {
		return false
	}
	if len(w.Rules) > 0 {
		for _, r := range w.Rules {
			if globMatch(r, v.Rule) {
				return true
			}
		}
		return false
	}
	return true
}

// Match returns the first response whose condition v meets, or nil (alert).
func (p *Policy) Match(v *detector.Verdict, repeat int) *Response {
	for i := range p.Responses {
		if p.Responses[i].When.Matches(v, repeat) {
			return &p.Responses[i]
		}
	}
	return nil
}

// globMatch matches s against pattern, where '*' matches any run of
// characters (possibly empty) and every other character itself.
func globMatch(pattern, s string) bool {
	star, back := -1, 0
	p, i := 0, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, back = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			back++
			p, i = star+1, back
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// DefaultPolicy is the built-in policy (control/policies/default.yaml).
// Each call returns a new copy.
func DefaultPolicy() *Policy {
	p, err := ParsePolicy(DefaultPolicyName, "default.yaml (built-in)", defaultPolicyYAML)
	if err != nil {
		panic("control: the built-in default policy does not parse: " + err.Error())
	}
	return p
}

// LoadPolicies reads every NAME.yaml of dir as the policy NAME. The result
// always holds "default": the built-in one unless dir has a default.yaml.
// dir "" or missing gives the built-in policies only.
func LoadPolicies(dir string) (map[string]*Policy, error) {
	out := map[string]*Policy{DefaultPolicyName: DefaultPolicy()}
	if dir == "" {
		return out, nil
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read policy directory: %w", err)
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".yaml")
		if !ok || name == "" || e.IsDir() {
			continue
		}
		file := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read policy: %w", err)
		}
		p, err := ParsePolicy(name, file, data)
		if err != nil {
			return nil, err
		}
		out[name] = p
	}
	return out, nil
}

// The allowed values, for errors.
var (
	policyKeys   = []string{"restoreAfter", "throttle", "denySyscall", "responses"}
	throttleKeys = []string{"shares", "quota"}
	denyKeys     = []string{"errno", "syscalls"}
	responseKeys = []string{"name", "when", "actions"}
	whenKeys     = []string{"class", "severity", "rule", "score", "repeat"}
)

// ParsePolicy reads the policy name from data (file names the source in
// errors). Errors name the file, the line, the bad value and the allowed
// values; unknown keys are errors.
func ParsePolicy(name, file string, data []byte) (*Policy, error) {
	p := &Policy{
		Name:         name,
		File:         file,
		RestoreAfter: DefaultRestoreAfter,
		Throttle:     ThrottleSpec{Shares: DefaultThrottleShares, QuotaPercent: DefaultThrottleQuota},
		DenySyscall:  DenySyscallSpec{Errno: syscall.EPERM},
	}
	var doc yaml.Node
	// The file is walked as nodes rather than decoded into a struct, so
	// that every error (unknown keys included) has a line and the allowed
	// values.
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return p, nil // an empty file: every verdict alerts
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(doc.Content) == 0 {
		return p, nil
	}
	ps := &policyParser{file: file}
	root := doc.Content[0]
	if err := ps.mapping(root, "a policy", policyKeys, func(k, v *yaml.Node) error {
		switch k.Value {
		case "restoreAfter":
			d, err := time.ParseDuration(v.Value)
			if v.Kind != yaml.ScalarNode || err != nil || d <= 0 {
				return ps.errf(v, "restoreAfter %s: allowed values are durations above zero, like 30s or 5m", show(v))
			}
			p.RestoreAfter = d
			return nil
		case "throttle":
			return ps.throttle(v, &p.Throttle)
		case "denySyscall":
			return ps.denySyscall(v, &p.DenySyscall)
		case "responses":
			return ps.responses(v, p)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return p, nil
}

type policyParser struct{ file string }

func (ps *policyParser) errf(n *yaml.Node, format string, a ...any) error {
	return fmt.Errorf("%s:%d: %s", ps.file, n.Line, fmt.Sprintf(format, a...))
}

// mapping checks that n is a mapping with keys from allowed and calls f for
// each key in order.
func (ps *policyParser) mapping(n *yaml.Node, what string, allowed []string, f func(k, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return ps.errf(n, "%s is a mapping with the keys %s, got %s", what, strings.Join(allowed, ", "), show(n))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(allowed, k.Value) {
			return ps.errf(k, "%s: unknown key %q; allowed keys are %s", what, k.Value, strings.Join(allowed, ", "))
		}
		if seen[k.Value] {
			return ps.errf(k, "%s: key %q given twice", what, k.Value)
		}
		seen[k.Value] = true
		if err := f(k, v); err != nil {
			return err
		}
	}
	return nil
}

// scalars reads a scalar or a list of scalars.
func (ps *policyParser) scalars(n *yaml.Node, what string) ([]*yaml.Node, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return []*yaml.Node{n}, nil
	case yaml.SequenceNode:
		for _, it := range n.Content {
			if it.Kind != yaml.ScalarNode {
				return nil, ps.errf(it, "%s: items are values, got %s", what, show(it))
			}
		}
		return n.Content, nil
	}
	return nil, ps.errf(n, "%s: want a value or a list of values, got %s", what, show(n))
}

func (ps *policyParser) throttle(n *yaml.Node, t *ThrottleSpec) error {
	return ps.mapping(n, "throttle", throttleKeys, func(k, v *yaml.Node) error {
		switch k.Value {
		case "shares":
			s, err := strconv.ParseUint(v.Value, 10, 64)
			if v.Kind != yaml.ScalarNode || err != nil || s < 2 || s > 262144 {
				return ps.errf(v, "throttle.shares %s: allowed values are integers from 2 to 262144", show(v))
			}
			t.Shares = s
		case "quota":
			q, ok := parsePercent(v)
			if !ok {
				return ps.errf(v, "throttle.quota %s: allowed values are a percentage of one CPU above 0%% and at most 10000%% (like 10%%), or none", show(v))
			}
			t.QuotaPercent = q
		}
		return nil
	})
}

func parsePercent(v *yaml.Node) (float64, bool) {
	if v.Kind != yaml.ScalarNode {
		return 0, false
	}
	if v.Value == "none" {
		return 0, true
	}
	s, ok := strings.CutSuffix(strings.TrimSpace(v.Value), "%")
	if !ok {
		return 0, false
	}
	q, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || !(q > 0 && q <= 10000) {
		return 0, false
	}
	return q, true
}

func (ps *policyParser) denySyscall(n *yaml.Node, d *DenySyscallSpec) error {
	return ps.mapping(n, "denySyscall", denyKeys, func(k, v *yaml.Node) error {
		switch k.Value {
		case "errno":
			e, ok := errnoByName(v.Value)
			if v.Kind != yaml.ScalarNode || !ok {
				return ps.errf(v, "denySyscall.errno %s: allowed values are errno names such as EPERM, EACCES, ENOSYS, EINVAL", show(v))
			}
			d.Errno = e
		case "syscalls":
			if v.Kind != yaml.SequenceNode {
				return ps.errf(v, "denySyscall.syscalls: want a list of syscall names ([] for the whole notified set), got %s", show(v))
			}
			names, err := ps.scalars(v, "denySyscall.syscalls")
			if err != nil {
				return err
			}
			d.Syscalls = nil
			for _, it := range names {
				if _, ok := event.SyscallNr(it.Value); !ok {
					return ps.errf(it, "denySyscall.syscalls: %q is not a syscall of %s; allowed values are its syscall names (like openat, ptrace)", it.Value, event.NativeABI())
				}
				d.Syscalls = append(d.Syscalls, it.Value)
			}
		}
		return nil
	})
}

func (ps *policyParser) responses(n *yaml.Node, p *Policy) error {
	if n.Kind != yaml.SequenceNode {
		return ps.errf(n, "responses: want a list of {name, when, actions}, got %s", show(n))
	}
	names := map[string]int{}
	for _, rn := range n.Content {
		r := Response{Line: rn.Line}
		var sawActions bool
		err := ps.mapping(rn, "a response", responseKeys, func(k, v *yaml.Node) error {
			switch k.Value {
			case "name":
				if v.Kind != yaml.ScalarNode || v.Value == "" {
					return ps.errf(v, "response name %s: want a non-empty name", show(v))
				}
				r.Name = v.Value
			case "when":
				return ps.when(v, &r.When)
			case "actions":
				sawActions = true
				items, err := ps.scalars(v, "actions")
				if err != nil {
					return err
				}
				for _, it := range items {
					a := Action(it.Value)
					if !slices.Contains(Actions, a) {
						return ps.errf(it, "action %q: unknown; allowed values are %s", it.Value, joinActions())
					}
					if !slices.Contains(r.Actions, a) {
						r.Actions = append(r.Actions, a)
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if r.Name == "" {
			return ps.errf(rn, "response without a name: give it `name: NAME`")
		}
		if line, ok := names[r.Name]; ok {
			return ps.errf(rn, "response %q: the name is already used on line %d", r.Name, line)
		}
		names[r.Name] = rn.Line
		if !sawActions || len(r.Actions) == 0 {
			return ps.errf(rn, "response %q: missing actions; allowed values are %s", r.Name, joinActions())
		}
		p.Responses = append(p.Responses, r)
	}
	return nil
}

func (ps *policyParser) when(n *yaml.Node, w *When) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // `when:` alone matches everything
	}
	return ps.mapping(n, "when", whenKeys, func(k, v *yaml.Node) error {
		switch k.Value {
		case "class":
			items, err := ps.scalars(v, "when.class")
			if err != nil {
				return err
			}
			for _, it := range items {
				c := detector.Class(it.Value)
				if !slices.Contains(detector.Classes, c) {
					return ps.errf(it, "class %q: unknown; allowed values are %s", it.Value, joinClasses())
				}
				w.Classes = append(w.Classes, c)
			}
		case "severity":
			s, err := detector.ParseSeverity(v.Value)
			if v.Kind != yaml.ScalarNode || err != nil {
				return ps.errf(v, "severity %s: allowed values are low, medium, high, critical (the least severity that matches)", show(v))
			}
			w.Severity = s
		case "rule":
			items, err := ps.scalars(v, "when.rule")
			if err != nil {
				return err
			}
			for _, it := range items {
				if it.Value == "" {
					return ps.errf(it, "rule \"\": allowed values are rule names, where '*' matches any characters")
				}
				w.Rules = append(w.Rules, it.Value)
			}
		case "score":
			s, err := strconv.ParseFloat(v.Value, 64)
			if v.Kind != yaml.ScalarNode || err != nil || s < 0 {
				return ps.errf(v, "score %s: allowed values are numbers >= 0 (the least score that matches)", show(v))
			}
			w.Score = s
		case "repeat":
			r, err := strconv.Atoi(v.Value)
			if v.Kind != yaml.ScalarNode || err != nil || r < 1 {
				return ps.errf(v, "repeat %s: allowed values are integers >= 1 (the least count of the rule's verdicts in the container)", show(v))
			}
			w.Repeat = r
		}
		return nil
	})
}

// show describes a node for an error: its value, or its kind.
func show(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

func joinActions() string {
	s := make([]string, len(Actions))
	for i, a := range Actions {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

func joinClasses() string {
	s := make([]string, len(detector.Classes))
	for i, c := range detector.Classes {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

// errnoByName finds an errno by its symbolic name ("EPERM").
func errnoByName(name string) (syscall.Errno, bool) {
	if !strings.HasPrefix(name, "E") {
		return 0, false
	}
	for n := 1; n < 4096; n++ {
		if event.ErrnoName(n) == name {
			return syscall.Errno(n), true
		}
	}
	return 0, false
}
