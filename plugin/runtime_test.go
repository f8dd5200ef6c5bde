package plugin

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"

	"vigil.dev/vigil/annotations"
)

func TestRuntimeCaps(t *testing.T) {
	tests := []struct {
		name, runtime, version, nri string
		seccomp                     bool
		nriShown                    string
	}{
		{"containerd with its NRI version", "containerd", "v2.4.2", "v0.12.3", true, "v0.12.3"},
		{"a runtime with an old NRI", "containerd", "v2.4.2", "v0.9.3", false, "v0.9.3"},
		{"NRI v0.10.0 exactly", "cri-o", "1.36.0", "v0.10.0", true, "v0.10.0"},
		{"CRI-O 1.34 with NRI's inferred v0.10.0", "cri-o", "v1.34.0", "v0.10.0", false, "v0.10.0"},
		{"CRI-O 1.35 with NRI's inferred v0.11.0", "cri-o", "1.35.0", "v0.11.0", true, "v0.11.0"},
		{"pre-release of v0.10.0 counts as v0.10.0", "cri-o", "1.36.0", "v0.10.0-rc.1", true, "v0.10.0-rc.1"},
		{"CRI-O 1.34 (no NRI version, NRI v0.9)", "cri-o", "1.34.0", "", false, ""},
		{"the stub's unknown", "cri-o", "1.34.0", "unknown", false, ""},
		{"containerd 2.2 without an NRI version", "containerd", "v2.2.0", "", true, ""},
		{"containerd 2.1 without an NRI version", "containerd", "v2.1.4", "", false, ""},
		{"containerd with a bad version", "containerd", "main", "", false, ""},
		{"an unknown runtime", "other", "1.0.0", "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := runtimeCaps(tt.runtime, tt.version, tt.nri)
			if rt.Seccomp != tt.seccomp || rt.NRIVersion != tt.nriShown || rt.Name != tt.runtime || rt.Version != tt.version {
				t.Errorf("runtimeCaps(%q, %q, %q) = %+v, want seccomp %v, NRI version %q", tt.runtime, tt.version, tt.nri, rt, tt.seccomp, tt.nriShown)
			}
			if !strings.Contains(rt.SeccompWhy, tt.version) && (tt.nriShown == "" || !strings.Contains(rt.SeccompWhy, tt.nriShown)) {
				t.Errorf("reason %q does not name the version it is decided on", rt.SeccompWhy)
			}
		})
	}
}

func TestSeccompUnsupported(t *testing.T) {
	crio := runtimeCaps("cri-o", "1.34.0", "")
	able := runtimeCaps("containerd", "v2.4.2", "v0.12.3")
	reject := annotations.NodeConfig{SeccompUnsupported: annotations.SeccompUnsupportedReject}
	tests := []struct {
		name        string
		seccomp     string
		rt          RuntimeInfo
		node        annotations.NodeConfig
		wantSeccomp string
		warn, err   []string
	}{
		{"able runtime: unchanged", "notify", able, reject, "notify", nil, nil},
		{"no profile asked: unchanged", "", crio, reject, "", nil, nil},
		{"fallback by default", "notify", crio, annotations.NodeConfig{}, "", []string{`"notify"`, "cri-o 1.34.0", "runtime's own seccomp profile"}, nil},
		{"fallback named", "strict", crio, annotations.NodeConfig{SeccompUnsupported: "fallback"}, "", []string{`"strict"`}, nil},
		{"reject", "notify", crio, reject, "notify", nil, []string{`"notify"`, "cri-o 1.34.0", "seccompUnsupported", `"reject"`, `"fallback"`, "allowed values"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := annotations.Policy{Monitor: true, Seccomp: tt.seccomp}
			got, warning, err := seccompUnsupported(pol, tt.rt, tt.node)
			if (err != nil) != (tt.err != nil) {
				t.Fatalf("err %v, want one: %v", err, tt.err != nil)
			}
			if err != nil {
				for _, s := range tt.err {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %s", err, s)
					}
				}
				return
			}
			if got.Seccomp != tt.wantSeccomp || !got.Monitor {
				t.Errorf("policy %+v, want seccomp %q and monitoring kept", got, tt.wantSeccomp)
			}
			if (warning != "") != (tt.warn != nil) {
				t.Errorf("warning %q", warning)
			}
			for _, s := range tt.warn {
				if !strings.Contains(warning, s) {
					t.Errorf("warning %q lacks %s", warning, s)
				}
			}
		})
	}
}

// TestCreateOnRuntimeWithoutSeccomp: on CRI-O 1.34 a monitored container
// gets no seccomp adjustment (the runtime would drop it and leave notify
// rules without a listener) and shows the runtime's profile; with
// seccompUnsupported: reject its creation fails.
func TestCreateOnRuntimeWithoutSeccomp(t *testing.T) {
	ctx := context.Background()
	for _, node := range []annotations.NodeConfig{{}, {SeccompUnsupported: annotations.SeccompUnsupportedReject}} {
		p, _, nt := newTestPlugin(node)
		if _, err := p.Configure(ctx, "", "cri-o", "1.34.0"); err != nil {
			t.Fatal(err)
		}
		if rt := p.Runtime(); rt == nil || rt.Seccomp {
			t.Fatalf("runtime %+v: want seccomp not supported", rt)
		}
		pod := testPod(map[string]string{"ebpf-monitor": "true", "vigil.dev/priority": "60"})
		adj, _, err := p.CreateContainer(ctx, pod, testCtr("c1", nil))
		if node.SeccompUnsupported == annotations.SeccompUnsupportedReject {
			if err == nil || !strings.Contains(err.Error(), "seccompUnsupported") {
				t.Errorf("reject: err %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if adj.GetLinux().GetSeccompPolicy() != nil || adj.GetLinux().GetResources().GetCpu().GetShares() == nil {
			t.Errorf("adjustment %+v: want CPU shares and no seccomp policy", adj)
		}
		if len(nt.policies) != 0 {
			t.Errorf("notify policies set for a container without notify: %v", nt.policies)
		}
		live, _ := p.Containers()
		if len(live) != 1 || live[0].Seccomp != "(runtime's)" || !live[0].Monitor {
			t.Errorf("status %+v: want monitored with the runtime's seccomp profile", live)
		}
	}
}

// TestCRIOMetadata: CRI-O's NRI gives no container name nor image; they
// come from its annotations, and /container.NAME keys apply by that name.
func TestCRIOMetadata(t *testing.T) {
	ann := map[string]string{
		crioMetadata:                        `{"name":"app","attempt":1}`,
		crioImage:                           "localhost/vigil/probe:1",
		crioImageAlt:                        "localhost/vigil/probe:1",
		"vigil.dev/seccomp/container.app":   "strict",
		"io.kubernetes.cri-o.ContainerName": "k8s_app_web_shop_uid_1",
	}
	ctr := &api.Container{Id: "c1", Annotations: ann}
	m := containerMeta(testPod(nil), ctr)
	if m.Name != "app" || m.Image != "localhost/vigil/probe:1" || m.Pod != "web" || m.Namespace != "shop" {
		t.Errorf("meta %+v", m)
	}
	pol, err := parsePolicy(testPod(map[string]string{"ebpf-monitor": "true"}), ctr, annotations.NodeConfig{})
	if err != nil || pol.Seccomp != "strict" {
		t.Errorf("policy %+v, %v: want the container's own strict", pol, err)
	}
	// NRI's name wins; no metadata, no name.
	if n := containerName(&api.Container{Name: "nri", Annotations: ann}); n != "nri" {
		t.Errorf("name %q", n)
	}
	if n := containerName(&api.Container{Annotations: map[string]string{crioMetadata: "{bad"}}); n != "" {
		t.Errorf("name from bad metadata %q", n)
	}
}

// fakeProc writes /proc entries: pid → (ppid, cmdline args).
func fakeProc(t *testing.T, procs map[int]struct {
	ppid int
	args []string
}) string {
	t.Helper()
	dir := t.TempDir()
	for pid, p := range procs {
		d := filepath.Join(dir, strconv.Itoa(pid))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "cmdline"), []byte(strings.Join(p.args, "\x00")+"\x00"), 0o644)
		os.WriteFile(filepath.Join(d, "stat"), []byte(strconv.Itoa(pid)+" (a) b) S "+strconv.Itoa(p.ppid)+" 1 1 0"), 0o644)
	}
	os.MkdirAll(filepath.Join(dir, "self"), 0o755)
	return dir
}

func TestMonitorChild(t *testing.T) {
	type proc = struct {
		ppid int
		args []string
	}
	id := "0123abcd"
	procs := map[int]proc{
		1:   {0, []string{"/sbin/init"}},
		100: {1, []string{"/usr/bin/conmon", "-b", "/run/x", "-c", "other", "-n", "k8s_x"}},
		101: {100, []string{"/pause"}},
		200: {1, []string{"/usr/bin/conmon", "-b", "/run/y", "-c", id, "-n", "k8s_app"}},
		201: {200, []string{"runc", "init"}},
		300: {1, []string{"/bin/sh", "-c", id}}, // names the id, not a monitor
		301: {300, []string{"sleep"}},
	}
	dir := fakeProc(t, procs)
	if pid, err := monitorChild(dir, id); err != nil || pid != 201 {
		t.Errorf("monitorChild = %d, %v; want 201", pid, err)
	}
	if _, err := monitorChild(dir, "nope"); !errors.Is(err, errNoPid) {
		t.Errorf("unknown container: %v", err)
	}
	procs[400] = proc{1, []string{"conmon", "--cid=lonely"}}
	dir = fakeProc(t, procs)
	if _, err := monitorChild(dir, "lonely"); err == nil || !strings.Contains(err.Error(), "no child") {
		t.Errorf("monitor without child: %v", err)
	}
	if pid, err := monitorChild(dir, id); err != nil || pid != 201 {
		t.Errorf("monitorChild = %d, %v; want 201", pid, err)
	}
}

// TestTrackByPidWhenNoCgroupsPath: CRI-O run with _CRIO_ROOTLESS gives an
// empty cgroups path: the cgroup is the init process's (NRI's pid, or the
// one found through conmon).
func TestTrackByPidWhenNoCgroupsPath(t *testing.T) {
	ctx := context.Background()
	pod := testPod(map[string]string{"ebpf-monitor": "true"})
	t.Run("pid from NRI", func(t *testing.T) {
		p, tr, _ := newTestPlugin(annotations.NodeConfig{})
		ctr := &api.Container{Id: "c1", Name: "app", Pid: 4242, Linux: &api.LinuxContainer{}}
		if err := p.StartContainer(ctx, pod, ctr); err != nil {
			t.Fatal(err)
		}
		if _, ok := tr.tracked[101]; !ok {
			t.Errorf("tracked %v, want the cgroup of pid 4242", tr.tracked)
		}
	})
	t.Run("pid found", func(t *testing.T) {
		p, tr, _ := newTestPlugin(annotations.NodeConfig{})
		p.cfg.PidOf = func(id string) (int, error) {
			if id == "c2" {
				return 4343, nil
			}
			return 0, errNoPid
		}
		if err := p.StartContainer(ctx, pod, &api.Container{Id: "c2", Name: "app"}); err != nil {
			t.Fatal(err)
		}
		info, err := p.Find("c2")
		if _, ok := tr.tracked[102]; !ok || err != nil || info.CgroupsPath != "/k8s.io/c2" || info.CgroupDir != "/cg/k8s.io/c2" {
			t.Errorf("tracked %v, info %+v, %v", tr.tracked, info, err)
		}
		if err := p.StartContainer(ctx, pod, &api.Container{Id: "c3", Name: "app"}); err == nil || !strings.Contains(err.Error(), "cgroups path: empty") {
			t.Errorf("no pid: %v", err)
		}
	})
}
