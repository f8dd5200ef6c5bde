package seccomp

import (
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"vigil.dev/vigil/event"
)

// actionOf returns the actions of the unconditional rules naming name.
func actionOf(s *specs.LinuxSeccomp, name string) []specs.LinuxSeccompAction {
	var out []specs.LinuxSeccompAction
	for _, r := range s.Syscalls {
		if len(r.Args) == 0 && slices.Contains(r.Names, name) {
			out = append(out, r.Action)
		}
	}
	return out
}

func nr(t *testing.T, name string) int32 {
	t.Helper()
	n, ok := event.SyscallNr(name)
	if !ok {
		t.Fatalf("no syscall %q", name)
	}
	return int32(n)
}

func TestBuild(t *testing.T) {
	const listener = "/run/vigil/seccomp.sock"
	tests := []struct {
		name  string
		check func(t *testing.T, p *Profile)
	}{
		{RuntimeDefault, func(t *testing.T, p *Profile) {
			if p.Spec.DefaultAction != specs.ActErrno || p.Policy != nil || p.Spec.ListenerPath != "" {
				t.Errorf("default action %s, policy %v, listener %q", p.Spec.DefaultAction, p.Policy, p.Spec.ListenerPath)
			}
			if got := actionOf(p.Spec, "read"); !reflect.DeepEqual(got, []specs.LinuxSeccompAction{specs.ActAllow}) {
				t.Errorf("read: %v, want allowed", got)
			}
			if got := actionOf(p.Spec, "unshare"); len(got) != 0 {
				t.Errorf("unshare allowed without CAP_SYS_ADMIN: %v", got)
			}
		}},
		{Strict, func(t *testing.T, p *Profile) {
			for _, n := range []string{"unshare", "setns", "mount", "ptrace", "bpf", "keyctl", "userfaultfd", "io_uring_setup", "finit_module", "perf_event_open"} {
				if got := actionOf(p.Spec, n); !reflect.DeepEqual(got, []specs.LinuxSeccompAction{specs.ActErrno}) {
					t.Errorf("%s: actions %v, want only errno", n, got)
				}
			}
			if got := actionOf(p.Spec, "ptrace"); len(got) != 1 {
				t.Errorf("ptrace still allowed: %v", got)
			}
			if got := actionOf(p.Spec, "read"); !reflect.DeepEqual(got, []specs.LinuxSeccompAction{specs.ActAllow}) {
				t.Errorf("read: %v", got)
			}
		}},
		{Notify, func(t *testing.T, p *Profile) {
			if p.Spec.ListenerPath != listener {
				t.Errorf("listener %q", p.Spec.ListenerPath)
			}
			for _, n := range NotifySet {
				if got := actionOf(p.Spec, n); !reflect.DeepEqual(got, []specs.LinuxSeccompAction{specs.ActNotify}) {
					t.Errorf("%s: actions %v, want only notify", n, got)
				}
			}
			want := map[string]Decision{
				"mkdir":   {Allow: true},          // allowed by runtime-default
				"mkdirat": {Allow: true},          //
				"ptrace":  {Allow: true},          // allowed on kernels ≥ 4.8
				"unshare": {Errno: syscall.EPERM}, // needs CAP_SYS_ADMIN
				"mount":   {Errno: syscall.EPERM},
				"bpf":     {Errno: syscall.EPERM},
			}
			for n, d := range want {
				if got := p.Policy.Decide(nr(t, n)); got != d {
					t.Errorf("%s: decision %v, want %v", n, got, d)
				}
			}
		}},
		{Unconfined, func(t *testing.T, p *Profile) {
			if p.Spec.DefaultAction != specs.ActAllow || len(p.Spec.Syscalls) != 0 {
				t.Errorf("unconfined: %+v", p.Spec)
			}
		}},
		{"no-mkdir", func(t *testing.T, p *Profile) {
			if p.Spec.ListenerPath != listener {
				t.Errorf("listener %q", p.Spec.ListenerPath)
			}
			for _, r := range p.Spec.Syscalls {
				if r.Action == specs.ActNotify && r.ErrnoRet != nil {
					t.Errorf("notify rule %v keeps errnoRet (runc rejects it)", r.Names)
				}
			}
			if d := p.Policy.Decide(nr(t, "mkdirat")); d != (Decision{Errno: syscall.EACCES}) {
				t.Errorf("mkdirat: %v, want deny EACCES", d)
			}
			if d := p.Policy.Decide(nr(t, "rmdir")); !d.Allow {
				t.Errorf("rmdir: %v, want allow", d)
			}
		}},
		{"plain", func(t *testing.T, p *Profile) {
			if p.Policy != nil || p.Spec.ListenerPath != "" || *p.Spec.DefaultErrnoRet != 38 {
				t.Errorf("plain: %+v", p.Spec)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Build(tt.name, Options{ListenerPath: listener, ProfileDir: "testdata", AllowUnconfined: true})
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != tt.name || p.Spec == nil {
				t.Fatalf("profile %+v", p)
			}
			tt.check(t, p)
		})
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name, profile string
		o             Options
		want          string
	}{
		{"unknown without dir", "nginx", Options{}, `"nginx": unknown`},
		{"missing file", "nginx", Options{ProfileDir: "testdata"}, "no such file"},
		{"path escape", "../x", Options{ProfileDir: "testdata"}, "unknown"},
		{"notify without listener", Notify, Options{}, "no listener"},
		{"named notify without listener", "no-mkdir", Options{ProfileDir: "testdata", AllowUnconfined: true}, "need a listener"},
		{"named default allow counts as unconfined", "no-mkdir", Options{ProfileDir: "testdata", ListenerPath: "/x"},
			"default action SCMP_ACT_ALLOW makes it unconfined, which this node does not allow"},
		{"built-in below the floor", RuntimeDefault, Options{Floor: Notify}, `"runtime-default" is below the node's floor "notify"`},
		{"unconfined below the floor", Unconfined, Options{Floor: RuntimeDefault}, `"unconfined" is below`},
		{"notify below the strict floor", Notify, Options{Floor: Strict, ListenerPath: "/x"}, `"notify" is below`},
		{"bad floor", Strict, Options{Floor: "low"}, `seccomp floor "low": allowed values`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.profile, tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestBuildUsesAndKeepsBase(t *testing.T) {
	base := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"read", "mkdir", "unshare"}, Action: specs.ActAllow}}}
	p, err := Build(Notify, Options{Base: base, ListenerPath: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Policy.Decide(nr(t, "unshare")); !d.Allow {
		t.Errorf("unshare allowed by the base, decision %v", d)
	}
	if !reflect.DeepEqual(base.Syscalls[0].Names, []string{"read", "mkdir", "unshare"}) || base.ListenerPath != "" {
		t.Errorf("base modified: %+v", base)
	}
	if got := actionOf(p.Spec, "read"); !reflect.DeepEqual(got, []specs.LinuxSeccompAction{specs.ActAllow}) {
		t.Errorf("read: %v", got)
	}
}

func TestExpandDefaultErrno(t *testing.T) {
	u := func(v uint) *uint { return &v }
	tests := []struct {
		name      string
		in        *specs.LinuxSeccomp
		unchanged bool
	}{
		{"nil", nil, true},
		{"allow default", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}, true},
		{"errno without value", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}, true},
		{"EPERM", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: u(1)}, true},
		{"ENOSYS", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: u(38),
			Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := ExpandDefaultErrno(tt.in)
			if tt.unchanged {
				if out != tt.in {
					t.Fatalf("changed: %+v", out)
				}
				return
			}
			last := out.Syscalls[len(out.Syscalls)-1]
			if last.Action != specs.ActErrno || *last.ErrnoRet != 38 {
				t.Fatalf("last rule %+v", last)
			}
			if slices.Contains(last.Names, "read") || !slices.Contains(last.Names, "write") || !slices.Contains(last.Names, "openat") {
				t.Errorf("expanded names: read in=%v write in=%v", slices.Contains(last.Names, "read"), slices.Contains(last.Names, "write"))
			}
			if len(tt.in.Syscalls) != 1 {
				t.Errorf("input modified")
			}
		})
	}
}

func TestListNamed(t *testing.T) {
	got, err := ListNamed("testdata")
	if err != nil || !reflect.DeepEqual(got, []string{"no-mkdir", "plain", "unknown-notify"}) { // unconfined.json is left out
		t.Fatalf("ListNamed = %v, %v", got, err)
	}
	if got, err := ListNamed(t.TempDir() + "/none"); err != nil || got != nil {
		t.Fatalf("missing dir: %v, %v", got, err)
	}
}
