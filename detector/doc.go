// Package detector turns syscall events and resource samples into verdicts.
//
// It owns three detectors that share one Engine:
//
//   - rules, written in a small YAML language (RULES.md), compiled into
//     per-syscall-number dispatch tables so an event that no rule names costs
//     one table lookup; the default set (rules/default.yaml, embedded) covers
//     CPU abuse, unauthorized network access, filesystem escapes and privilege
//     escalation;
//   - resource rules over the Samples the tracer sends (cgroup CPU usage and
//     thread count), for miners and runaway loops;
//   - a learned model of normal behaviour (Model): n-gram language model,
//     STIDE-style unseen-sequence counts, per-window syscall frequency
//     distances and per-syscall count deviations (for count windows: the
//     deviations beyond 10 standard deviations, lasting two consecutive
//     windows), trained offline (Train) or from a workload's events
//     (Learner), saved as a file; a model learned for one workload leaves
//     other workloads' containers to the rules (Engine.ModelStatus).
//
// The package is pure: no kernel, no root. Decisions depend only on the
// events (their times, never the wall clock), so replaying the same events
// gives the same verdicts with the same ids. State is sharded by cgroup: an
// Engine is safe for concurrent use, and callers that feed different cgroups
// from different goroutines run in parallel (Dispatcher does that for a
// single producer). Per process the engine tracks the executable, working
// directory and fd table, so rules see normalised absolute paths and the
// program's executable rather than its self-chosen name; every table is
// bounded and forgets its least recently used entries (RULES.md, Bounds).
package detector
