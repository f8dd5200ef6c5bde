// Package seccomp owns vigil's seccomp profiles and its seccomp user
// notification server.
//
// Profiles: runtime-default (moby's default profile, or the runtime's own
// default when the container arrives with one), strict (runtime-default
// minus escape-prone syscalls), notify (runtime-default with a set of
// sensitive syscalls sent to vigil's listener), unconfined, and named
// profiles (NAME.json) from a node directory. Build returns the OCI policy
// to inject and the answers the notify Server gives for the notified
// syscalls. A built profile never allows what the policy the container
// arrived with denies (Options.Pod), and a named profile never goes below
// the node's floor (Options.Floor).
//
// The Server needs Linux ≥ 5.0 (SECCOMP_FILTER_FLAG_NEW_LISTENER, 5.5 for
// SECCOMP_USER_NOTIF_FLAG_CONTINUE) and a runc that supports listenerPath
// (≥ 1.1). See seccomp_unotify(2).
package seccomp

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"vigil.dev/vigil/event"
)

// Built-in profile names (the values of the vigil.dev/seccomp annotation).
const (
	RuntimeDefault = "runtime-default"
	Strict         = "strict"
	Notify         = "notify"
	Unconfined     = "unconfined"
)

// StrictDenied lists the syscalls that strict removes from runtime-default:
// namespace and mount manipulation, tracing, kernel keyrings, BPF, module
// and kernel loading, userfaultfd and io_uring (frequent exploit
// primitives), perf and handle-based opens.
var StrictDenied = []string{
	"unshare", "setns", "mount", "umount", "umount2", "pivot_root", "chroot",
	"move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	"ptrace", "process_vm_readv", "process_vm_writev",
	"bpf", "keyctl", "add_key", "request_key", "userfaultfd",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
	"perf_event_open", "open_by_handle_at", "name_to_handle_at", "personality",
}

// NotifySet lists the syscalls the notify profile sends to vigil's
// listener. The Server answers each as runtime-default would have (allow or
// EPERM), so behaviour is unchanged while every attempt is seen and
// audited; the control loop may later deny more. None of them takes part in
// an argument-conditional rule of the default profile.
var NotifySet = []string{
	"mkdir", "mkdirat", "mknod", "mknodat",
	"unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
	"ptrace", "bpf", "keyctl", "add_key", "request_key", "userfaultfd",
	"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
	"perf_event_open", "open_by_handle_at",
}

// DefaultCapabilities is the bounding set containerd gives an unprivileged
// container; it selects the capability-conditional rules of moby's profile
// when the runtime did not send its own default policy.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Decision is the Server's answer to one notified syscall.
type Decision struct {
	Allow bool          // continue the syscall in the kernel
	Errno syscall.Errno // when not allowed: the error the caller sees
}

func (d Decision) String() string {
	if d.Allow {
		return "allow"
	}
	return "deny " + event.ErrnoName(int(d.Errno))
}

// Policy is the static answer table of one container: syscall number (of
// the native ABI) → decision, and the decision for syscalls not in it.
type Policy struct {
	Decisions map[int32]Decision
	Default   Decision
}

// x32SyscallBit marks the syscall numbers of the x32 ABI, which x86_64
// filters see with the native AUDIT_ARCH (arch/x86/include/uapi/asm/unistd.h,
// __X32_SYSCALL_BIT). No native number of any ABI has it set.
const x32SyscallBit = 0x40000000

// foreignNr reports whether nr cannot be a syscall number of the native ABI
// (an x32 number, or a negative one): the tables know nothing of it.
func foreignNr(nr int32) bool { return nr < 0 || nr&x32SyscallBit != 0 }

// Decide answers syscall nr. A number that is not of the native ABI (x32's,
// negative) is denied with ENOSYS, whatever the table says.
func (p *Policy) Decide(nr int32) Decision {
	if foreignNr(nr) {
		return Decision{Errno: syscall.ENOSYS}
	}
	if d, ok := p.Decisions[nr]; ok {
		return d
	}
	return p.Default
}

// Profile is a built profile: the OCI policy to inject and, when it sends
// syscalls to the listener, the Server's answers.
type Profile struct {
	Name   string
	Spec   *specs.LinuxSeccomp
	Policy *Policy // nil when no syscall is notified
}

// Options for Build.
type Options struct {
	// Base is the runtime's default policy for the container, if it came with
	// one (NRI passes it for RuntimeDefault containers); nil uses moby's
	// default profile with DefaultCapabilities.
	Base *specs.LinuxSeccomp
	// ListenerPath is the notify Server's socket.
	ListenerPath string
	// ProfileDir holds named profiles (NAME.json, OCI or moby format).
	ProfileDir string
	// Pod is the policy the container arrived with: the runtime's default or
	// the pod's own (Localhost) profile; nil when it arrived unconfined. The
	// built profile is intersected with it (see intersect): it never allows
	// what Pod denies, and notifies only syscalls Pod allows. When Pod is
	// Base, the profiles built on Base (runtime-default, strict, notify) are
	// already within it and are left as they are.
	Pod *specs.LinuxSeccomp
	// Floor is the least protective built-in profile allowed ("" or
	// unconfined: none; see MeetsFloor). A built-in profile below it is an
	// error; a named profile is intersected with it.
	Floor string
	// AllowUnconfined lets a named profile whose default action allows
	// (which counts as unconfined) be used.
	AllowUnconfined bool
}

// IsBuiltin reports whether name is a built-in profile's name.
func IsBuiltin(name string) bool {
	return slices.Contains([]string{RuntimeDefault, Strict, Notify, Unconfined}, name)
}

// MeetsFloor reports whether built-in profile name is at least as
// protective as floor: every profile meets unconfined (or ""), and
// runtime-default is met by runtime-default, strict and notify; strict and
// notify are met only by themselves (strict does not send syscalls to
// vigil, notify does not deny strict's).
func MeetsFloor(name, floor string) bool {
	switch floor {
	case "", Unconfined:
		return true
	case RuntimeDefault:
		return name == RuntimeDefault || name == Strict || name == Notify
	}
	return name == floor
}

// Build returns profile name: the built-in or named profile, intersected
// with the node's floor when it is named, then with the policy the
// container arrived with (Options.Pod).
func Build(name string, o Options) (*Profile, error) {
	switch o.Floor {
	case "", Unconfined, RuntimeDefault, Strict, Notify:
	default:
		return nil, fmt.Errorf("seccomp floor %q: allowed values are %q, %q, %q, %q", o.Floor, Unconfined, RuntimeDefault, Strict, Notify)
	}
	p, err := build(name, o)
	if err != nil {
		return nil, err
	}
	if IsBuiltin(name) && !MeetsFloor(name, o.Floor) {
		return nil, fmt.Errorf("seccomp profile %q is below the node's floor %q", name, o.Floor)
	}
	if !IsBuiltin(name) && o.Floor != "" && o.Floor != Unconfined {
		floor, err := build(o.Floor, o)
		if err != nil {
			return nil, err
		}
		p.Spec, p.Policy = intersect(side{p.Spec, p.Policy}, side{floor.Spec, floor.Policy}, o.ListenerPath)
	}
	onBase := o.Base != nil && (name == RuntimeDefault || name == Strict || name == Notify) && reflect.DeepEqual(o.Pod, o.Base)
	if o.Pod != nil && !onBase {
		p.Spec, p.Policy = intersect(side{spec: o.Pod}, side{p.Spec, p.Policy}, o.ListenerPath)
	}
	return p, nil
}

// build returns profile name alone.
func build(name string, o Options) (*Profile, error) {
	base, err := runtimeDefault(o.Base)
	if err != nil {
		return nil, err
	}
	p := &Profile{Name: name}
	switch name {
	case RuntimeDefault:
		p.Spec = base
	case Strict:
		p.Spec = withRule(base, StrictDenied, specs.LinuxSyscall{Action: specs.ActErrno, ErrnoRet: errnoPtr(syscall.EPERM)})
	case Notify:
		if o.ListenerPath == "" {
			return nil, errors.New("notify profile: no listener path")
		}
		p.Policy = notifyPolicy(base, NotifySet)
		p.Spec = withRule(base, NotifySet, specs.LinuxSyscall{Action: specs.ActNotify})
		p.Spec.ListenerPath = o.ListenerPath
	case Unconfined:
		p.Spec = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
	default:
		if p.Spec, p.Policy, err = loadNamed(name, o); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func errnoPtr(e syscall.Errno) *uint { u := uint(e); return &u }

// runtimeDefault returns a deep copy of base, or moby's default profile.
func runtimeDefault(base *specs.LinuxSeccomp) (*specs.LinuxSeccomp, error) {
	if base != nil {
		return clone(base), nil
	}
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: DefaultCapabilities}}}
	s, err := mobyseccomp.GetDefaultProfile(spec)
	if err != nil {
		return nil, fmt.Errorf("default seccomp profile: %w", err)
	}
	return s, nil
}

func clone(s *specs.LinuxSeccomp) *specs.LinuxSeccomp {
	data, _ := json.Marshal(s) // cannot fail: plain data
	var out specs.LinuxSeccomp
	_ = json.Unmarshal(data, &out)
	return &out
}

// withRule returns a copy of s where names appear only in one new rule
// (r with Names set): they are removed from every other rule, and rules
// left with no name are dropped.
func withRule(s *specs.LinuxSeccomp, names []string, r specs.LinuxSyscall) *specs.LinuxSeccomp {
	out := clone(s)
	out.Syscalls = out.Syscalls[:0]
	for _, rule := range clone(s).Syscalls {
		rule.Names = slices.DeleteFunc(rule.Names, func(n string) bool { return slices.Contains(names, n) })
		if len(rule.Names) > 0 {
			out.Syscalls = append(out.Syscalls, rule)
		}
	}
	r.Names = slices.Clone(names)
	out.Syscalls = append(out.Syscalls, r)
	return out
}

// notifyPolicy answers each of names as s would have: allowed when an
// unconditional allow rule names it, otherwise the errno of its rule or of
// the default action (EPERM when none is given). Syscalls it has no answer
// for are denied (with the default's errno, ENOSYS when the default allows).
func notifyPolicy(s *specs.LinuxSeccomp, names []string) *Policy {
	p := &Policy{Decisions: map[int32]Decision{}, Default: defaultDecision(s)}
	if p.Default.Allow {
		p.Default = Decision{Errno: syscall.ENOSYS}
	}
	for _, n := range names {
		nr, ok := event.SyscallNr(n)
		if !ok {
			continue
		}
		d := p.Default
		for _, r := range s.Syscalls {
			if len(r.Args) == 0 && slices.Contains(r.Names, n) {
				d = ruleDecision(r)
			}
		}
		p.Decisions[int32(nr)] = d
	}
	return p
}

func defaultDecision(s *specs.LinuxSeccomp) Decision {
	switch s.DefaultAction {
	case specs.ActAllow, specs.ActLog:
		return Decision{Allow: true}
	}
	if s.DefaultErrnoRet != nil {
		return Decision{Errno: syscall.Errno(*s.DefaultErrnoRet)}
	}
	return Decision{Errno: syscall.EPERM}
}

func ruleDecision(r specs.LinuxSyscall) Decision {
	switch r.Action {
	case specs.ActAllow, specs.ActLog:
		return Decision{Allow: true}
	}
	if r.ErrnoRet != nil {
		return Decision{Errno: syscall.Errno(*r.ErrnoRet)}
	}
	return Decision{Errno: syscall.EPERM}
}

// loadNamed reads a named profile from the node's directory. Rules with
// action SCMP_ACT_NOTIFY are answered by the Server: with errnoRet, a denial
// with that errno; without, allow. runc rejects errnoRet on a notify rule,
// so it is kept in the Policy and removed from the Spec. A notify rule's
// syscalls that vigil's table does not know get an errno rule instead (the
// rule's errnoRet, else ENOSYS): the Server could not tell their
// notifications apart. Anything else notified is denied with ENOSYS. Names
// of built-in profiles are refused, and so is a profile whose default
// action allows (it counts as unconfined) unless o.AllowUnconfined.
func loadNamed(name string, o Options) (*specs.LinuxSeccomp, *Policy, error) {
	if o.ProfileDir == "" || name == "" || strings.ContainsAny(name, "/\x00") || name[0] == '.' {
		return nil, nil, fmt.Errorf("seccomp profile %q: unknown (built-in: %s, %s, %s, %s; named profiles need a profile directory)",
			name, RuntimeDefault, Strict, Notify, Unconfined)
	}
	if IsBuiltin(name) {
		return nil, nil, fmt.Errorf("seccomp profile %q: the name of a built-in profile: %s.json in %s is never used", name, name, o.ProfileDir)
	}
	path := filepath.Join(o.ProfileDir, name+".json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("seccomp profile %q: %w", name, err)
	}
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: DefaultCapabilities}}}
	s, err := mobyseccomp.LoadProfile(string(data), spec)
	if err != nil {
		return nil, nil, fmt.Errorf("seccomp profile %s: %w", path, err)
	}
	if s == nil {
		return nil, nil, fmt.Errorf("seccomp profile %s: empty", path)
	}
	if (s.DefaultAction == specs.ActAllow || s.DefaultAction == specs.ActLog) && !o.AllowUnconfined {
		return nil, nil, fmt.Errorf("seccomp profile %s: default action %s makes it unconfined, which this node does not allow (allowUnconfined is false)", path, s.DefaultAction)
	}
	var pol *Policy
	var unknown []specs.LinuxSyscall
	for i, r := range s.Syscalls {
		if r.Action != specs.ActNotify {
			continue
		}
		if pol == nil {
			pol = &Policy{Decisions: map[int32]Decision{}, Default: Decision{Errno: syscall.ENOSYS}}
		}
		d := Decision{Allow: true}
		if r.ErrnoRet != nil {
			d = Decision{Errno: syscall.Errno(*r.ErrnoRet)}
		}
		var known []string
		var other specs.LinuxSyscall
		for _, n := range r.Names {
			nr, ok := event.SyscallNr(n)
			if !ok {
				other.Names = append(other.Names, n)
				continue
			}
			pol.Decisions[int32(nr)] = d
			known = append(known, n)
		}
		if len(other.Names) > 0 {
			other.Action, other.Args = specs.ActErrno, r.Args
			other.ErrnoRet = errnoPtr(syscall.ENOSYS)
			if r.ErrnoRet != nil {
				other.ErrnoRet = copyUint(r.ErrnoRet)
			}
			unknown = append(unknown, other)
		}
		s.Syscalls[i].Names = known
		s.Syscalls[i].ErrnoRet = nil
	}
	s.Syscalls = slices.DeleteFunc(s.Syscalls, func(r specs.LinuxSyscall) bool { return len(r.Names) == 0 })
	s.Syscalls = append(s.Syscalls, unknown...)
	if pol != nil && len(pol.Decisions) == 0 {
		pol = nil // every notified name was unknown: nothing is sent to the listener
	}
	if pol != nil {
		if o.ListenerPath == "" {
			return nil, nil, fmt.Errorf("seccomp profile %s: notify rules need a listener path", path)
		}
		s.ListenerPath = o.ListenerPath
	}
	return s, pol, nil
}

// ListNamed returns the profile names (NAME.json) in dir, sorted; a missing
// directory has none. Files named as a built-in profile (unconfined.json,
// …) are left out: the built-in name always means the built-in profile.
func ListNamed(dir string) ([]string, error) {
	if dir == "" {
		return nil, nil
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list seccomp profiles: %w", err)
	}
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && !e.IsDir() && n != "" && n[0] != '.' && !IsBuiltin(n) {
			names = append(names, n)
		}
	}
	return names, nil
}

// ExpandDefaultErrno works around runtimes that drop the policy's
// defaultErrnoRet (NRI v0.12's adjustment generator does: runc then
// returns EPERM for the default action). When the default action is
// SCMP_ACT_ERRNO with an errno other than EPERM, it returns a copy with an
// explicit rule giving that errno to every syscall of the native ABI that no
// rule names, so the errno survives. Syscalls that only appear in
// argument-conditional rules still get EPERM when no condition matches.
// Other policies are returned as they are.
func ExpandDefaultErrno(s *specs.LinuxSeccomp) *specs.LinuxSeccomp {
	if s == nil || s.DefaultAction != specs.ActErrno || s.DefaultErrnoRet == nil || *s.DefaultErrnoRet == uint(syscall.EPERM) {
		return s
	}
	named := map[string]bool{}
	for _, r := range s.Syscalls {
		for _, n := range r.Names {
			named[n] = true
		}
	}
	var rest []string
	for _, n := range event.NativeABI().Names() {
		if !named[n] {
			rest = append(rest, n)
		}
	}
	out := clone(s)
	if len(rest) > 0 {
		errno := *s.DefaultErrnoRet
		out.Syscalls = append(out.Syscalls, specs.LinuxSyscall{Names: rest, Action: specs.ActErrno, ErrnoRet: &errno})
	}
	return out
}
