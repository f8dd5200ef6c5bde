package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/seccomp"
)

// fakeTracer records Track/Untrack; the real tracer is exercised by the
// end-to-end tests.
type fakeTracer struct {
	tracked map[uint64]bpf.Counters
	failOn  uint64
}

func (f *fakeTracer) Track(id uint64) error {
	if id == f.failOn {
		return errors.New("track failed")
	}
	if _, ok := f.tracked[id]; !ok {
		f.tracked[id] = bpf.Counters{}
	}
	return nil
}

func (f *fakeTracer) Untrack(id uint64) (bpf.Counters, error) {
	c, ok := f.tracked[id]
	if !ok {
		return c, bpf.ErrNotTracked
	}
	delete(f.tracked, id)
	return c, nil
}

func (f *fakeTracer) Counters(id uint64) (bpf.Counters, error) {
	c, ok := f.tracked[id]
	if !ok {
		return c, bpf.ErrNotTracked
	}
	return c, nil
}

func (f *fakeTracer) Tracked() (map[uint64]bpf.Counters, error) {
	out := map[uint64]bpf.Counters{}
	for k, v := range f.tracked {
		out[k] = v
	}
	return out, nil
}

type fakeNotifier struct{ policies map[string]*seccomp.Policy }

func (f *fakeNotifier) SetPolicy(id string, p *seccomp.Policy)     { f.policies[id] = p }
func (f *fakeNotifier) RestorePolicy(id string, p *seccomp.Policy) { f.policies[id] = p }
func (f *fakeNotifier) Forget(id string)                           { delete(f.policies, id) }

func newTestPlugin(node annotations.NodeConfig) (*Plugin, *fakeTracer, *fakeNotifier) {
	tr := &fakeTracer{tracked: map[uint64]bpf.Counters{}}
	nt := &fakeNotifier{policies: map[string]*seccomp.Policy{}}
	log := logrus.New()
	log.SetOutput(io.Discard)
	ids := map[string]uint64{"/cg/k8s.io/c1": 101, "/cg/k8s.io/c2": 102, "/cg/k8s.io/bad": 999}
	cgid := func(dir string) (uint64, error) {
		if id, ok := ids[dir]; ok {
			return id, nil
		}
		return 0, errors.New("no such cgroup " + dir)
	}
	// Process 4242 runs in /k8s.io/c1, 4343 in /k8s.io/c2.
	cgOf := func(pid int) (string, error) {
		switch pid {
		case 4242:
			return "/k8s.io/c1", nil
		case 4343:
			return "/k8s.io/c2", nil
		}
		return "", errors.New("no such process")
	}
	p := New(Config{Node: node, CgroupRoot: "/cg", ListenerPath: "/run/test/seccomp.sock", CgroupID: cgid, CgroupOf: cgOf}, tr, nt, log)
	return p, tr, nt
}

// bundle writes an OCI bundle whose config.json names cgroupsPath.
func bundle(t *testing.T, cgroupsPath string) string {
	t.Helper()
	dir := t.TempDir()
	data, _ := json.Marshal(specs.Spec{Linux: &specs.Linux{CgroupsPath: cgroupsPath}})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func testPod(ann map[string]string) *api.PodSandbox {
	return &api.PodSandbox{Id: "pod1", Name: "web", Namespace: "shop", Annotations: ann}
}

func testCtr(id string, ann map[string]string) *api.Container {
	return &api.Container{Id: id, PodSandboxId: "pod1", Name: "app", Annotations: ann,
		Linux: &api.LinuxContainer{CgroupsPath: "/k8s.io/" + id}}
}

func TestBuildAdjustment(t *testing.T) {
	rtDefault := &api.LinuxContainer{
		SeccompProfile: &api.SecurityProfile{ProfileType: api.SecurityProfile_RUNTIME_DEFAULT},
		SeccompPolicy:  &api.LinuxSeccomp{DefaultAction: "SCMP_ACT_ERRNO", Syscalls: []*api.LinuxSyscall{{Names: []string{"read", "unshare"}, Action: "SCMP_ACT_ALLOW"}}},
	}
	eacces := &api.OptionalUInt32{Value: uint32(syscall.EACCES)}
	localhost := &api.LinuxContainer{
		SeccompProfile: &api.SecurityProfile{ProfileType: api.SecurityProfile_LOCALHOST, LocalhostRef: "/etc/seccomp/tiny.json"},
		SeccompPolicy: &api.LinuxSeccomp{DefaultAction: "SCMP_ACT_ERRNO", Syscalls: []*api.LinuxSyscall{
			{Names: []string{"read", "write", "exit_group", "mkdirat"}, Action: "SCMP_ACT_ALLOW"},
			{Names: []string{"mkdir"}, Action: "SCMP_ACT_ERRNO", ErrnoRet: eacces}}},
	}
	tests := []struct {
		name    string
		pol     annotations.Policy
		linux   *api.LinuxContainer
		check   func(t *testing.T, adj *api.ContainerAdjustment, prof *seccomp.Profile)
		wantErr string
	}{
		{name: "nothing asked: no adjustment", pol: annotations.Policy{Priority: 50},
			check: func(t *testing.T, adj *api.ContainerAdjustment, prof *seccomp.Profile) {
				if adj != nil || prof != nil {
					t.Errorf("adjustment %v, profile %v", adj, prof)
				}
			}},
		{name: "priority only: cpu shares", pol: annotations.Policy{Priority: 70, PrioritySet: true},
			check: func(t *testing.T, adj *api.ContainerAdjustment, prof *seccomp.Profile) {
				if adj.GetLinux().GetResources().GetCpu().GetShares().GetValue() != 4096 || adj.GetLinux().GetSeccompPolicy() != nil || prof != nil {
					t.Errorf("adjustment %v", adj)
				}
			}},
		{name: "notify: listener and policy", pol: annotations.Policy{Monitor: true, Seccomp: "notify"},
			check: func(t *testing.T, adj *api.ContainerAdjustment, prof *seccomp.Profile) {
				s := adj.GetLinux().GetSeccompPolicy()
				if s.GetListenerPath() != "/run/test/seccomp.sock" || s.GetDefaultAction() != "SCMP_ACT_ERRNO" || prof.Policy == nil {
					t.Errorf("seccomp %v", s)
				}
			}},
		{name: "runtime default base is used", pol: annotations.Policy{Seccomp: "notify"}, linux: rtDefault,
			check: func(t *testing.T, adj *api.ContainerAdjustment, prof *seccomp.Profile) {
				nr, _ := event.SyscallNr("unshare")
				if d := prof.Policy.Decide(int32(nr)); !d.Allow {
					t.Errorf("unshare allowed by the runtime's own default, decision %v", d)
				}
				if n := len(adj.GetLinux().GetSeccompPolicy().GetSyscalls()); n != 2 {
					t.Errorf("%d rules, want read's and the notify rule", n)
				}
			}},
		{name: "strict", pol: annotations.Policy{Seccomp: "strict"},
			check: func(t *testing.T, adj *api.ContainerAdjustment, prof *seccomp.Profile) {
				if adj.GetLinux().GetSeccompPolicy().GetListenerPath() != "" || prof.Policy != nil {
					t.Errorf("strict has a listener: %v", adj.GetLinux().GetSeccompPolicy())
				}
			}},
		{name: "unknown named profile", pol: annotations.Policy{Seccomp: "nginx"}, wantErr: `seccomp profile "nginx"`},
		// A pod's own profile used to be replaced by moby's default once
		// monitored; it now bounds what vigil's profile allows.
		{name: "localhost profile kept under notify", pol: annotations.Policy{Monitor: true, Forced: true, Seccomp: "notify", SeccompFloor: "notify"}, linux: localhost,
			check: func(t *testing.T, adj *api.ContainerAdjustment, prof *seccomp.Profile) {
				s := adj.GetLinux().GetSeccompPolicy()
				var allowed []string
				for _, r := range s.GetSyscalls() {
					switch {
					case r.Action == "SCMP_ACT_ALLOW" || r.Action == "SCMP_ACT_NOTIFY":
						allowed = append(allowed, r.Names...)
					case slices.Contains(r.Names, "mkdir") && (r.Action != "SCMP_ACT_ERRNO" || r.GetErrnoRet().GetValue() != 13):
						t.Errorf("mkdir: %v, want the pod's EACCES", r)
					}
				}
				slices.Sort(allowed)
				if !reflect.DeepEqual(allowed, []string{"exit_group", "mkdirat", "read", "write"}) {
					t.Errorf("allowed %v, want the pod's 4 syscalls", allowed)
				}
				if s.GetDefaultAction() != "SCMP_ACT_ERRNO" || s.GetListenerPath() != "/run/test/seccomp.sock" {
					t.Errorf("default %s listener %q", s.GetDefaultAction(), s.GetListenerPath())
				}
				mkdir, _ := event.SyscallNr("mkdir")
				mkdirat, _ := event.SyscallNr("mkdirat")
				if d := prof.Policy.Decide(int32(mkdir)); d != (seccomp.Decision{Errno: syscall.EACCES}) {
					t.Errorf("mkdir answered %v, want the pod's EACCES", d)
				}
				if d := prof.Policy.Decide(int32(mkdirat)); !d.Allow {
					t.Errorf("mkdirat answered %v, want allow", d)
				}
			}},
		{name: "localhost profile kept under unconfined", pol: annotations.Policy{Seccomp: "unconfined", AllowUnconfined: true}, linux: localhost,
			check: func(t *testing.T, adj *api.ContainerAdjustment, prof *seccomp.Profile) {
				if s := adj.GetLinux().GetSeccompPolicy(); s.GetDefaultAction() != "SCMP_ACT_ERRNO" || len(s.GetSyscalls()) != 2 || prof.Policy != nil {
					t.Errorf("seccomp %v", s)
				}
			}},
		{name: "built-in below the floor", pol: annotations.Policy{Seccomp: "runtime-default", SeccompFloor: "notify"}, wantErr: `below the node's floor "notify"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctr := &api.Container{Id: "c", Linux: tt.linux}
			adj, prof, err := buildAdjustment(tt.pol, ctr, seccomp.Options{ListenerPath: "/run/test/seccomp.sock"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, adj, prof)
		})
	}
}

func TestToOCISeccompRoundTrip(t *testing.T) {
	errno := uint(38)
	in := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: &errno, Architectures: []specs.Arch{specs.ArchX86_64},
		Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_LOG"}, ListenerPath: "/x", ListenerMetadata: "m",
		Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 1, Value: 2, Op: specs.OpEqualTo}}}}}
	out := toOCISeccomp(api.FromOCILinuxSeccomp(in))
	if out.DefaultAction != in.DefaultAction || *out.DefaultErrnoRet != 38 || out.Architectures[0] != specs.ArchX86_64 ||
		out.Flags[0] != in.Flags[0] || out.ListenerPath != "/x" || out.ListenerMetadata != "m" ||
		out.Syscalls[0].Names[0] != "read" || out.Syscalls[0].Args[0].Value != 2 {
		t.Errorf("round trip: %+v", out)
	}
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	p, tr, nt := newTestPlugin(annotations.NodeConfig{})
	pod := testPod(map[string]string{"ebpf-monitor": "true"})
	ctr := testCtr("c1", nil)

	adj, _, err := p.CreateContainer(ctx, pod, ctr)
	if err != nil {
		t.Fatal(err)
	}
	if adj.GetLinux().GetSeccompPolicy().GetListenerPath() == "" || nt.policies["c1"] == nil {
		t.Fatalf("monitored container: adjustment %v, notify policy %v", adj, nt.policies["c1"])
	}
	if len(tr.tracked) != 0 {
		t.Fatal("tracked before start")
	}
	if err := p.StartContainer(ctx, pod, ctr); err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.tracked[101]; !ok {
		t.Fatalf("cgroup 101 not tracked: %v", tr.tracked)
	}
	ev := &event.Event{CgroupID: 101}
	p.Enrich(ev)
	want := event.Container{ID: "c1", Name: "app", Pod: "web", Namespace: "shop", Node: NodeName()}
	if ev.Container == nil || !reflect.DeepEqual(*ev.Container, want) {
		t.Fatalf("enriched %+v, want %+v", ev.Container, want)
	}
	other := &event.Event{CgroupID: 7, Container: &event.Container{ID: "stale"}}
	p.Enrich(other)
	if other.Container != nil {
		t.Errorf("unknown cgroup enriched: %+v", other.Container)
	}
	tr.tracked[101] = bpf.Counters{Seen: 10, Emitted: 9, Dropped: 1}
	live, _ := p.Containers()
	if len(live) != 1 || live[0].Seen != 10 || !live[0].Tracked || live[0].Seccomp != "notify" {
		t.Fatalf("status %+v", live)
	}
	if _, err := p.StopContainer(ctx, pod, ctr); err != nil {
		t.Fatal(err)
	}
	if len(tr.tracked) != 0 {
		t.Errorf("still tracked after stop")
	}
	live, finished := p.Containers()
	if len(live) != 0 || len(finished) != 1 || finished[0].Seen != 10 || finished[0].Dropped != 1 {
		t.Errorf("after stop: live %+v finished %+v", live, finished)
	}
	// Events still in the ring after stop resolve until removal.
	p.Enrich(ev)
	if ev.Container == nil {
		t.Error("events after stop lost their metadata")
	}
	p.retireAfter = 50 * time.Millisecond
	if err := p.RemoveContainer(ctx, pod, ctr); err != nil {
		t.Fatal(err)
	}
	if nt.policies["c1"] != nil {
		t.Error("notify policy kept after remove")
	}
	p.Enrich(ev)
	if ev.Container == nil {
		t.Error("events still in the ring right after remove lost their metadata")
	}
	time.Sleep(200 * time.Millisecond)
	p.Enrich(ev)
	if ev.Container != nil {
		t.Error("metadata kept after the grace period")
	}
}

func TestFinalCountersWhenCgroupGone(t *testing.T) {
	ctx := context.Background()
	p, tr, _ := newTestPlugin(annotations.NodeConfig{})
	pod, ctr := testPod(map[string]string{"ebpf-monitor": "true"}), testCtr("c1", nil)
	p.CreateContainer(ctx, pod, ctr)
	if err := p.StartContainer(ctx, pod, ctr); err != nil {
		t.Fatal(err)
	}
	// Events 1..42 read, then a refresh, then events up to 50 with 44 and
	// 45 dropped.
	for seq := uint64(1); seq <= 42; seq++ {
		p.Enrich(&event.Event{CgroupID: 101, Seq: seq})
	}
	tr.tracked[101] = bpf.Counters{Seen: 42, Emitted: 42}
	p.Refresh()
	for _, seq := range []uint64{43, 46, 47, 48, 49, 50} {
		p.Enrich(&event.Event{CgroupID: 101, Seq: seq})
	}
	delete(tr.tracked, 101) // the runtime removed the cgroup: the kernel freed its counters
	p.catchUp = time.Millisecond
	p.StopContainer(ctx, pod, ctr)
	var finished []ContainerStatus
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && len(finished) == 0; time.Sleep(5 * time.Millisecond) {
		_, finished = p.Containers()
	}
	if len(finished) != 1 || finished[0].Seen != 50 || finished[0].Dropped != 2 || finished[0].Emitted != 48 {
		t.Errorf("final counters %+v, want seen 50, dropped 2, emitted 48 (rebuilt)", finished)
	}
}

func TestCreateContainerDecisions(t *testing.T) {
	ctx := context.Background()
	forced := annotations.NodeConfig{}
	forced.ForceMonitor.Namespaces = []string{"shop"}
	unmonitored := annotations.NodeConfig{}
	unmonitored.Priority.Unmonitored = true
	tests := []struct {
		name      string
		node      annotations.NodeConfig
		pod, ctr  map[string]string
		wantErr   string
		wantTrack bool
		wantAdj   bool
	}{
		{name: "unannotated", wantTrack: false, wantAdj: false},
		{name: "monitor false", pod: map[string]string{"ebpf-monitor": "false"}},
		{name: "forced over false", node: forced, pod: map[string]string{"ebpf-monitor": "false"}, wantTrack: true, wantAdj: true},
		{name: "container-level annotation", ctr: map[string]string{"ebpf-monitor/container.app": "true"}, wantTrack: true, wantAdj: true},
		{name: "seccomp only", pod: map[string]string{"vigil.dev/seccomp": "strict"}, wantAdj: true},
		{name: "bad value fails", pod: map[string]string{"vigil.dev/mode": "block"}, wantErr: `"vigil.dev/mode" has invalid value "block": allowed values are "learn", "detect", "enforce"`},
		{name: "bad value warns", node: annotations.NodeConfig{OnInvalid: "warn"}, pod: map[string]string{"ebpf-monitor": "true", "vigil.dev/mode": "block"}, wantTrack: true, wantAdj: true},
		{name: "priority of an unmonitored pod ignored", pod: map[string]string{"vigil.dev/priority": "80"}},
		{name: "priority of an unmonitored pod allowed", node: unmonitored, pod: map[string]string{"vigil.dev/priority": "80"}, wantAdj: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, tr, _ := newTestPlugin(tt.node)
			pod, ctr := testPod(tt.pod), testCtr("c1", tt.ctr)
			adj, _, err := p.CreateContainer(ctx, pod, ctr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (adj != nil) != tt.wantAdj {
				t.Errorf("adjustment %v, want one: %v", adj, tt.wantAdj)
			}
			if err := p.StartContainer(ctx, pod, ctr); err != nil {
				t.Fatal(err)
			}
			if _, ok := tr.tracked[101]; ok != tt.wantTrack {
				t.Errorf("tracked %v, want %v", ok, tt.wantTrack)
			}
		})
	}
}

func TestCreateContainerClampsPriority(t *testing.T) {
	node := annotations.NodeConfig{}
	node.Priority.Max = ptr(60)
	p, _, _ := newTestPlugin(node)
	adj, _, err := p.CreateContainer(context.Background(), testPod(map[string]string{"ebpf-monitor": "true", "vigil.dev/priority": "100"}), testCtr("c1", nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := adj.GetLinux().GetResources().GetCpu().GetShares().GetValue(); got != 2048 {
		t.Errorf("shares %d, want 2048 (priority 100 clamped to the node's max 60)", got)
	}
	if info, _ := p.Find("c1"); info.Policy.Priority != 60 || len(info.Policy.Warnings) != 1 {
		t.Errorf("policy %+v, want priority 60 with a warning", info.Policy)
	}
}

func TestStartContainerErrors(t *testing.T) {
	ctx := context.Background()
	p, tr, _ := newTestPlugin(annotations.NodeConfig{})
	tr.failOn = 999
	pod := testPod(map[string]string{"ebpf-monitor": "true"})
	for _, id := range []string{"missing", "bad"} {
		ctr := testCtr(id, nil)
		if _, _, err := p.CreateContainer(ctx, pod, ctr); err != nil {
			t.Fatal(err)
		}
		if err := p.StartContainer(ctx, pod, ctr); err == nil {
			t.Errorf("%s: start of an untrackable monitored container succeeded", id)
		}
	}
}

func TestStartWithoutCreateParsesAgain(t *testing.T) {
	p, tr, _ := newTestPlugin(annotations.NodeConfig{})
	if err := p.StartContainer(context.Background(), testPod(map[string]string{"ebpf-monitor": "true"}), testCtr("c2", nil)); err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.tracked[102]; !ok {
		t.Error("container created while the agent was away not tracked at start")
	}
}

func TestSynchronize(t *testing.T) {
	p, tr, nt := newTestPlugin(annotations.NodeConfig{})
	tr.tracked[101] = bpf.Counters{Seen: 500} // pinned from the previous agent
	tr.tracked[555] = bpf.Counters{Seen: 3}   // a container that is gone
	pods := []*api.PodSandbox{testPod(map[string]string{"ebpf-monitor": "true"}), {Id: "pod2", Name: "db", Namespace: "shop"}}
	c1 := testCtr("c1", nil)
	c1.State = api.ContainerState_CONTAINER_RUNNING
	c2 := testCtr("c2", nil)
	c2.PodSandboxId, c2.State = "pod2", api.ContainerState_CONTAINER_RUNNING
	if _, err := p.Synchronize(context.Background(), pods, []*api.Container{c1, c2}); err != nil {
		t.Fatal(err)
	}
	if c, ok := tr.tracked[101]; !ok || c.Seen != 500 {
		t.Errorf("monitored container: tracked %v counters %+v; want tracked with counters kept", ok, c)
	}
	if _, ok := tr.tracked[102]; ok {
		t.Error("unmonitored container tracked")
	}
	if _, ok := tr.tracked[555]; ok {
		t.Error("stale pinned cgroup not untracked")
	}
	if nt.policies["c1"] == nil {
		t.Error("notify policy not restored")
	}
	ev := &event.Event{CgroupID: 101}
	p.Enrich(ev)
	if ev.Container == nil || ev.Container.Pod != "web" {
		t.Errorf("metadata not rebuilt: %+v", ev.Container)
	}
}

func TestRegisterHook(t *testing.T) {
	p, tr, _ := newTestPlugin(annotations.NodeConfig{})
	ann := map[string]string{"ebpf-monitor": "true"}
	reg := func(id, cgroupsPath, bundleDir string, pid int) (annotations.Policy, error) {
		return p.Register(agentctl.Request{Op: "register", Container: &event.Container{ID: id, Name: "app", Node: "forged-node"}, CgroupsPath: cgroupsPath,
			Annotations: ann, Bundle: bundleDir, PID: pid})
	}
	b1 := bundle(t, "/k8s.io/c1")
	pol, err := reg("c1", "/k8s.io/c1", b1, 4242)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.tracked[101]; !ok || !pol.Monitor {
		t.Fatalf("hook registration: tracked %v policy %+v", ok, pol)
	}
	if got := p.byID["c1"].meta.Node; got != NodeName() {
		t.Errorf("hook container's node %q, want the agent's %q (not the hook's)", got, NodeName())
	}
	if len(pol.Warnings) != 1 || !strings.Contains(pol.Warnings[0], "cannot change") {
		t.Errorf("want a warning that seccomp is not applied in hook mode: %q", pol.Warnings)
	}
	if _, err := reg("c1", "/k8s.io/c1", b1, 4242); err != nil {
		t.Errorf("the same registration again: %v", err)
	}

	// Registrations a hostile caller could try.
	for _, tt := range []struct {
		name, id, cgroupsPath, bundle string
		pid                           int
		want                          string
	}{
		{"no bundle", "x1", "/k8s.io/c2", "", 4343, "absolute bundle path"},
		{"a cgroup the bundle does not name", "x2", "/k8s.io/c2", b1, 4343, "is not the bundle's"},
		{"no init pid", "x3", "/k8s.io/c2", bundle(t, "/k8s.io/c2"), 0, "no init pid"},
		{"init process elsewhere", "x4", "/k8s.io/c2", bundle(t, "/k8s.io/c2"), 4242, `is in cgroup "/k8s.io/c1"`},
		{"another container's cgroup", "x5", "/k8s.io/c1", b1, 4242, "belongs to container c1"},
		{"the same id with another cgroup", "c1", "/k8s.io/c2", bundle(t, "/k8s.io/c2"), 4343, "already registered"},
		{"escaping the cgroup root", "x6", "/k8s.io/../..", bundle(t, "/k8s.io/../.."), 4343, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := reg(tt.id, tt.cgroupsPath, tt.bundle, tt.pid)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("registration accepted or wrong error: %v, want %q", err, tt.want)
			}
		})
	}
	if len(tr.tracked) != 1 {
		t.Errorf("tracked %v after refused registrations, want only c1's cgroup", tr.tracked)
	}

	if err := p.Unregister("c1"); err != nil {
		t.Fatal(err)
	}
	if len(tr.tracked) != 0 {
		t.Error("still tracked after unregister")
	}
	if _, err := p.Register(agentctl.Request{Container: &event.Container{ID: "x"}, Annotations: map[string]string{"ebpf-monitor": "maybe"},
		CgroupsPath: "/k8s.io/c2", Bundle: bundle(t, "/k8s.io/c2"), PID: 4343}); err == nil {
		t.Error("bad annotation accepted")
	}
}

// TestUnregisterRuntimeContainerRefused: the control socket cannot make
// vigil drop a container the runtime manages over NRI.
func TestUnregisterRuntimeContainerRefused(t *testing.T) {
	p, tr, _ := newTestPlugin(annotations.NodeConfig{})
	ctx := context.Background()
	pod := testPod(map[string]string{"ebpf-monitor": "true"})
	ctr := testCtr("c1", nil)
	if _, _, err := p.CreateContainer(ctx, pod, ctr); err != nil {
		t.Fatal(err)
	}
	if err := p.StartContainer(ctx, pod, ctr); err != nil {
		t.Fatal(err)
	}
	if err := p.Unregister("c1"); err == nil || !strings.Contains(err.Error(), "NRI") {
		t.Errorf("unregister of an NRI container: %v", err)
	}
	if _, ok := tr.tracked[101]; !ok {
		t.Error("the NRI container was untracked")
	}
	if _, err := p.Register(agentctl.Request{Container: &event.Container{ID: "c1"}, CgroupsPath: "/k8s.io/c1", Bundle: bundle(t, "/k8s.io/c1"),
		PID: 4242, Annotations: map[string]string{"ebpf-monitor": "true"}}); err == nil || !strings.Contains(err.Error(), "NRI") {
		t.Errorf("register over an NRI container: %v", err)
	}
}

func TestConfigureFromRuntime(t *testing.T) {
	ctx := context.Background()
	p, tr, _ := newTestPlugin(annotations.NodeConfig{})
	if _, err := p.Configure(ctx, "", "containerd", "v2"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Configure(ctx, "forceMonitr: {}", "containerd", "v2"); err == nil || !strings.Contains(err.Error(), "forceMonitr") {
		t.Fatalf("bad configuration accepted: %v", err)
	}
	if _, err := p.Configure(ctx, "forceMonitor:\n  namespaces: [shop]\n", "containerd", "v2"); err != nil {
		t.Fatal(err)
	}
	pod, ctr := testPod(nil), testCtr("c1", nil)
	if _, _, err := p.CreateContainer(ctx, pod, ctr); err != nil {
		t.Fatal(err)
	}
	if err := p.StartContainer(ctx, pod, ctr); err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.tracked[101]; !ok {
		t.Error("the runtime's configuration (force namespace shop) not applied")
	}
}

// fakeCPU records the CPU updates sent to the runtime.
type fakeCPU struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]bool
}

func (f *fakeCPU) update(id string, shares uint64, quota int64, period uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("%s shares=%d quota=%d period=%d", id, shares, quota, period))
	if f.fail[id] {
		return errors.New("runtime refused")
	}
	return nil
}

func (f *fakeCPU) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func TestSetNodeReappliesPriorityBounds(t *testing.T) {
	ctx := context.Background()
	withMax := func(hi int, unmonitored bool) annotations.NodeConfig {
		n := annotations.NodeConfig{}
		n.Priority.Max, n.Priority.Unmonitored = &hi, unmonitored
		return n
	}
	p, _, _ := newTestPlugin(withMax(100, true))
	cpu := &fakeCPU{fail: map[string]bool{}}
	p.updateCPU = cpu.update
	monitored := map[string]string{"ebpf-monitor": "true"}
	create := func(id string, pod, ctr map[string]string, shares uint64) (*api.PodSandbox, *api.Container) {
		t.Helper()
		pd, c := testPod(pod), testCtr(id, ctr)
		c.Name = id
		if shares > 0 {
			c.Linux.Resources = &api.LinuxResources{Cpu: &api.LinuxCPU{Shares: api.UInt64(shares)}}
		}
		if _, _, err := p.CreateContainer(ctx, pd, c); err != nil {
			t.Fatal(err)
		}
		return pd, c
	}
	// c1: monitored, asks for 90, running.
	pd, c := create("c1", monitored, map[string]string{"vigil.dev/priority": "90"}, 0)
	if err := p.StartContainer(ctx, pd, c); err != nil {
		t.Fatal(err)
	}
	// c2: monitored, no priority, running.
	pd, c = create("c2", monitored, nil, 0)
	if err := p.StartContainer(ctx, pd, c); err != nil {
		t.Fatal(err)
	}
	// c3: not monitored, asks for 80 (allowed for now), runtime gave 512 shares.
	pd, c = create("c3", nil, map[string]string{"vigil.dev/priority": "80"}, 512)
	if err := p.StartContainer(ctx, pd, c); err != nil {
		t.Fatal(err)
	}
	// c4: monitored, asks for 40, created.
	create("c4", monitored, map[string]string{"vigil.dev/priority": "40"}, 0)
	// c5: monitored, asks for 100, stopped.
	pd, c = create("c5", monitored, map[string]string{"vigil.dev/priority": "100"}, 0)
	if _, err := p.StopContainer(ctx, pd, c); err != nil {
		t.Fatal(err)
	}

	priority := func(id string) (int, bool) {
		t.Helper()
		info, err := p.Find(id)
		if err != nil {
			t.Fatal(err)
		}
		return info.Policy.Priority, info.Policy.PrioritySet
	}
	steps := []struct {
		name  string
		node  annotations.NodeConfig
		fail  string
		held  string
		calls []string
		prios map[string]int // -1: not set
	}{
		{name: "max lowered: only the live containers above it", node: withMax(60, true),
			calls: []string{"c1 shares=2048 quota=0 period=0", "c3 shares=2048 quota=0 period=0"},
			prios: map[string]int{"c1": 60, "c2": -1, "c3": 60, "c4": 40}},
		{name: "unchanged configuration: nothing", node: withMax(60, true),
			prios: map[string]int{"c1": 60, "c3": 60, "c4": 40}},
		{name: "the runtime refuses: the priority stays", node: withMax(30, true), fail: "c1",
			calls: []string{"c1 shares=256 quota=0 period=0", "c3 shares=256 quota=0 period=0", "c4 shares=256 quota=0 period=0"},
			prios: map[string]int{"c1": 60, "c3": 30, "c4": 30}},
		{name: "held by a throttle: left alone", node: withMax(20, true), held: "c1",
			calls: []string{"c3 shares=128 quota=0 period=0", "c4 shares=128 quota=0 period=0"},
			prios: map[string]int{"c1": 60, "c3": 20, "c4": 20}},
		{name: "bounds raised: the asked values", node: withMax(100, true),
			calls: []string{"c1 shares=16384 quota=0 period=0", "c3 shares=8192 quota=0 period=0", "c4 shares=512 quota=0 period=0"},
			prios: map[string]int{"c1": 90, "c3": 80, "c4": 40, "c5": 100}},
		{name: "unmonitored no longer allowed: the runtime's shares back", node: withMax(100, false),
			calls: []string{"c3 shares=512 quota=0 period=0"},
			prios: map[string]int{"c1": 90, "c3": -1, "c4": 40}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			cpu.fail = map[string]bool{st.fail: true}
			p.cfg.Callbacks.CPUHeld = func(c Info) bool { return c.Meta.ID == st.held }
			p.SetNode(st.node)
			p.reprioDone.Wait()
			if got := cpu.take(); !slices.Equal(got, st.calls) {
				t.Errorf("updates %q, want %q", got, st.calls)
			}
			for id, want := range st.prios {
				prio, set := priority(id)
				if want < 0 && set || want >= 0 && (!set || prio != want) {
					t.Errorf("%s: priority %d set %v, want %d", id, prio, set, want)
				}
			}
		})
	}
}

func TestSetNodeTwiceEndsWithTheLast(t *testing.T) {
	ctx := context.Background()
	p, _, _ := newTestPlugin(annotations.NodeConfig{})
	cpu := &fakeCPU{}
	p.updateCPU = cpu.update
	pod, ctr := testPod(map[string]string{"ebpf-monitor": "true", "vigil.dev/priority": "90"}), testCtr("c1", nil)
	if _, _, err := p.CreateContainer(ctx, pod, ctr); err != nil {
		t.Fatal(err)
	}
	for _, hi := range []int{60, 50, 30} {
		n := annotations.NodeConfig{}
		n.Priority.Max = &hi
		p.SetNode(n)
	}
	p.reprioDone.Wait()
	calls := cpu.take()
	if len(calls) == 0 || calls[len(calls)-1] != "c1 shares=256 quota=0 period=0" {
		t.Errorf("updates %q, want the last one for priority 30 (256 shares)", calls)
	}
	if info, _ := p.Find("c1"); info.Policy.Priority != 30 {
		t.Errorf("priority %d, want 30", info.Policy.Priority)
	}
}
