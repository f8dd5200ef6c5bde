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
	// when it runs in a cgroup it traces.
	cfg := detector.Config{RuleFiles: d.RuleFiles, FromFirstExec: true, SelfPID: selfPID(),
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

// initPIDNamespace is the initial pid namespace's inode
// (PROC_PID_INIT_INO, include/linux/proc_ns.h).
const initPIDNamespace = "pid:[4026531836]"

// selfPID is this process's pid as the tracer records it (pids of the
// initial pid namespace), or 0 (none) when this process runs in another
// pid namespace (a container without hostPID): there its pid names an
// unrelated host process, whose syscalls would go unjudged.
func selfPID() uint32 {
	if ns, err := os.Readlink("/proc/self/ns/pid"); err != nil || ns != initPIDNamespace {
		return 0
	}
	return uint32(os.Getpid())
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
