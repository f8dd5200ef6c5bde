package seccomp

import (
	"slices"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// verdict is what a filter does with one call, as libseccomp builds it: an
// unconditional rule for the syscall decides (a denial first), else the
// first conditional rule whose comparisons all hold, else the default.
type verdict struct {
	action specs.LinuxSeccompAction
	errno  uint
}

func evaluate(s *specs.LinuxSeccomp, name string, args ...uint64) verdict {
	v := func(a specs.LinuxSeccompAction, e *uint) verdict {
		if a == specs.ActErrno && e == nil {
			return verdict{a, uint(syscall.EPERM)}
		}
		return verdict{a, valueOf(e)}
	}
	var uncond []verdict
	for _, r := range s.Syscalls {
		if slices.Contains(r.Names, name) && len(r.Args) == 0 {
			uncond = append(uncond, v(r.Action, r.ErrnoRet))
		}
	}
	slices.SortStableFunc(uncond, func(a, b verdict) int { return rank(a.action) - rank(b.action) })
	if len(uncond) > 0 {
		return uncond[0]
	}
	for _, r := range s.Syscalls {
		if !slices.Contains(r.Names, name) {
			continue
		}
		match := true
		for _, c := range r.Args {
			var a uint64
			if int(c.Index) < len(args) {
				a = args[c.Index]
			}
			switch c.Op {
			case specs.OpEqualTo:
				match = match && a == c.Value
			case specs.OpMaskedEqual:
				match = match && a&c.Value == c.ValueTwo
			default:
				panic("comparison not modelled: " + string(c.Op))
			}
		}
		if match {
			return v(r.Action, r.ErrnoRet)
		}
	}
	return v(s.DefaultAction, s.DefaultErrnoRet)
}

func rank(a specs.LinuxSeccompAction) int {
	switch a {
	case specs.ActAllow, specs.ActLog:
		return 2
	case specs.ActNotify:
		return 1
	}
	return 0
}

var (
	allowV  = verdict{specs.ActAllow, 0}
	notifyV = verdict{specs.ActNotify, 0}
	enosysV = verdict{specs.ActErrno, uint(syscall.ENOSYS)}
	epermV  = verdict{specs.ActErrno, uint(syscall.EPERM)}
	eaccesV = verdict{specs.ActErrno, uint(syscall.EACCES)}
)

// podProfile is a pod's own (Localhost) profile: a few syscalls allowed,
// personality only for PER_LINUX, mkdir denied with EACCES, everything else
// ENOSYS.
func podProfile() *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: errnoPtr(syscall.ENOSYS),
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchAARCH64},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read", "write", "exit_group", "mkdirat", "unshare"}, Action: specs.ActAllow},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpEqualTo}}},
			{Names: []string{"mkdir"}, Action: specs.ActErrno, ErrnoRet: errnoPtr(syscall.EACCES)},
		}}
}

// allowedNames lists the syscalls a filter lets through without condition
// (allow or notify).
func allowedNames(s *specs.LinuxSeccomp) []string {
	var out []string
	for _, r := range s.Syscalls {
		if len(r.Args) == 0 && (r.Action == specs.ActAllow || r.Action == specs.ActNotify) {
			out = append(out, r.Names...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestBuildKeepsPodProfile: monitoring a pod that brings its own, stricter
// profile used to replace it with moby's default (hundreds of syscalls).
// Now every profile is intersected with it: what the pod denies stays
// denied with the pod's errno, its argument conditions hold, and only the
// syscalls it allows go to vigil's listener.
func TestBuildKeepsPodProfile(t *testing.T) {
	const listener = "/run/vigil/seccomp.sock"
	type call struct {
		name string
		args []uint64
		want verdict
		// answer is the Server's answer for a notified call.
		answer *Decision
	}
	common := []call{
		{name: "read", want: allowV},
		{name: "openat", want: enosysV},                                          // allowed by moby, not by the pod: the pod's errno
		{name: "mkdir", want: eaccesV, answer: &Decision{Errno: syscall.EACCES}}, // denied by the pod: not notified, answered as the pod
		{name: "ptrace", want: enosysV},                                          // notified by vigil, denied by the pod
	}
	personality := []call{
		{name: "personality", args: []uint64{0}, want: allowV},
		{name: "personality", args: []uint64{8}, want: enosysV}, // moby allows PER_LINUX32, the pod does not
	}
	tests := []struct {
		profile string
		o       Options
		calls   []call
	}{
		{Notify, Options{}, append([]call{
			{name: "mkdirat", want: notifyV, answer: &Decision{Allow: true}},
			{name: "unshare", want: notifyV, answer: &Decision{Errno: syscall.EPERM}}, // the pod allows it, moby does not
		}, personality...)},
		{RuntimeDefault, Options{}, append([]call{{name: "mkdirat", want: allowV}, {name: "unshare", want: epermV}}, personality...)},
		{Strict, Options{}, []call{{name: "mkdirat", want: allowV}, {name: "unshare", want: epermV}, {name: "personality", args: []uint64{0}, want: epermV}}},
		{Unconfined, Options{}, append([]call{{name: "mkdirat", want: allowV}, {name: "unshare", want: allowV}}, personality...)},
		{"plain", Options{}, []call{{name: "mkdirat", want: enosysV}, {name: "write", want: allowV}, {name: "personality", args: []uint64{0}, want: enosysV}}},
		{"no-mkdir", Options{AllowUnconfined: true, Floor: Notify}, append([]call{
			{name: "mkdirat", want: notifyV, answer: &Decision{Errno: syscall.EACCES}}, // no-mkdir's answer wins over notify's allow
			{name: "unshare", want: epermV},                                            // no-mkdir's denial
		}, personality...)},
	}
	for _, tt := range tests {
		t.Run(tt.profile, func(t *testing.T) {
			o := tt.o
			o.ListenerPath, o.ProfileDir, o.Pod = listener, "testdata", podProfile()
			p, err := Build(tt.profile, o)
			if err != nil {
				t.Fatal(err)
			}
			if got := allowedNames(p.Spec); len(got) > 5 {
				t.Errorf("%d syscalls allowed without condition (%v), the pod allows 5", len(got), got)
			}
			if p.Spec.DefaultAction != specs.ActErrno || valueOf(p.Spec.DefaultErrnoRet) != uint(syscall.ENOSYS) {
				t.Errorf("default %s %v, want the pod's ENOSYS", p.Spec.DefaultAction, p.Spec.DefaultErrnoRet)
			}
			if len(p.Spec.Architectures) > 2 || slices.Contains(p.Spec.Architectures, specs.ArchX32) {
				t.Errorf("architectures %v: more than the pod's", p.Spec.Architectures)
			}
			for _, c := range append(slices.Clone(common), tt.calls...) {
				if got := evaluate(p.Spec, c.name, c.args...); got != c.want {
					t.Errorf("%s%v: %v, want %v", c.name, c.args, got, c.want)
				}
				if c.answer == nil || p.Policy == nil {
					continue
				}
				if got := p.Policy.Decide(nr(t, c.name)); got != *c.answer {
					t.Errorf("%s: server answers %v, want %v", c.name, got, *c.answer)
				}
			}
			notifies := slices.ContainsFunc(p.Spec.Syscalls, func(r specs.LinuxSyscall) bool { return r.Action == specs.ActNotify })
			if notifies != (p.Policy != nil) || notifies != (p.Spec.ListenerPath == listener) {
				t.Errorf("notify rules %v, policy %v, listener %q", notifies, p.Policy != nil, p.Spec.ListenerPath)
			}
		})
	}
}

// TestBuildOnRuntimeDefaultUnchanged: a container that arrived with the
// runtime's default gets the profiles built on that default as they were
// (notify still sends what the default denies, answered EPERM).
func TestBuildOnRuntimeDefaultUnchanged(t *testing.T) {
	base, err := runtimeDefault(nil)
	if err != nil {
		t.Fatal(err)
	}
	alone, err := Build(Notify, Options{Base: base, ListenerPath: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	withPod, err := Build(Notify, Options{Base: base, Pod: clone(base), ListenerPath: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if evaluate(withPod.Spec, "unshare") != notifyV || withPod.Policy.Decide(nr(t, "unshare")) != (Decision{Errno: syscall.EPERM}) {
		t.Errorf("unshare: %v", evaluate(withPod.Spec, "unshare"))
	}
	if len(alone.Spec.Syscalls) != len(withPod.Spec.Syscalls) {
		t.Errorf("rules: %d alone, %d with the pod's runtime default", len(alone.Spec.Syscalls), len(withPod.Spec.Syscalls))
	}
}

// TestIntersectMobyWithItself: moby's default profile intersected with
// itself allows and denies the same calls, conditional rules included.
func TestIntersectMobyWithItself(t *testing.T) {
	m, err := runtimeDefault(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, pol := intersect(side{spec: m}, side{spec: clone(m)}, "")
	if pol != nil || got.ListenerPath != "" {
		t.Errorf("policy %v listener %q", pol, got.ListenerPath)
	}
	for _, c := range []struct {
		name string
		args []uint64
	}{{"read", nil}, {"unshare", nil}, {"personality", []uint64{0}}, {"personality", []uint64{0xffffffff}},
		{"personality", []uint64{0x1234}}, {"clone", []uint64{0}}, {"clone", []uint64{unix.CLONE_NEWUSER}}, {"clone3", nil}, {"kexec_load", nil}} {
		if a, b := evaluate(m, c.name, c.args...), evaluate(got, c.name, c.args...); a != b {
			t.Errorf("%s%v: %v, moby %v", c.name, c.args, b, a)
		}
	}
}

// TestNamedNotifyFailsClosed: a named profile's notify rule for a syscall
// vigil does not know, and notifications vigil has no answer for (x32
// numbers, syscalls not in the table), are denied, never allowed.
func TestNamedNotifyFailsClosed(t *testing.T) {
	p, err := Build("unknown-notify", Options{ListenerPath: "/x", ProfileDir: "testdata"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Spec.Syscalls {
		if r.Action == specs.ActNotify && (slices.Contains(r.Names, "vigil_no_such_syscall") || slices.Contains(r.Names, "vigil_other_unknown")) {
			t.Errorf("unknown syscall still notified: %+v", r)
		}
	}
	if got := evaluate(p.Spec, "vigil_no_such_syscall"); got != enosysV {
		t.Errorf("unknown notified syscall: %v, want ENOSYS", got)
	}
	if got := evaluate(p.Spec, "vigil_other_unknown"); got != eaccesV {
		t.Errorf("unknown notified syscall with errnoRet: %v, want its EACCES", got)
	}
	mkdir, rmdir := nr(t, "mkdir"), nr(t, "rmdir")
	tests := []struct {
		name string
		nr   int32
		want Decision
	}{
		{"listed", mkdir, Decision{Allow: true}},
		{"listed with errno", rmdir, Decision{Errno: syscall.EACCES}},
		{"not in the table", nr(t, "openat"), Decision{Errno: syscall.ENOSYS}},
		{"x32 number of a listed syscall", mkdir | x32SyscallBit, Decision{Errno: syscall.ENOSYS}},
		{"x32 number", 0x40000000 | 83, Decision{Errno: syscall.ENOSYS}},
		{"negative", -1, Decision{Errno: syscall.ENOSYS}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Policy.Decide(tt.nr); got != tt.want {
				t.Errorf("Decide(%#x) = %v, want %v", tt.nr, got, tt.want)
			}
		})
	}
	// A policy that allows by default still denies foreign numbers.
	open := &Policy{Decisions: map[int32]Decision{mkdir: {Allow: true}}, Default: Decision{Allow: true}}
	if d := open.Decide(mkdir | x32SyscallBit); d.Allow {
		t.Errorf("x32 mkdir allowed by an allowing default: %v", d)
	}
}

// TestServerDeniesX32: the Server answers x32 notifications (native
// AUDIT_ARCH, __X32_SYSCALL_BIT set) and other ABIs with ENOSYS, whatever
// the container's policy or the fallback say.
func TestServerDeniesX32(t *testing.T) {
	allowAll := &Policy{Default: Decision{Allow: true}}
	s, err := NewServer(t.TempDir()+"/s.sock", allowAll, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.SetPolicy("c", allowAll)
	mkdir := nr(t, "mkdir")
	tests := []struct {
		name string
		id   string
		nr   int32
		arch uint32
		want Decision
	}{
		{"native", "c", mkdir, nativeAuditArch, Decision{Allow: true}},
		{"x32", "c", mkdir | x32SyscallBit, nativeAuditArch, Decision{Errno: syscall.ENOSYS}},
		{"x32 on the fallback", "gone", mkdir | x32SyscallBit, nativeAuditArch, Decision{Errno: syscall.ENOSYS}},
		{"i386", "c", 39, unix.AUDIT_ARCH_I386, Decision{Errno: syscall.ENOSYS}},
		{"negative", "c", -1, nativeAuditArch, Decision{Errno: syscall.ENOSYS}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := s.decide(tt.id, tt.nr, tt.arch); got != tt.want {
				t.Errorf("decide(%#x, %#x) = %v, want %v", tt.nr, tt.arch, got, tt.want)
			}
		})
	}
}
