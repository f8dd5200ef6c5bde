// Package annotations owns vigil's annotation contract: the keys a pod or
// container sets to opt in to monitoring and choose its seccomp profile,
// priority, detection policy, mode and tracing class; the lookup order
// `<key>/container.<name>` → `<key>/pod` → `<key>`; the node configuration
// that may force monitoring; and Parse, which turns all of it into a Policy
// or an error that names the key, the bad value and the allowed values.
//
// The package is pure: no I/O except LoadNodeConfig, no root needed.
package annotations

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The annotation keys of the contract (DESIGN.md).
const (
	KeyMonitor  = "ebpf-monitor"
	KeySeccomp  = "vigil.dev/seccomp"
	KeyPriority = "vigil.dev/priority"
	KeyPolicy   = "vigil.dev/policy"
	KeyMode     = "vigil.dev/mode"
)

// Built-in seccomp profile names.
const (
	SeccompRuntimeDefault = "runtime-default"
	SeccompStrict         = "strict"
	SeccompNotify         = "notify"
	SeccompUnconfined     = "unconfined"
)

// Mode is how a container's detections are acted on.
type Mode string

// The modes, from the least to the most protective.
const (
	ModeLearn   Mode = "learn"
	ModeDetect  Mode = "detect"
	ModeEnforce Mode = "enforce"
)

// Defaults of the contract.
const (
	DefaultPriority = 50
	DefaultPolicy   = "default"
	DefaultMode     = ModeDetect    // when the node configuration sets no defaultMode
	DefaultSeccomp  = SeccompNotify // when monitored and no profile is named
)

// Policy is what vigil does for one container.
type Policy struct {
	// Monitor is true when the container's syscalls are traced.
	Monitor bool
	// Forced is true when the node configuration forced monitoring.
	Forced bool
	// Seccomp is the profile to inject; "" leaves the runtime's policy as it is.
	Seccomp string
	// SeccompFloor is the least protective built-in seccomp profile the node
	// allows this container (forced pods: NodeConfig.SeccompFloor); "" when
	// none. A named profile is applied together with it.
	SeccompFloor string
	// AllowUnconfined is the node's allowUnconfined: without it, a named
	// profile whose default action allows counts as unconfined and is refused.
	AllowUnconfined bool
	// Priority is 0..100, within the node's bounds; PrioritySet tells
	// whether it applies (only then are CPU shares adjusted).
	Priority    int
	PrioritySet bool
	// PriorityAsked is the valid vigil.dev/priority value as written, before
	// the node's bounds (nil when none): what a change of the node
	// configuration applies its new bounds to (NodeConfig.ApplyPriority).
	PriorityAsked *int
	// PolicyName names the detection/response policy.
	PolicyName string
	Mode       Mode
	// Realtime is vigil.dev/latency: realtime, Block vigil.dev/loss: block
	// (false: the normal classes). The node bounds how many containers hold
	// each (realtimeMax, blockMax); the plugin applies the bound when it
	// starts tracing.
	Realtime bool
	Block    bool
	// Warnings lists bad values that were replaced by defaults because the
	// node configuration says to warn instead of failing, and priorities
	// the node's bounds changed or ignored.
	Warnings []string
}

// Error is a bad annotation value. Its message names the key, the value and
// what is allowed, and is what the user sees when container creation fails.
type Error struct {
	Key     string // the annotation key as written, e.g. "vigil.dev/seccomp/pod"
	Value   string
	Allowed string
}

func (e *Error) Error() string {
	return fmt.Sprintf("vigil: annotation %q has invalid value %q: allowed values are %s", e.Key, e.Value, e.Allowed)
}

// Lookup finds key for container name: first `<key>/container.<name>`, then
// `<key>/pod`, then `<key>`; container annotations win over pod annotations
// for the same form. It returns the key form found, its value, and whether
// any was found.
func Lookup(pod, ctr map[string]string, key, name string) (string, string, bool) {
	forms := []string{key + "/pod", key}
	if name != "" {
		forms = append([]string{key + "/container." + name}, forms...)
	}
	for _, k := range forms {
		if v, ok := ctr[k]; ok {
			return k, v, true
		}
		if v, ok := pod[k]; ok {
			return k, v, true
		}
	}
	return "", "", false
}

var policyNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)

// Parse computes the Policy of container ctrName (image image) in a pod of
// namespace from the pod's and the container's annotations and the node
// configuration. A bad value is an *Error, unless node.OnInvalid is "warn":
// then the default is used and the problem is listed in Policy.Warnings.
func Parse(pod, ctr map[string]string, ctrName, namespace, image string, node NodeConfig) (Policy, error) {
	p := Policy{Priority: DefaultPriority, PolicyName: DefaultPolicy, Mode: node.defaultMode()}
	var errs []error
	bad := func(key, value, allowed string) {
		errs = append(errs, &Error{Key: key, Value: value, Allowed: allowed})
	}

	if k, v, ok := Lookup(pod, ctr, KeyMonitor, ctrName); ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true":
			p.Monitor = true
		case "false":
		default:
			bad(k, v, `"true", "false"`)
		}
	}
	if node.Forces(namespace, image) {
		p.Monitor, p.Forced = true, true
	}

	p.AllowUnconfined = node.AllowUnconfined
	if p.Forced {
		// The node forces monitoring: the pod may raise its seccomp
		// profile above the floor, never lower it (fail closed: a profile
		// below it is a bad value, whatever form of the key names it).
		if f := node.seccompFloor(); f != SeccompUnconfined {
			p.SeccompFloor = f
		}
	}
	if k, v, ok := Lookup(pod, ctr, KeySeccomp, ctrName); ok {
		offered := node.SeccompProfiles()
		allowed := slices.DeleteFunc(slices.Clone(offered), func(n string) bool { return !meetsFloor(n, p.SeccompFloor) })
		switch {
		case slices.Contains(allowed, v):
			p.Seccomp = v
		case slices.Contains(offered, v):
			bad(k, v, fmt.Sprintf("%s (this node forces monitoring of this pod and allows no seccomp profile below %q: node configuration seccompFloor)",
				quoteList(allowed), p.SeccompFloor))
		default:
			bad(k, v, quoteList(allowed))
		}
	}
	if p.Seccomp == "" && p.Monitor {
		p.Seccomp = DefaultSeccomp
		if !meetsFloor(p.Seccomp, p.SeccompFloor) {
			p.Seccomp = p.SeccompFloor // seccompFloor: strict is above the default
		}
	}

	if k, v, ok := Lookup(pod, ctr, KeyPriority, ctrName); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > 100 {
			bad(k, v, "an integer from 0 to 100")
		} else {
			p.PriorityAsked = &n
			if w := node.applyPriority(&p, namespace, k); w != "" {
				p.Warnings = append(p.Warnings, w)
			}
		}
	}

	if k, v, ok := Lookup(pod, ctr, KeyPolicy, ctrName); ok {
		switch {
		case len(node.Policies) > 0 && !slices.Contains(node.Policies, v):
			bad(k, v, quoteList(node.Policies))
		case len(node.Policies) == 0 && !policyNameRE.MatchString(v):
			bad(k, v, "a policy name of lowercase letters, digits, '.', '_' and '-' (at most 64)")
		default:
			p.PolicyName = v
		}
	}

	if k, v, ok := Lookup(pod, ctr, KeyMode, ctrName); ok {
		switch m := Mode(v); m {
		case ModeLearn, ModeDetect, ModeEnforce:
			p.Mode = m
		default:
			bad(k, v, `"learn", "detect", "enforce"`)
		}
	}
	if node.MinMode != "" && modeRank(p.Mode) < modeRank(node.MinMode) {
		// The node sets at least this mode; a pod may raise it, not lower it.
		p.Mode = node.MinMode
	}

	parseClass(&p, pod, ctr, ctrName, bad)

	if len(errs) == 0 {
		return p, nil
	}
	if node.OnInvalid == OnInvalidWarn {
		for _, e := range errs {
			p.Warnings = append(p.Warnings, e.Error()+" (using the default)")
		}
		return p, nil
	}
	return Policy{}, errors.Join(errs...)
}

// ApplyPriority applies the node's priority rules to the priority p asked
// for (p.PriorityAsked) in namespace: it returns p with Priority and
// PrioritySet set, and a warning when the priority was clamped or ignored
// ("" otherwise). A policy that asked for no priority is returned as it is.
func (c NodeConfig) ApplyPriority(p Policy, namespace string) (Policy, string) {
	w := c.applyPriority(&p, namespace, KeyPriority)
	return p, w
}

// applyPriority sets p.Priority and p.PrioritySet from p.PriorityAsked: a
// pod not monitored gets no priority unless the node allows it, and the
// priority is clamped to the namespace's bounds. key is the annotation as
// written, for the warning.
func (c NodeConfig) applyPriority(p *Policy, namespace, key string) string {
	if p.PriorityAsked == nil {
		return ""
	}
	asked := *p.PriorityAsked
	if !p.Monitor && !c.Priority.Unmonitored {
		p.Priority, p.PrioritySet = DefaultPriority, false
		return fmt.Sprintf("vigil: annotation %q asks for priority %d: ignored, the CPU shares are left as they are: "+
			"this node applies priorities to monitored pods only (node configuration priority.unmonitored is false)", key, asked)
	}
	lo, hi := c.PriorityBounds(namespace)
	p.Priority, p.PrioritySet = min(max(asked, lo), hi), true
	if p.Priority == asked {
		return ""
	}
	return fmt.Sprintf("vigil: annotation %q asks for priority %d: applying %d (%d CPU shares): "+
		"this node allows priorities from %d to %d in namespace %q (node configuration priority)",
		key, asked, p.Priority, CPUShares(p.Priority), lo, hi, namespace)
}

// meetsFloor reports whether seccomp profile name may be asked for under
// floor ("" for none): a built-in profile when it is at least as protective
// (runtime-default is met by runtime-default, strict and notify; strict and
// notify only by themselves: strict sends nothing to vigil, notify denies
// less than strict), a named profile always (it is applied together with
// the floor).
func meetsFloor(name, floor string) bool {
	switch {
	case floor == "" || floor == SeccompUnconfined || !isBuiltinSeccomp(name):
		return true
	case floor == SeccompRuntimeDefault:
		return name != SeccompUnconfined
	}
	return name == floor
}

func isBuiltinSeccomp(name string) bool {
	return slices.Contains([]string{SeccompRuntimeDefault, SeccompStrict, SeccompNotify, SeccompUnconfined}, name)
}

func modeRank(m Mode) int {
	return slices.Index([]Mode{ModeLearn, ModeDetect, ModeEnforce}, m)
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// CPUShares maps a priority 0..100 to cgroup v1 CPU shares: 50 is the
// kernel's default of 1024, and every 10 points double (or halve) it, so 0
// gives 32 and 100 gives 32768.
func CPUShares(priority int) uint64 {
	priority = max(0, min(100, priority))
	return uint64(math.Round(1024 * math.Exp2(float64(priority-50)/10)))
}

// matchAny reports whether s matches one of the patterns, where '*'
// matches any run of characters (including '/') and '?' any one character.
func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		var re strings.Builder
		re.WriteString("^")
		for _, r := range p {
			switch r {
			case '*':
				re.WriteString(".*")
			case '?':
				re.WriteString(".")
			default:
				re.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		re.WriteString("$")
		if ok, _ := regexp.MatchString(re.String(), s); ok {
			return true
		}
	}
	return false
}
