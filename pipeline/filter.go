package pipeline

import (
	"fmt"
	"path"
	"strings"

	"vigil.dev/vigil/event"
)

// EventFilter chooses which syscall events an export writes (verdicts,
// actions and gaps always pass). Each non-empty part must match; within a
// part any entry may.
type EventFilter struct {
	// Namespaces are pod namespaces ('*' and '?' patterns).
	Namespaces []string
	// Labels are pod labels as key=value (value may be a pattern) or key
	// (any value).
	Labels []string
	// Syscalls are syscall names.
	Syscalls []string
	nrs      map[int32]bool
}

// ParseEventFilter checks and compiles a filter; errors name the bad entry
// and what is allowed.
func ParseEventFilter(namespaces, labels, syscalls []string) (*EventFilter, error) {
	if len(namespaces) == 0 && len(labels) == 0 && len(syscalls) == 0 {
		return nil, nil
	}
	f := &EventFilter{Namespaces: namespaces, Labels: labels, Syscalls: syscalls}
	for _, p := range append(append([]string(nil), namespaces...), labels...) {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			return nil, fmt.Errorf("filter %q: want a name or a pattern of '*' and '?'", p)
		}
	}
	if len(syscalls) > 0 {
		f.nrs = map[int32]bool{}
		for _, s := range syscalls {
			nr, ok := event.SyscallNr(s)
			if !ok {
				return nil, fmt.Errorf("syscall %q: not a syscall name of this architecture (e.g. openat, connect, execve)", s)
			}
			f.nrs[int32(nr)] = true
		}
	}
	return f, nil
}

// Match reports whether ev passes the filter (a nil filter passes all).
func (f *EventFilter) Match(ev *event.Event) bool {
	if f == nil {
		return true
	}
	if f.nrs != nil && !f.nrs[ev.Nr] {
		return false
	}
	c := ev.Container
	if len(f.Namespaces) > 0 && (c == nil || !matchAnyPattern(f.Namespaces, c.Namespace)) {
		return false
	}
	if len(f.Labels) > 0 {
		if c == nil {
			return false
		}
		ok := false
		for _, l := range f.Labels {
			k, v, hasV := strings.Cut(l, "=")
			got, present := c.PodLabels[k]
			if present && (!hasV || matchAnyPattern([]string{v}, got)) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func matchAnyPattern(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}
