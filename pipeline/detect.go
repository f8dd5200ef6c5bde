package pipeline

import (
	"fmt"
	"os"

	"vigil.dev/vigil/detector"
)

// Detection is how the agent and `vigil trace` configure the detector:
// the default rules plus rule files, an optional model, and the DNS
// resolvers containers may query (the node's resolv.conf plus these).
type Detection struct {
	RuleFiles []string
	Model     string
	Resolvers []string
}

// Config builds the detector configuration, loading the model; errors name
// the flag's file.
func (d Detection) Config() (detector.Config, error) {
	// SelfPID: the agent's (or vigil trace's) own syscalls are not judged
	// when it runs in a cgroup it traces. The tracer records pids of the
	// root pid namespace: the agent runs in the host's (hostPID).
	cfg := detector.Config{RuleFiles: d.RuleFiles, FromFirstExec: true, SelfPID: uint32(os.Getpid()),
		Lists: map[string][]string{"allowed_resolvers": d.AllowedResolvers()}}
	if d.Model != "" {
		m, err := detector.LoadModel(d.Model)
		if err != nil {
			return cfg, fmt.Errorf("model %s: %w", d.Model, err)
		}
		cfg.Model = m
	}
	return cfg, nil
}

// AllowedResolvers is the node's resolvers plus the extra ones.
func (d Detection) AllowedResolvers() []string {
	return append(detector.SystemResolvers(""), d.Resolvers...)
}

// NewDetector builds a detector engine.
func (d Detection) NewDetector() (*detector.Engine, error) {
	cfg, err := d.Config()
	if err != nil {
		return nil, err
	}
	eng, err := detector.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	return eng, nil
}

// Reload recompiles eng's rules and model from the files; on error the
// rules in force stay.
func (d Detection) Reload(eng *detector.Engine) error {
	cfg, err := d.Config()
	if err != nil {
		return err
	}
	if err := eng.Reload(cfg); err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	return nil
}
