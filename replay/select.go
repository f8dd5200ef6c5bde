package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/event"
)

// Spec selects records as a user writes the selection ('vigil audit show'
// and 'export' take one flag per field, and errors name those flags).
// Empty fields select everything.
type Spec struct {
	ContainerID string // container id or a prefix of it
	CgroupID    uint64
	Pod         string // pod name, or namespace/name
	// Since and Until bound the records' time: RFC 3339, unix seconds, or
	// a duration ago (15m).
	Since, Until string
	// Syscalls are syscall names, comma-separated: events of other
	// syscalls are left out and, unless Kinds says otherwise, records of
	// the other kinds too.
	Syscalls string
	// Kinds are record kinds (audit.KindNames), comma-separated.
	Kinds string
	// Verdicts selects verdicts and actions (instead of Kinds).
	Verdicts bool
	// FromIndex selects records numbered FromIndex or more.
	FromIndex uint64
}

// Selection is a parsed Spec: the filter the log's reader applies, and the
// pod match that needs the records before.
type Selection struct {
	Filter audit.Filter
	// Read says which keys Show and Export check every frame's signature
	// with (the zero value: the key beside the log); they stop at the
	// first segment that does not verify unless Read.Unverified.
	Read audit.ReadOptions
	pod  *podMatcher
}

// Parse checks the spec and turns it into a Selection; durations count
// back from now.
func (s Spec) Parse(now time.Time) (*Selection, error) {
	sel := &Selection{}
	flt := &sel.Filter
	flt.ContainerID, flt.CgroupID, flt.FromIndex = s.ContainerID, s.CgroupID, s.FromIndex
	var err error
	if flt.Since, err = parseWhen("since", s.Since, now); err != nil {
		return nil, err
	}
	if flt.Until, err = parseWhen("until", s.Until, now); err != nil {
		return nil, err
	}
	for _, name := range splitList(s.Syscalls) {
		nr, ok := event.SyscallNr(name)
		if !ok {
			return nil, fmt.Errorf("--syscall %q: unknown syscall in the %s ABI", name, event.NativeABI())
		}
		flt.Syscalls = append(flt.Syscalls, int32(nr))
	}
	for _, name := range splitList(s.Kinds) {
		k, err := audit.ParseKind(name)
		if err != nil {
			return nil, fmt.Errorf("--kind: %w", err)
		}
		flt.Kinds = append(flt.Kinds, k)
	}
	if s.Verdicts {
		if len(flt.Kinds) > 0 {
			return nil, errors.New("--verdicts and --kind: give one of them")
		}
		flt.Kinds = []audit.Kind{audit.KindVerdict, audit.KindAction}
	}
	if len(flt.Syscalls) > 0 && len(flt.Kinds) == 0 {
		flt.Kinds = []audit.Kind{audit.KindEvent} // --syscall alone: just those events
	}
	if s.Pod != "" {
		sel.pod = &podMatcher{want: s.Pod, pods: map[string]string{}}
	}
	return sel, nil
}

// Match reports whether a record that passed the Filter is of the pod
// selected, if any. It learns pods from the records it sees, so it must
// see every record the Filter passes, in order.
func (s *Selection) Match(r *audit.Record) bool {
	return s.pod == nil || s.pod.match(r)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseWhen reads a time: RFC 3339, unix seconds or a duration ago.
func parseWhen(name, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Unix(0, int64(secs*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("--%s %q: want an RFC 3339 time (2026-11-28T21:00:00Z), unix seconds, or a duration ago (15m)", name, s)
}

// podMatcher selects records of a pod. Events carry their container's pod;
// other records are matched through the container ids seen in events,
// lifecycle records and verdicts before them.
type podMatcher struct {
	want string
	pods map[string]string // container id -> namespace/pod
}

func (p *podMatcher) match(r *audit.Record) bool {
	if r.Event != nil && r.Event.Container != nil {
		c := r.Event.Container
		p.pods[c.ID] = c.Namespace + "/" + c.Pod
	} else if r.Kind == audit.KindLifecycle || r.Kind == audit.KindVerdict {
		var b struct {
			Pod, Namespace string
			Container      *event.Container
		}
		if json.Unmarshal(r.Body, &b) == nil {
			if b.Container != nil {
				b.Pod, b.Namespace = b.Container.Pod, b.Container.Namespace
			}
			if b.Pod != "" && r.ContainerID != "" {
				p.pods[r.ContainerID] = b.Namespace + "/" + b.Pod
			}
		}
	}
	got := p.pods[r.ContainerID]
	if got == "" {
		return false
	}
	if strings.Contains(p.want, "/") {
		return got == p.want
	}
	_, name, _ := strings.Cut(got, "/")
	return name == p.want
}
