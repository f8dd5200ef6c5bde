// Package seccomp owns vigil's seccomp profiles and its seccomp user
// notification server.
//
// Profiles: runtime-default (moby's default profile, or the runtime's own
// default when the container arrives with one), strict (runtime-default
// minus escape-prone syscalls), notify (runtime-default with a set of
// sensitive syscalls sent to vigil's listener), unconfined, and named
// profiles (NAME.json) from a node directory. Build returns the OCI policy
// to inject and the answers the notify Server gives for the notified
// syscalls; ToNRI converts the policy to an NRI adjustment.
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

// Decide answers syscall nr.
func (p *Policy) Decide(nr int32) Decision {
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
}

// Build returns profile name.
func Build(name string, o Options) (*Profile, error) {
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
// the default action (EPERM when none is given).
func notifyPolicy(s *specs.LinuxSeccomp, names []string) *Policy {
	p := &Policy{Decisions: map[int32]Decision{}, Default: defaultDecision(s)}
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
// so it is kept in the Policy and removed from the Spec.
func loadNamed(name string, o Options) (*specs.LinuxSeccomp, *Policy, error) {
	if o.ProfileDir == "" || name == "" || strings.ContainsAny(name, "/\x00") || name[0] == '.' {
		return nil, nil, fmt.Errorf("seccomp profile %q: unknown (built-in: %s, %s, %s, %s; named profiles need a profile directory)",
			name, RuntimeDefault, Strict, Notify, Unconfined)
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
	var pol *Policy
	for i, r := range s.Syscalls {
		if r.Action != specs.ActNotify {
			continue
		}
		if pol == nil {
			pol = &Policy{Decisions: map[int32]Decision{}, Default: Decision{Allow: true}}
		}
		d := Decision{Allow: true}
		if r.ErrnoRet != nil {
			d = Decision{Errno: syscall.Errno(*r.ErrnoRet)}
		}
		for _, n := range r.Names {
			if nr, ok := event.SyscallNr(n); ok {
				pol.Decisions[int32(nr)] = d
			}
		}
		s.Syscalls[i].ErrnoRet = nil
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
// directory has none.
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
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && !e.IsDir() && n != "" && n[0] != '.' {
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
