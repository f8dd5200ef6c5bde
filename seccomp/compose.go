package seccomp

import (
	"reflect"
	"slices"
	"sort"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"vigil.dev/vigil/event"
)

// outcome is what a policy does with one syscall when no argument decides:
// its action, the errno of an errno action, and for a notify action the
// Server's answer.
type outcome struct {
	action specs.LinuxSeccompAction
	errno  *uint
	answer Decision
}

func (o outcome) allows() bool { return o.action == specs.ActAllow || o.action == specs.ActLog }

func (o outcome) notifies() bool { return o.action == specs.ActNotify }

// denies reports whether the kernel refuses the syscall (errno, kill, trap,
// trace) without asking the listener.
func (o outcome) denies() bool { return !o.allows() && !o.notifies() }

func (o outcome) same(p outcome) bool {
	return o.action == p.action && valueOf(o.errno) == valueOf(p.errno) && (!o.notifies() || o.answer == p.answer)
}

func valueOf(u *uint) uint {
	if u == nil {
		return 0
	}
	return *u
}

// decision is the Server's answer for o: the notify answer, allow, or the
// errno the kernel would give (EPERM for actions that give none).
func (o outcome) decision() Decision {
	switch {
	case o.notifies():
		return o.answer
	case o.allows():
		return Decision{Allow: true}
	case o.action == specs.ActErrno && o.errno != nil:
		return Decision{Errno: syscall.Errno(*o.errno)}
	}
	return Decision{Errno: syscall.EPERM}
}

// treatment is how a policy handles one syscall: one unconditional outcome,
// or argument-conditional rules (uncond nil) whose unmatched calls take the
// policy's default action.
type treatment struct {
	uncond *outcome
	rules  []specs.LinuxSyscall // each with Names set to the one syscall
	answer Decision             // the Server's answer to the notify rules among rules
}

// side is one policy taking part in an intersection: its OCI spec and, when
// it notifies, the answers of its listener (nil: its notify rules count as
// denials with EPERM, vigil cannot answer for another listener).
type side struct {
	spec   *specs.LinuxSeccomp
	policy *Policy
}

func (s side) defaultOutcome() outcome {
	return s.outcome(specs.LinuxSyscall{Action: s.spec.DefaultAction, ErrnoRet: s.spec.DefaultErrnoRet}, "")
}

// outcome of rule r for syscall name (name "" for the default action).
func (s side) outcome(r specs.LinuxSyscall, name string) outcome {
	o := outcome{action: r.Action, errno: r.ErrnoRet}
	if o.action == "" {
		o.action = specs.ActErrno
	}
	if o.action == specs.ActErrno && o.errno == nil {
		o.errno = errnoPtr(syscall.EPERM)
	}
	if !o.notifies() {
		o.errno = copyUint(o.errno)
		return o
	}
	if s.policy == nil {
		return outcome{action: specs.ActErrno, errno: errnoPtr(syscall.EPERM)}
	}
	o.errno = nil
	if name == "" {
		o.answer = s.policy.Default
	} else if nr, ok := event.SyscallNr(name); ok {
		o.answer = s.policy.Decide(int32(nr))
	} else {
		o.answer = Decision{Errno: syscall.ENOSYS}
	}
	return o
}

func copyUint(u *uint) *uint {
	if u == nil {
		return nil
	}
	v := *u
	return &v
}

// treatment of syscall name. Several unconditional rules: the first denial
// wins, then a notification, then an allow (libseccomp lets an
// unconditional rule replace conditional ones).
func (s side) treatment(name string) treatment {
	var deny, notify, allow *outcome
	var rules []specs.LinuxSyscall
	var answer Decision
	for _, r := range s.spec.Syscalls {
		if !slices.Contains(r.Names, name) {
			continue
		}
		if len(r.Args) > 0 {
			c := r
			c.Names = []string{name}
			c.Args = slices.Clone(r.Args)
			c.ErrnoRet = copyUint(r.ErrnoRet)
			if c.Action == specs.ActNotify {
				o := s.outcome(c, name)
				if o.notifies() {
					answer = o.answer
				} else {
					c.Action, c.ErrnoRet = o.action, o.errno
				}
			}
			rules = append(rules, c)
			continue
		}
		o := s.outcome(r, name)
		switch {
		case o.denies() && deny == nil:
			deny = &o
		case o.notifies() && notify == nil:
			notify = &o
		case o.allows() && allow == nil:
			allow = &o
		}
	}
	for _, o := range []*outcome{deny, notify, allow} {
		if o != nil {
			return treatment{uncond: o}
		}
	}
	if len(rules) > 0 {
		return treatment{rules: rules, answer: answer}
	}
	d := s.defaultOutcome()
	return treatment{uncond: &d}
}

// meetAnswers is the answer when two listeners' answers must both allow.
func meetAnswers(a, b Decision) Decision {
	if !a.Allow {
		return a
	}
	return b
}

// meet intersects two treatments of one syscall: the result allows a call
// only when both do. A denial keeps the action and errno of the side that
// denies (a first). fallback is the outcome used when conditional rules of
// both sides cannot be combined: a denial.
func meet(a, b treatment, fallback outcome) treatment {
	switch {
	case a.uncond != nil && a.uncond.denies():
		return a
	case b.uncond != nil && b.uncond.denies():
		return b
	case a.uncond != nil && a.uncond.allows():
		return b
	case b.uncond != nil && b.uncond.allows():
		return a
	case a.uncond != nil && b.uncond != nil: // both notify
		o := *a.uncond
		o.answer = meetAnswers(a.uncond.answer, b.uncond.answer)
		return treatment{uncond: &o}
	case a.uncond != nil: // a notifies, b is conditional
		return treatment{rules: notifyRules(b.rules), answer: meetAnswers(a.uncond.answer, b.answer)}
	case b.uncond != nil: // b notifies, a is conditional
		return treatment{rules: notifyRules(a.rules), answer: meetAnswers(a.answer, b.uncond.answer)}
	}
	// Both conditional.
	if reflect.DeepEqual(a.rules, b.rules) {
		return treatment{rules: a.rules, answer: meetAnswers(a.answer, b.answer)}
	}
	for _, r := range slices.Concat(a.rules, b.rules) {
		if r.Action != specs.ActAllow && r.Action != specs.ActLog {
			// A conditional denial or notification of either side would
			// overlap the combined allow rules: deny the syscall outright.
			return treatment{uncond: &fallback}
		}
	}
	var rules []specs.LinuxSyscall
	for _, ra := range a.rules {
		for _, rb := range b.rules {
			if r, ok := bothArgs(ra, rb); ok {
				rules = append(rules, r)
			}
		}
	}
	if len(rules) == 0 {
		return treatment{uncond: &fallback}
	}
	return treatment{rules: rules}
}

// bothArgs returns ra with rb's comparisons added: a rule matching the
// calls both match. libseccomp takes one comparison per argument, so when
// both compare one argument differently the pair is left out (ok false):
// the calls only it would allow are denied.
func bothArgs(ra, rb specs.LinuxSyscall) (specs.LinuxSyscall, bool) {
	r := ra
	r.Args = slices.Clone(ra.Args)
	for _, arg := range rb.Args {
		i := slices.IndexFunc(r.Args, func(x specs.LinuxSeccompArg) bool { return x.Index == arg.Index })
		switch {
		case i < 0:
			r.Args = append(r.Args, arg)
		case r.Args[i] != arg:
			return r, false
		}
	}
	return r, true
}

// notifyRules turns the allow rules among rules into notify rules; other
// rules stay.
func notifyRules(rules []specs.LinuxSyscall) []specs.LinuxSyscall {
	out := make([]specs.LinuxSyscall, len(rules))
	for i, r := range rules {
		if r.Action == specs.ActAllow || r.Action == specs.ActLog {
			r.Action, r.ErrnoRet = specs.ActNotify, nil
		}
		out[i] = r
	}
	return out
}

// intersect returns a policy that allows a syscall only when both a and b
// allow it. A syscall that one side denies stays denied with that side's
// action and errno (a's when both deny); argument-conditional rules are
// kept; a syscall one side sends to the listener while the other allows it
// is sent to the listener, and the Server answers it as that side's policy
// does (deny when both sides notify and either answer denies). A syscall
// the result denies is never sent to the listener, but the returned Policy
// answers it as the result would, should a notification come anyway.
//
// The default action is a's when it denies, else b's. Conditional rules
// take it when no condition matches: when a side's default allows, a
// syscall it names only in conditional rules is then denied for the
// arguments its rules do not match (stricter than the intersection). When
// both sides have different conditional rules for a syscall, the result
// allows the calls that match one rule of each (see bothArgs); when either
// has conditional denials there, the syscall is denied outright.
//
// The result keeps the architectures and flags both sides have (a side
// without architectures has the native one only). listener is the
// listener path of the result when it notifies.
func intersect(a, b side, listener string) (*specs.LinuxSeccomp, *Policy) {
	def := a.defaultOutcome()
	if !def.denies() {
		if bd := b.defaultOutcome(); bd.denies() || def.allows() {
			def = bd
		}
	}
	out := &specs.LinuxSeccomp{DefaultAction: def.action, DefaultErrnoRet: copyUint(def.errno)}
	if def.action != specs.ActErrno {
		out.DefaultErrnoRet = nil
	}
	if len(a.spec.Architectures) > 0 && len(b.spec.Architectures) > 0 {
		for _, arch := range a.spec.Architectures {
			if slices.Contains(b.spec.Architectures, arch) {
				out.Architectures = append(out.Architectures, arch)
			}
		}
	}
	for _, f := range a.spec.Flags {
		if slices.Contains(b.spec.Flags, f) {
			out.Flags = append(out.Flags, f)
		}
	}
	fallback := def
	if !fallback.denies() {
		fallback = outcome{action: specs.ActErrno, errno: errnoPtr(syscall.EPERM)}
	}

	names := map[string]bool{}
	for _, s := range []side{a, b} {
		for _, r := range s.spec.Syscalls {
			for _, n := range r.Names {
				names[n] = true
			}
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)

	pol := &Policy{Decisions: map[int32]Decision{}, Default: def.decision()}
	if pol.Default.Allow {
		pol.Default = Decision{Errno: syscall.ENOSYS}
	}
	notified := false
	type group struct {
		o     outcome
		names []string
	}
	var groups []*group
	var conditional []specs.LinuxSyscall
	for _, n := range sorted {
		ta, tb := a.treatment(n), b.treatment(n)
		t := meet(ta, tb, fallback)
		asked := (ta.uncond != nil && ta.uncond.notifies()) || (tb.uncond != nil && tb.uncond.notifies()) ||
			hasNotify(ta.rules) || hasNotify(tb.rules)
		if t.uncond == nil {
			conditional = append(conditional, t.rules...)
			if hasNotify(t.rules) {
				notified = true
				asked = true
			}
		} else if t.uncond.notifies() {
			notified = true
		}
		if asked {
			if nr, ok := event.SyscallNr(n); ok {
				pol.Decisions[int32(nr)] = treatmentDecision(t)
			}
		}
		if t.uncond == nil || t.uncond.same(def) {
			continue
		}
		i := slices.IndexFunc(groups, func(g *group) bool { return g.o.same(*t.uncond) })
		if i < 0 {
			groups = append(groups, &group{o: *t.uncond})
			i = len(groups) - 1
		}
		groups[i].names = append(groups[i].names, n)
	}
	for _, g := range groups {
		r := specs.LinuxSyscall{Names: g.names, Action: g.o.action}
		if g.o.action == specs.ActErrno {
			r.ErrnoRet = copyUint(g.o.errno)
		}
		out.Syscalls = append(out.Syscalls, r)
	}
	out.Syscalls = append(out.Syscalls, conditional...)
	if def.notifies() {
		notified = true
	}
	if !notified {
		return out, nil
	}
	out.ListenerPath = listener
	return out, pol
}

func hasNotify(rules []specs.LinuxSyscall) bool {
	return slices.ContainsFunc(rules, func(r specs.LinuxSyscall) bool { return r.Action == specs.ActNotify })
}

// treatmentDecision is how the Server answers a notification for a syscall
// treated so: the notify answer, or what the kernel would have done.
func treatmentDecision(t treatment) Decision {
	if t.uncond != nil {
		return t.uncond.decision()
	}
	if hasNotify(t.rules) {
		return t.answer
	}
	return Decision{Errno: syscall.EPERM}
}
