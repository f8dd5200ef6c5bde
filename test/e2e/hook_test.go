package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"vigil.dev/vigil/event"
)

// TestOCIHookMode runs a container with plain runc (no containerd, no NRI)
// whose config.json has vigil's createRuntime and poststop hooks: the agent
// tracks it from its first execve and untracks it after.
func TestOCIHookMode(t *testing.T) {
	need(t)
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	probeBin := filepath.Join(rootfs, "probe")
	if out, err := exec.Command("gcc", "-O1", "-static", "-nostdlib", "-fno-stack-protector", "-o", probeBin,
		filepath.Join(repo, "test/e2e/testdata/probe.c")).CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
	id := fmt.Sprintf("vigil-hook-%d", os.Getpid())
	cmd := exec.Command("runc", "spec", "--bundle", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	spec := readSpec(t, dir)
	spec.Process.Args = []string{"/probe"}
	spec.Process.Terminal = false
	spec.Root = &specs.Root{Path: "rootfs", Readonly: true}
	spec.Annotations = map[string]string{"ebpf-monitor": "true"}
	spec.Linux.CgroupsPath = "/vigil-e2e-hook/" + id
	// runc removes the container's cgroups, not the parent it made for them.
	t.Cleanup(func() {
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/vigil-e2e-hook")
		for _, d := range append(dirs, "/sys/fs/cgroup/vigil-e2e-hook") {
			os.Remove(d)
		}
	})
	hookArgs := func(stage string) []string { return []string{"vigil", "hook", stage, "--socket", controlSocket()} }
	spec.Hooks = &specs.Hooks{
		CreateRuntime: []specs.Hook{{Path: vigil, Args: hookArgs("create-runtime")}},
		Poststop:      []specs.Hook{{Path: vigil, Args: hookArgs("poststop")}},
	}
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	run := exec.Command("runc", "--root", filepath.Join(workDir, "runc"), "run", "--bundle", dir, id)
	out, err := run.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "probe done") {
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	var evs []event.Event
	eventually(t, "the hooked container's events", 10*time.Second, func() bool {
		evs = eventsOf(t, id)
		return len(evs) > 0 && evs[len(evs)-1].Name() == "exit_group"
	})
	start := slices.IndexFunc(evs, func(e event.Event) bool { return e.Name() == "execve" && e.Path == "/probe" })
	if start < 0 || len(evs)-start != probeN+3 {
		t.Fatalf("%d events, execve at %d: want the probe's %d syscalls from its execve on", len(evs), start, probeN+3)
	}
	if c := evs[start].Container; c == nil || c.Name != id {
		t.Errorf("metadata %+v, want the container id as its name", c)
	}
	// Untracked at poststop. runc has removed the cgroup by then, and the
	// kernel its counters with it: the final counters are the last refreshed.
	eventually(t, "untracked at poststop", 5*time.Second, func() bool {
		cs, ok := containerStatus(t, id)
		return ok && !cs.Tracked && cs.State == "stopped"
	})
}

func readSpec(t *testing.T, dir string) *specs.Spec {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}
