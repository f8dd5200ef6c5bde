package annotations

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultConfigPath is where the agent reads its node configuration.
const DefaultConfigPath = "/etc/vigil/config.yaml"

// What to do with a bad annotation value (NodeConfig.OnInvalid).
const (
	OnInvalidReject = "reject" // fail container creation (the default: fail closed)
	OnInvalidWarn   = "warn"   // log a warning and use the default
)

// What seccompUnsupported may say.
const (
	SeccompUnsupportedFallback = "fallback" // run with the runtime's own seccomp profile (the default)
	SeccompUnsupportedReject   = "reject"   // fail container creation
)

// NodeConfig is the node's side of the contract, read from
// /etc/vigil/config.yaml. The zero value forces nothing and rejects bad
// values.
type NodeConfig struct {
	// ForceMonitor turns monitoring on, whatever the pod says, for pods in
	// these namespaces or containers of these images ('*' and '?' patterns).
	ForceMonitor struct {
		Namespaces []string `yaml:"namespaces"`
		Images     []string `yaml:"images"`
	} `yaml:"forceMonitor"`
	// DefaultMode is the mode of pods that name none (default detect).
	DefaultMode Mode `yaml:"defaultMode"`
	// MinMode is the least protective mode any pod may ask for.
	MinMode Mode `yaml:"minMode"`
	// PolicyDir holds response policies (NAME.yaml, package control),
	// named by pods with vigil.dev/policy; "default" is built in.
	PolicyDir string `yaml:"policyDir"`
	// AllowUnconfined lets pods ask for vigil.dev/seccomp: unconfined, and
	// for named profiles whose default action allows (which count as
	// unconfined).
	AllowUnconfined bool `yaml:"allowUnconfined"`
	// SeccompFloor is the least protective seccomp profile a pod the node
	// forces to be monitored may have: notify (the default), strict,
	// runtime-default, or unconfined (no floor). A forced pod asking for a
	// built-in profile below it fails creation; a named profile is applied
	// together with the floor's profile (what either denies is denied).
	SeccompFloor string `yaml:"seccompFloor"`
	// ProfileDir holds named seccomp profiles (NAME.json); Profiles lists the
	// names found there (filled by the agent, or given here).
	ProfileDir string   `yaml:"profileDir"`
	Profiles   []string `yaml:"profiles"`
	// Policies lists the detection policy names pods may ask for; empty
	// allows any well-formed name.
	Policies []string `yaml:"policies"`
	// OnInvalid is "reject" (default) or "warn".
	OnInvalid string `yaml:"onInvalid"`
	// SeccompUnsupported says what happens to a container asking for a
	// seccomp profile when the runtime cannot take seccomp policies through
	// NRI (CRI-O 1.34): "fallback" (default) runs it with the runtime's own
	// seccomp profile, with a warning; "reject" fails its creation.
	SeccompUnsupported string `yaml:"seccompUnsupported"`
	// Priority bounds what pods may ask for with vigil.dev/priority.
	Priority PriorityConfig `yaml:"priority"`
	// RealtimeMax bounds how many containers may be in the realtime latency
	// class (vigil.dev/latency: realtime) at once, BlockMax how many in the
	// block loss class (vigil.dev/loss: block); when not set, 16 realtime
	// and 0 block (off: its limits are in docs/annotations.md); 0 allows
	// none. A container over the bound runs in the normal class,
	// with a warning.
	RealtimeMax *int `yaml:"realtimeMax"`
	BlockMax    *int `yaml:"blockMax"`
}

// PriorityConfig bounds vigil.dev/priority on the node. The zero value
// allows 0 to 100 (every priority) for monitored pods only.
type PriorityConfig struct {
	// Min and Max bound every pod's priority: 0 and 100 when not set. A
	// priority outside is clamped, with a warning. Operators should lower
	// Max: 100 gives 32768 CPU shares, more than any Guaranteed pod's.
	Min *int `yaml:"min"`
	Max *int `yaml:"max"`
	// Namespaces bound the pods of matching namespaces instead ('*' and '?'
	// patterns, as forceMonitor); the first match wins.
	Namespaces []PriorityRange `yaml:"namespaces"`
	// Unmonitored lets pods that are not monitored set a priority too; by
	// default their vigil.dev/priority is ignored, with a warning.
	Unmonitored bool `yaml:"unmonitored"`
}

// PriorityRange bounds the priority of pods in namespaces matching Match;
// a bound not set is the node-wide one.
type PriorityRange struct {
	Match string `yaml:"match"`
	Min   *int   `yaml:"min"`
	Max   *int   `yaml:"max"`
}

// PriorityBounds is the least and the greatest priority a pod of namespace
// may have.
func (c NodeConfig) PriorityBounds(namespace string) (lo, hi int) {
	lo, hi = valueOr(c.Priority.Min, 0), valueOr(c.Priority.Max, 100)
	for _, r := range c.Priority.Namespaces {
		if matchAny([]string{r.Match}, namespace) {
			return valueOr(r.Min, lo), valueOr(r.Max, hi)
		}
	}
	return lo, hi
}

func valueOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// validatePriority checks the priority bounds: 0 ≤ min ≤ max ≤ 100.
func (c NodeConfig) validatePriority() error {
	check := func(field string, lo, hi *int, defLo, defHi int) error {
		for _, b := range []struct {
			name string
			v    *int
		}{{"min", lo}, {"max", hi}} {
			if b.v != nil && (*b.v < 0 || *b.v > 100) {
				return fmt.Errorf("%s.%s %d: allowed values are integers from 0 to 100", field, b.name, *b.v)
			}
		}
		if l, h := valueOr(lo, defLo), valueOr(hi, defHi); l > h {
			return fmt.Errorf("%s: min %d is above max %d: min must be at most max", field, l, h)
		}
		return nil
	}
	if err := check("priority", c.Priority.Min, c.Priority.Max, 0, 100); err != nil {
		return err
	}
	lo, hi := valueOr(c.Priority.Min, 0), valueOr(c.Priority.Max, 100)
	for i, r := range c.Priority.Namespaces {
		field := fmt.Sprintf("priority.namespaces[%d]", i)
		if r.Match == "" {
			return fmt.Errorf("%s.match: empty: allowed values are a namespace or a '*' pattern", field)
		}
		if err := check(field, r.Min, r.Max, lo, hi); err != nil {
			return err
		}
	}
	return nil
}

// Forces reports whether the node forces monitoring for a container of
// image in namespace.
func (c NodeConfig) Forces(namespace, image string) bool {
	return (namespace != "" && matchAny(c.ForceMonitor.Namespaces, namespace)) ||
		(image != "" && matchAny(c.ForceMonitor.Images, image))
}

// defaultMode is the mode of pods that name none.
func (c NodeConfig) defaultMode() Mode {
	m := c.DefaultMode
	if m == "" {
		m = DefaultMode
	}
	if c.MinMode != "" && modeRank(m) < modeRank(c.MinMode) {
		m = c.MinMode
	}
	return m
}

// DefaultSeccompFloor is the seccomp floor of forced pods when the node
// configuration sets none.
const DefaultSeccompFloor = SeccompNotify

// seccompFloor is the floor of forced pods.
func (c NodeConfig) seccompFloor() string {
	if c.SeccompFloor == "" {
		return DefaultSeccompFloor
	}
	return c.SeccompFloor
}

// SeccompProfiles lists the profile names a pod may ask for. A named
// profile with the name of a built-in one is left out: the name means the
// built-in profile (unconfined only with allowUnconfined).
func (c NodeConfig) SeccompProfiles() []string {
	names := []string{SeccompRuntimeDefault, SeccompStrict, SeccompNotify}
	if c.AllowUnconfined {
		names = append(names, SeccompUnconfined)
	}
	for _, p := range c.Profiles {
		if !slices.Contains(names, p) && !isBuiltinSeccomp(p) {
			names = append(names, p)
		}
	}
	return names
}

// Validate checks the configuration's own values.
func (c NodeConfig) Validate() error {
	switch c.OnInvalid {
	case "", OnInvalidReject, OnInvalidWarn:
	default:
		return fmt.Errorf("onInvalid %q: allowed values are %q, %q", c.OnInvalid, OnInvalidReject, OnInvalidWarn)
	}
	switch c.SeccompUnsupported {
	case "", SeccompUnsupportedFallback, SeccompUnsupportedReject:
	default:
		return fmt.Errorf("seccompUnsupported %q: allowed values are %q, %q", c.SeccompUnsupported, SeccompUnsupportedFallback, SeccompUnsupportedReject)
	}
	for _, f := range []struct {
		name string
		m    Mode
	}{{"defaultMode", c.DefaultMode}, {"minMode", c.MinMode}} {
		switch f.m {
		case "", ModeLearn, ModeDetect, ModeEnforce:
		default:
			return fmt.Errorf("%s %q: allowed values are %q, %q, %q", f.name, f.m, ModeLearn, ModeDetect, ModeEnforce)
		}
	}
	for _, p := range c.Profiles {
		if p == "" || strings.ContainsAny(p, "/\x00") {
			return fmt.Errorf("profiles: name %q: must be non-empty and contain no '/'", p)
		}
		if isBuiltinSeccomp(p) {
			return fmt.Errorf("profiles: name %q: the name of a built-in profile: allowed values are other names", p)
		}
	}
	switch c.SeccompFloor {
	case "", SeccompUnconfined, SeccompRuntimeDefault, SeccompStrict, SeccompNotify:
	default:
		return fmt.Errorf("seccompFloor %q: allowed values are %q, %q, %q, %q", c.SeccompFloor,
			SeccompNotify, SeccompStrict, SeccompRuntimeDefault, SeccompUnconfined)
	}
	if err := c.validateClass(); err != nil {
		return err
	}
	return c.validatePriority()
}

// ParseNodeConfig decodes YAML; unknown fields are errors.
func ParseNodeConfig(data []byte) (NodeConfig, error) {
	var c NodeConfig
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return NodeConfig{}, fmt.Errorf("parse node config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return NodeConfig{}, fmt.Errorf("node config: %w", err)
	}
	return c, nil
}

// LoadNodeConfig reads path; a missing file is the zero configuration.
func LoadNodeConfig(path string) (NodeConfig, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return NodeConfig{}, nil
	}
	if err != nil {
		return NodeConfig{}, fmt.Errorf("read node config: %w", err)
	}
	c, err := ParseNodeConfig(data)
	if err != nil {
		return NodeConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
