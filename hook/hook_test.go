package hook

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestBuildRequest(t *testing.T) {
	tests := []struct {
		name string
		st   specs.State
		spec *specs.Spec
		want Request
	}{
		{
			name: "CRI annotations",
			st:   specs.State{ID: "abc"},
			spec: &specs.Spec{Linux: &specs.Linux{CgroupsPath: "/k8s.io/abc"}, Annotations: map[string]string{
				"io.kubernetes.cri.container-name": "app", "io.kubernetes.cri.sandbox-name": "web",
				"io.kubernetes.cri.sandbox-namespace": "shop", "io.kubernetes.cri.image-name": "nginx:1", "ebpf-monitor": "true",
				"io.kubernetes.cri.sandbox-uid": "5f0c-91aa"}},
			want: Request{Op: "register", Container: &Container{ID: "abc", Name: "app", Pod: "web", Namespace: "shop", Image: "nginx:1", PodUID: "5f0c-91aa"},
				CgroupsPath: "/k8s.io/abc", Annotations: map[string]string{
					"io.kubernetes.cri.container-name": "app", "io.kubernetes.cri.sandbox-name": "web",
					"io.kubernetes.cri.sandbox-namespace": "shop", "io.kubernetes.cri.image-name": "nginx:1", "ebpf-monitor": "true",
					"io.kubernetes.cri.sandbox-uid": "5f0c-91aa"}},
		},
		{
			name: "plain runc: id as name, state annotations win",
			st:   specs.State{ID: "x1", Annotations: map[string]string{"ebpf-monitor": "true"}},
			spec: &specs.Spec{Linux: &specs.Linux{CgroupsPath: "system.slice:runc:x1"}, Annotations: map[string]string{"ebpf-monitor": "false"}},
			want: Request{Op: "register", Container: &Container{ID: "x1", Name: "x1"}, CgroupsPath: "system.slice:runc:x1",
				Annotations: map[string]string{"ebpf-monitor": "true"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BuildRequest(&tt.st, tt.spec); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("BuildRequest =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestReadStateErrors(t *testing.T) {
	for _, in := range []string{"", "{", `{"id":""}`} {
		if _, err := ReadState(strings.NewReader(in)); err == nil {
			t.Errorf("ReadState(%q) succeeded", in)
		}
	}
}

// fakeAgent answers each request with answer and records the requests.
func fakeAgent(t *testing.T, answer string) (string, chan Request) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "vigil.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	reqs := make(chan Request, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var r Request
			json.NewDecoder(c).Decode(&r)
			reqs <- r
			c.Write([]byte(answer + "\n"))
			c.Close()
		}
	}()
	return sock, reqs
}

func bundle(t *testing.T, ann map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	spec := specs.Spec{Linux: &specs.Linux{CgroupsPath: "/vigil/c1"}, Annotations: ann}
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func state(id, bundle string) *bytes.Reader {
	data, _ := json.Marshal(specs.State{Version: specs.Version, ID: id, Status: specs.StateCreated, Pid: 1, Bundle: bundle})
	return bytes.NewReader(data)
}

func TestCreateRuntime(t *testing.T) {
	monitored := map[string]string{"ebpf-monitor": "true"}
	tests := []struct {
		name     string
		answer   string // "" = no agent
		ann      map[string]string
		failOpen bool
		wantErr  string
		wantWarn string
	}{
		{name: "registered", answer: `{"policy":{"Monitor":true}}`, ann: monitored},
		{name: "agent warnings shown", answer: `{"policy":{"Monitor":true,"Warnings":["seccomp not applied"]}}`, ann: monitored, wantWarn: "seccomp not applied"},
		{name: "agent rejects", answer: `{"error":"annotation \"ebpf-monitor\" has invalid value \"yes\""}`, ann: map[string]string{"ebpf-monitor": "yes"}, wantErr: `invalid value "yes"`},
		{name: "no agent, monitoring asked: fail closed", ann: monitored, wantErr: "connect to the agent at"},
		{name: "no agent, not asked: warn only", ann: nil, wantWarn: "not monitored"},
		{name: "no agent, monitoring asked, fail open: warn", ann: monitored, failOpen: true, wantWarn: "runs unmonitored (--fail-open)"},
		{name: "agent rejects, fail open: still fails", answer: `{"error":"annotation \"ebpf-monitor\" has invalid value \"yes\""}`, ann: map[string]string{"ebpf-monitor": "yes"}, failOpen: true, wantErr: `invalid value "yes"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "none.sock")
			var reqs chan Request
			if tt.answer != "" {
				sock, reqs = fakeAgent(t, tt.answer)
			}
			var warn bytes.Buffer
			err := CreateRuntime(state("c1", bundle(t, tt.ann)), Options{Socket: sock, FailOpen: tt.failOpen}, &warn)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if tt.wantWarn != "" && !strings.Contains(warn.String(), tt.wantWarn) {
				t.Errorf("warnings %q, want %q", warn.String(), tt.wantWarn)
			}
			if reqs != nil {
				r := <-reqs
				if r.Op != "register" || r.Container.ID != "c1" || r.CgroupsPath != "/vigil/c1" {
					t.Errorf("request %+v", r)
				}
			}
		})
	}
}

func TestPodmanNames(t *testing.T) {
	root := t.TempDir()
	stored := `[{"id":"other","names":["x"]},{"id":"c1","names":["web"],"metadata":"{\"image-name\":\"localhost/app:1\",\"name\":\"web\"}"}]`
	if err := os.WriteFile(filepath.Join(root, "containers.json"), []byte(stored), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, bundle string
		want         Container
	}{
		{name: "podman's layout", bundle: filepath.Join(root, "c1", "userdata"), want: Container{ID: "c1", Name: "web", Image: "localhost/app:1"}},
		{name: "another id's directory", bundle: filepath.Join(root, "c2", "userdata"), want: Container{ID: "c1", Name: "c1"}},
		{name: "not podman's layout", bundle: filepath.Join(root, "c1"), want: Container{ID: "c1", Name: "c1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Container{ID: "c1", Name: "c1"}
			podmanNames(tt.bundle, &c)
			if !reflect.DeepEqual(c, tt.want) {
				t.Errorf("got %+v, want %+v", c, tt.want)
			}
		})
	}
}

func TestPoststop(t *testing.T) {
	sock, reqs := fakeAgent(t, `{}`)
	if err := Poststop(state("c1", ""), sock, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if r := <-reqs; r.Op != "unregister" || r.Container.ID != "c1" {
		t.Errorf("request %+v", r)
	}
	var warn bytes.Buffer
	if err := Poststop(state("c1", ""), filepath.Join(t.TempDir(), "none"), &warn); err != nil || !strings.Contains(warn.String(), "connect") {
		t.Errorf("poststop without agent: %v, warning %q", err, warn.String())
	}
}
