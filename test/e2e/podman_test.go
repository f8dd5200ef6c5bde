package e2e

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

// TestPodmanHook runs containers with a real podman (its own storage and
// runc, no containerd) whose hooks directory holds vigil's OCI hooks: an
// annotated container is traced from its first execve under its podman
// name, an unannotated one is not, and with the agent unreachable an
// annotated container fails to start unless the hook is told to fail open.
// podman runs its own runtime, so the test runs in the containerd pass only.
func TestPodmanHook(t *testing.T) {
	need(t)
	if testRuntime.name != "containerd" {
		t.Skipf("podman runs its own runtime: tested in the containerd pass only (this pass: %s)", testRuntime.name)
	}
	pm := newPodman(t)
	pm.load(t, "busybox")
	suffix := fmt.Sprint(os.Getpid())
	hooks := pm.hooksDir(t, "agent", controlSocket())
	missing := filepath.Join(pm.dir, "no-agent.sock")
	down := pm.hooksDir(t, "down", missing)
	failOpen := pm.hooksDir(t, "fail-open", missing, "--fail-open")

	// Not annotated: runs normally, and the hook is not even run.
	plain := "vigil-podman-plain-" + suffix
	if out, stderr, err := pm.run(hooks, "run", "--name", plain, busybox, "sh", "-c", "echo plain ok"); err != nil || out != "plain ok" {
		t.Fatalf("unannotated container: %v: %q\n%s", err, out, stderr)
	}
	plainID := pm.id(t, plain)

	// Annotated: tracked from before its first execve, under its name.
	name := "vigil-podman-" + suffix
	script := "echo x >/tmp/vigil-podman-marker && exec sleep 60"
	id, stderr, err := pm.run(hooks, "run", "-d", "--name", name, "--annotation", "ebpf-monitor=true", busybox, "sh", "-c", script)
	if err != nil {
		t.Fatalf("annotated container: %v\n%s", err, stderr)
	}
	var evs []event.Event
	eventually(t, "the podman container's events up to its exec of sleep", 10*time.Second, func() bool {
		evs = eventsOf(t, id)
		// busybox sh execs its applets as /proc/self/exe.
		return slices.ContainsFunc(evs, func(e event.Event) bool {
			return e.Name() == "execve" && slices.Equal(e.Argv, []string{"sleep", "60"})
		})
	})
	first := slices.IndexFunc(evs, func(e event.Event) bool { return e.Name() == "execve" })
	if first < 0 || evs[first].Path != "/bin/sh" || !slices.Contains(evs[first].Argv, script) {
		t.Fatalf("first execve of the container: %+v, want /bin/sh with the script", evs[max(first, 0)])
	}
	if !slices.ContainsFunc(evs[first:], func(e event.Event) bool { return e.Path == "/tmp/vigil-podman-marker" }) {
		t.Errorf("no event of the script's open of /tmp/vigil-podman-marker among %d events", len(evs))
	}
	if c := evs[first].Container; c == nil || c.Name != name || c.Image != busybox {
		t.Errorf("metadata %+v, want name %s and image %s", c, name, busybox)
	}
	// The hook cannot change podman's seccomp policy: status shows the
	// runtime's policy, not the profile the annotations ask for.
	cs, ok := containerStatus(t, id)
	if !ok || !cs.Hook || !cs.Tracked || cs.Seccomp != "(runtime's)" {
		t.Errorf("status %+v (found %v), want a tracked hook container with seccomp (runtime's)", cs, ok)
	}
	out, err := exec.Command(vigil, "status", "--socket", controlSocket()).CombinedOutput()
	if line := lineWith(string(out), id[:12]); err != nil || !strings.Contains(line, "(runtime's)") || !strings.Contains(line, name) {
		t.Errorf("vigil status: %v: line %q, want the container's name and SECCOMP (runtime's)\n%s", err, line, out)
	}
	// Untracked at poststop.
	if _, stderr, err := pm.run(hooks, "rm", "-f", "-t", "0", name); err != nil {
		t.Fatalf("podman rm: %v\n%s", err, stderr)
	}
	eventually(t, "the podman container untracked at poststop", 10*time.Second, func() bool {
		cs, ok := containerStatus(t, id)
		return ok && !cs.Tracked && cs.State == "stopped"
	})
	if evs := eventsOf(t, plainID); len(evs) > 0 {
		t.Errorf("%d events of the unannotated container %s, want none", len(evs), plainID)
	}
	if _, ok := containerStatus(t, plainID); ok {
		t.Errorf("the unannotated container %s is in the agent's status", plainID)
	}

	// No agent: the annotated container fails, and says why.
	_, stderr, err = pm.run(down, "run", "--name", "vigil-podman-down-"+suffix, "--annotation", "ebpf-monitor=true", busybox, "true")
	if err == nil {
		t.Fatal("an annotated container started with no agent listening, want it to fail")
	}
	t.Logf("podman with no agent: %s", stderr)
	if !strings.Contains(stderr, "vigil") || !strings.Contains(stderr, missing) || !strings.Contains(stderr, "--fail-open") {
		t.Errorf("podman's error %q does not name vigil, the socket %s and --fail-open", stderr, missing)
	}
	// No agent, the hook fails open: the container runs, unmonitored.
	open := "vigil-podman-open-" + suffix
	if out, stderr, err := pm.run(failOpen, "run", "--name", open, "--annotation", "ebpf-monitor=true", busybox, "sh", "-c", "echo open ok"); err != nil || out != "open ok" {
		t.Fatalf("annotated container with --fail-open and no agent: %v: %q\n%s", err, out, stderr)
	}
	if _, ok := containerStatus(t, pm.id(t, open)); ok {
		t.Errorf("the fail-open container %s is in the agent's status", open)
	}
}

func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// podman is a podman with its own storage, run state and temporary
// directory under dir, removed with everything in them at the test's end.
type podman struct {
	dir    string
	cgroup string // the containers' parent cgroup, in every hierarchy
}

// newPodman sets up a podman for the test; it skips when podman cannot run
// here at all (install/node.sh installs it).
func newPodman(t *testing.T) *podman {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skipf("podman not installed (install/node.sh up installs it): %v", err)
	}
	dir, err := os.MkdirTemp("", "vigil-podman-")
	if err != nil {
		t.Fatal(err)
	}
	pm := &podman{dir: dir, cgroup: filepath.Base(dir)}
	t.Cleanup(func() { pm.remove(t) })
	if _, stderr, err := pm.run("", "info"); err != nil {
		t.Skipf("podman cannot run on this machine: podman info: %v\n%s", err, stderr)
	}
	return pm
}

// run runs podman with the test's storage and hooks directory (none when
// ""), returning its trimmed stdout and stderr.
func (pm *podman) run(hooks string, args ...string) (string, string, error) {
	global := []string{"--root", filepath.Join(pm.dir, "root"), "--runroot", filepath.Join(pm.dir, "run"),
		"--tmpdir", filepath.Join(pm.dir, "tmp"), "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
		"--runtime", "runc", "--events-backend", "none"}
	if hooks != "" {
		global = append(global, "--hooks-dir", hooks)
	}
	if args[0] == "run" {
		// This machine's root lacks CAP_SYS_RESOURCE: podman's default
		// rlimits are above the hard limits it may set.
		args = append([]string{"run", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
			"--cgroup-parent", "/" + pm.cgroup}, args[1:]...)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("podman", append(global, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("podman %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()), err
}

// load loads one of install/node.sh's image tarballs.
func (pm *podman) load(t *testing.T, image string) {
	t.Helper()
	tar := filepath.Join(cmp.Or(os.Getenv("VIGIL_CACHE"), "/var/cache/vigil"), "images", image+".tar")
	if _, stderr, err := pm.run("", "load", "-q", "-i", tar); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
}

// id is the full id of a container.
func (pm *podman) id(t *testing.T, name string) string {
	t.Helper()
	out, stderr, err := pm.run("", "inspect", "--format", "{{.Id}}", name)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	return out
}

// hooksDir writes a hooks.d directory like install/node-oci-hook*.json
// with the vigil under test, the given socket and extra create-runtime
// arguments.
func (pm *podman) hooksDir(t *testing.T, name, socket string, extra ...string) string {
	t.Helper()
	dir := filepath.Join(pm.dir, "hooks-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for stage, file := range map[string]string{"createRuntime": "vigil.json", "poststop": "vigil-poststop.json"} {
		args := []string{"vigil", "hook", "create-runtime", "--socket", socket}
		if stage == "poststop" {
			args = []string{"vigil", "hook", "poststop", "--socket", socket}
		} else {
			args = append(args, extra...)
		}
		h := map[string]any{
			"version": "1.0.0",
			"hook":    map[string]any{"path": vigil, "args": args},
			"when":    map[string]any{"annotations": map[string]string{"^ebpf-monitor(/.*)?$": "^true$"}},
			"stages":  []string{stage},
		}
		data, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// remove removes the test's containers, images and storage, and fails the
// test when a mount under its directory remains.
func (pm *podman) remove(t *testing.T) {
	if _, stderr, err := pm.run("", "rm", "-af", "-t", "0"); err != nil {
		t.Errorf("%v\n%s", err, stderr)
	}
	if _, stderr, err := pm.run("", "system", "reset", "-f"); err != nil {
		t.Errorf("%v\n%s", err, stderr)
	}
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], pm.dir+"/") {
				t.Errorf("mount left by podman: %s", f[4])
			}
		}
	}
	if err := os.RemoveAll(pm.dir); err != nil {
		t.Errorf("remove podman's directory: %v", err)
	}
	// podman leaves the parent cgroup (cgroupfs) in each hierarchy, with
	// conmon's cgroup in it.
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + pm.cgroup)
	for _, d := range append(dirs, "/sys/fs/cgroup/"+pm.cgroup) {
		if err := removeCgroup(d); err != nil && !os.IsNotExist(err) {
			t.Errorf("remove podman's parent cgroup: %v", err)
		}
	}
}

// removeCgroup removes an empty cgroup and its empty children; it retries
// shortly while a process that just exited still holds one.
func removeCgroup(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroup(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err = os.Remove(dir); err == nil || time.Now().After(deadline) {
			return err
		}
	}
}
