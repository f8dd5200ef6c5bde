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
	// AllowUnconfined lets pods ask for vigil.dev/seccomp: unconfined.
	AllowUnconfined bool `yaml:"allowUnconfined"`
	// ProfileDir holds named seccomp profiles (NAME.json); Profiles lists the
	// names found there (filled by the agent, or given here).
	ProfileDir string   `yaml:"profileDir"`
	Profiles   []string `yaml:"profiles"`
	// Policies lists the detection policy names pods may ask for; empty
	// allows any well-formed name.
	Policies []string `yaml:"policies"`
	// OnInvalid is "reject" (default) or "warn".
	OnInvalid string `yaml:"onInvalid"`
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

// SeccompProfiles lists the profile names a pod may ask for.
func (c NodeConfig) SeccompProfiles() []string {
	names := []string{SeccompRuntimeDefault, SeccompStrict, SeccompNotify}
	if c.AllowUnconfined {
		names = append(names, SeccompUnconfined)
	}
	for _, p := range c.Profiles {
		if !slices.Contains(names, p) {
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
	}
	return nil
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
