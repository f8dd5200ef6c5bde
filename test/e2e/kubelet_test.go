package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/deploy"
	"vigil.dev/vigil/event"
)

// kubeletImage is the agent's image as deploy/image/build.sh makes it for
// this test, imported into containerd and removed after.
const kubeletImage = "localhost/vigil:e2e-kubelet"

// kubeletPinDir is where the agent pod pins its tracer: not the suite
// agent's, which stays pinned (and counting) meanwhile.
const kubeletPinDir = "/sys/fs/bpf/vigil-e2e-kubelet"

// TestKubeletStaticPods runs a real kubelet (install/kubelet.sh: built once
// from k8s.io/kubernetes and cached, standalone, static pods only) on the
// test node's containerd, with vigil's agent as a static pod made from the
// Helm chart's DaemonSet pod template in the image of deploy/image/build.sh:
// an annotated static pod is traced from its first execve with its
// namespace, pod name and uid; an unannotated one is not; killing the
// agent's container (kubelet restarts it) loses neither the monitored
// container's counters nor its seccomp notify answers (the keeper sidecar
// holds the fds). The suite's agent is stopped meanwhile (one NRI plugin
// named vigil at a time) and started again after.
func TestKubeletStaticPods(t *testing.T) {
	need(t)
	if testRuntime.name != "containerd" {
		t.Skipf("kubelet runs on the node's containerd: tested in the containerd pass only (this pass: %s)", testRuntime.name)
	}
	// After kubelet has stopped the agent's pod (cleanups run last first).
	t.Cleanup(func() {
		if err := errors.Join(bpf.Unpin(kubeletPinDir), bpf.UnpinGuard(kubeletPinDir+"-guard")); err != nil {
			t.Errorf("unpin the agent pod's tracer: %v", err)
		}
		for _, d := range []string{kubeletPinDir, kubeletPinDir + "-guard"} {
			if _, err := os.Stat(d); err == nil {
				t.Errorf("pins remain in %s", d)
			}
		}
	})
	k := startKubelet(t)

	// The agent's static pod.
	dir := filepath.Join(workDir, "kubelet")
	runDir, libDir := filepath.Join(dir, "run"), filepath.Join(dir, "lib")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	sp, err := deploy.RenderStaticPod(map[string]any{
		"image": map[string]any{"repository": "localhost/vigil", "tag": strings.TrimPrefix(kubeletImage, "localhost/vigil:"), "pullPolicy": "Never"},
		// No CNI on the test node: host network (the metrics port is the node's).
		"hostNetwork": true, "dnsPolicy": "Default",
		"hostPaths": map[string]any{"run": runDir, "lib": libDir},
		"keeper":    map[string]any{"socket": filepath.Join(runDir, "notify-keeper.sock")},
		"metrics":   map[string]any{"port": port},
		"agent": map[string]any{"events": "/var/lib/vigil/events.jsonl", "decisions": "/var/lib/vigil/decisions.jsonl",
			"extraArgs": []any{"--pin-dir=" + kubeletPinDir}},
		"terminationGracePeriodSeconds": 5,
	}, filepath.Join(dir, "config"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.WriteConfig(); err != nil {
		t.Fatal(err)
	}
	manifest, err := sp.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	k.addPod(t, "vigil.yaml", manifest)
	agentPod := sp.Pod.Name + "-" + k.node
	ctl := filepath.Join(runDir, "vigil.sock")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := crictlCmd("logs", "--tail", "60", k.containerID(agentPod, "agent")).CombinedOutput()
			t.Logf("agent pod's log:\n%s", out)
		}
	})
	start := time.Now()
	eventually(t, "the agent pod connected to containerd", 3*time.Minute, func() bool {
		st, err := vigilStatus(ctl)
		return err == nil && st.Connected
	})
	t.Logf("agent pod connected %v after its manifest was written", time.Since(start).Round(time.Millisecond))
	events, decisions := filepath.Join(libDir, "events.jsonl"), filepath.Join(libDir, "decisions.jsonl")

	// (1) An annotated static pod: traced from its first execve, with its
	// namespace, name and uid; its notify container's mkdir is answered.
	k.addPod(t, "traced.yaml", staticPod("traced", map[string]string{"ebpf-monitor": "true"},
		map[string]any{"name": "probe", "image": probe, "imagePullPolicy": "Never"},
		map[string]any{"name": "mk", "image": busybox, "imagePullPolicy": "Never",
			"command": []string{"sh", "-c", "i=0; while true; do i=$((i+1)); mkdir /tmp/d$i && echo ok$i || echo fail$i; sleep 0.1; done"}}))
	traced := &pod{name: "traced-" + k.node, namespace: "vigil-e2e"}
	var probeID, mkID string
	eventually(t, "the traced pod's containers", 60*time.Second, func() bool {
		probeID, mkID = k.containerID(traced.name, "probe"), k.containerID(traced.name, "mk")
		return probeID != "" && mkID != ""
	})
	uid := k.podUID(t, traced.name)
	var evs []event.Event
	eventually(t, "the probe's exit_group in the agent pod's events", 30*time.Second, func() bool {
		evs = eventsIn(t, events, probeID)
		return len(evs) > 0 && evs[len(evs)-1].Name() == "exit_group"
	})
	checkProbeTrace(t, evs, traced, "probe", probeID)
	// The pod's uid as kubelet made it, and the node's name from the chart's
	// NODE_NAME (spec.nodeName).
	for i, e := range evs {
		if c := e.Container; c.PodUID != uid || uid == "" || c.Node != k.node {
			t.Fatalf("event %d: pod uid %q on node %q, want the static pod's %q on %q", i, c.PodUID, c.Node, uid, k.node)
		}
	}
	mkdirs := func() (ok int, logs string) {
		out, _ := crictlCmd("logs", mkID).CombinedOutput()
		return strings.Count(string(out), "ok"), string(out)
	}
	eventually(t, "the notify container's mkdir answered", 30*time.Second, func() bool {
		n, _ := mkdirs()
		return n > 3 && hasDecision(decisionsIn(t, decisions, mkID), "mkdir", "allow", "")
	})
	cs := podContainerStatus(t, ctl, mkID)
	if !cs.Monitor || !cs.Tracked || cs.Pod != traced.name || cs.Namespace != traced.namespace || cs.Seccomp != "notify" {
		t.Errorf("vigil status of the monitored container: %+v, want tracked in %s/%s with the notify profile (the default)", cs, traced.namespace, traced.name)
	}

	// (2) An unannotated static pod: not traced, no profile of vigil's.
	k.addPod(t, "plain.yaml", staticPod("plain", nil,
		map[string]any{"name": "app", "image": busybox, "imagePullPolicy": "Never",
			"command": []string{"sh", "-c", "grep Seccomp: /proc/self/status; mkdir /tmp/d && echo made"}}))
	var plainID string
	eventually(t, "the plain pod's container exited", 60*time.Second, func() bool {
		plainID = k.containerID("plain-"+k.node, "app")
		if plainID == "" {
			return false
		}
		out, _ := crictl(nil, "inspect", "-o", "go-template", "--template", "{{.status.state}}", plainID)
		return out == "CONTAINER_EXITED"
	})
	if logs, _ := crictlCmd("logs", plainID).CombinedOutput(); !strings.Contains(string(logs), "Seccomp:\t0") || !strings.Contains(string(logs), "made") {
		t.Errorf("unannotated container: %q, want no seccomp filter and mkdir working", logs)
	}
	time.Sleep(300 * time.Millisecond) // past the agent's flush interval
	if n := len(eventsIn(t, events, plainID)); n != 0 {
		t.Errorf("unannotated static pod traced: %d events", n)
	}
	if d := decisionsIn(t, decisions, plainID); len(d) != 0 {
		t.Errorf("unannotated static pod got notify decisions: %+v", d)
	}
	if cs := podContainerStatus(t, ctl, plainID); cs.Monitor || cs.Tracked || cs.Seen > 0 {
		t.Errorf("vigil status of the unannotated container: %+v", cs)
	}

	// (3) Kill the agent's container: kubelet starts a new one, which finds
	// the pinned counters and the notify fds the keeper sidecar held.
	agentID, keeperID := k.containerID(agentPod, "agent"), k.containerID(agentPod, "notify-keeper")
	if agentID == "" || keeperID == "" {
		t.Fatalf("agent pod containers: agent %q, notify-keeper %q", agentID, keeperID)
	}
	before := podContainerStatus(t, ctl, mkID).Seen
	oks, _ := mkdirs()
	pid := k.containerPID(t, agentID)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the agent (pid %d): %v", pid, err)
	}
	killed := time.Now()
	var newID string
	eventually(t, "kubelet restarted the agent container, connected again", 3*time.Minute, func() bool {
		newID = k.containerID(agentPod, "agent")
		st, err := vigilStatus(ctl)
		return newID != "" && newID != agentID && err == nil && st.Connected
	})
	t.Logf("agent container restarted by kubelet and connected %v after the kill", time.Since(killed).Round(time.Millisecond))
	var after agentctl.ContainerStatus
	eventually(t, "the monitored container tracked again, counting on", 30*time.Second, func() bool {
		after = podContainerStatus(t, ctl, mkID)
		return after.Tracked && after.Seen > before
	})
	if after.Pod != traced.name || after.Namespace != traced.namespace || after.Name != "mk" {
		t.Errorf("metadata after the restart: %+v", after)
	}
	if k.containerID(agentPod, "notify-keeper") != keeperID {
		t.Error("the notify keeper's container changed with the agent's: it should survive it")
	}
	nd := len(decisionsIn(t, decisions, mkID))
	eventually(t, "the notify container's mkdir answered by the new agent", 30*time.Second, func() bool {
		n, _ := mkdirs()
		return n > oks+3 && len(decisionsIn(t, decisions, mkID)) > nd
	})
	if _, logs := mkdirs(); strings.Contains(logs, "fail") {
		t.Errorf("the notify container's mkdir failed across the agent's restart:\n%s", logs)
	}
}

// kubelet is the standalone kubelet of install/kubelet.sh.
type kubelet struct {
	node      string // its node's name (static pods are named NAME-NODE)
	manifests string // its static pod directory
}

// startKubelet builds (once, cached) and starts the kubelet, with the
// agent's image imported and the suite's agent stopped; cleanups stop
// kubelet and its pods and restore the suite's agent and the node.
func startKubelet(t *testing.T) *kubelet {
	t.Helper()
	script := filepath.Join(repo, "install/kubelet.sh")
	// A fresh machine builds kubelet here (minutes; progress on the output).
	build := exec.Command("bash", script, "build")
	build.Stdout, build.Stderr = os.Stdout, os.Stdout
	if err := build.Run(); err != nil {
		t.Fatalf("install/kubelet.sh build: %v", err)
	}
	env, err := exec.Command("bash", script, "env").Output()
	if err != nil {
		t.Fatalf("install/kubelet.sh env: %v", err)
	}
	vars := map[string]string{}
	for _, l := range strings.Split(string(env), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			vars[k] = v
		}
	}
	k := &kubelet{node: vars["KUBELET_NODE"], manifests: vars["KUBELET_MANIFESTS"]}
	if k.node == "" || k.manifests == "" {
		t.Fatalf("install/kubelet.sh env: %q", env)
	}

	// The agent's image, as deploy/image/build.sh makes it.
	img := filepath.Join(workDir, "vigil-image.tar")
	cmd := exec.Command(filepath.Join(repo, "deploy/image/build.sh"), "-o", img, "-n", kubeletImage)
	cmd.Env = append(os.Environ(), "VERSION=e2e-kubelet")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy/image/build.sh: %v\n%s", err, out)
	}
	ctr := func(args ...string) ([]byte, error) {
		return exec.Command("ctr", append([]string{"--address", testRuntime.endpoint, "-n", "k8s.io"}, args...)...).CombinedOutput()
	}
	if out, err := ctr("images", "import", img); err != nil {
		t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// Through CRI: it also removes the image's id reference (sha256:CONFIG).
		if _, err := crictl(nil, "rmi", kubeletImage); err != nil {
			t.Errorf("remove the agent's image: %v", err)
		}
	})

	// One vigil on the NRI socket at a time; the suite's comes back last.
	agent.stop()
	t.Cleanup(func() {
		var err error
		if agent, err = startAgent(); err != nil {
			t.Errorf("restart the suite's agent: %v", err)
		}
	})
	// kubelet stops the runtime's pods it does not know: there should be none.
	if out, _ := crictl(nil, "pods", "-q"); out != "" {
		t.Logf("pods on the node before kubelet starts (kubelet will stop them): %s", out)
	}
	// What an interrupted run left (kubelet, its pods, its manifests) goes first.
	if out, err := exec.Command("bash", script, "down").CombinedOutput(); err != nil {
		t.Fatalf("install/kubelet.sh down (before the test): %v\n%s", err, out)
	}
	up := exec.Command("bash", script, "up")
	up.Stdout, up.Stderr = os.Stdout, os.Stdout
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(vars["KUBELET_LOG"]); err == nil {
				lines := strings.Split(string(log), "\n")
				t.Logf("kubelet log (last 40 lines):\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
		down := exec.Command("bash", script, "down")
		if out, err := down.CombinedOutput(); err != nil {
			t.Errorf("install/kubelet.sh down: %v\n%s", err, out)
		}
		// Nothing of kubelet's is left: no pod, no mount, no directory.
		if out, _ := crictl(nil, "pods", "-q", "--label", "io.kubernetes.pod.namespace=vigil-e2e"); out != "" {
			t.Errorf("static pods left after kubelet: %s", out)
		}
		if out, _ := crictl(nil, "pods", "-q", "--label", "io.kubernetes.pod.namespace="+deploy.Namespace); out != "" {
			t.Errorf("agent pod left after kubelet: %s", out)
		}
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		if root := vars["KUBELET_ROOT_DIR"]; bytes.Contains(mounts, []byte(" "+root)) {
			t.Errorf("mounts left under %s", root)
		}
		if _, err := os.Stat(filepath.Dir(vars["KUBELET_ROOT_DIR"])); err == nil {
			t.Errorf("%s left after kubelet", filepath.Dir(vars["KUBELET_ROOT_DIR"]))
		}
	})
	if err := up.Run(); err != nil {
		t.Fatalf("install/kubelet.sh up: %v", err)
	}
	return k
}

// addPod writes a static pod manifest.
func (k *kubelet) addPod(t *testing.T, name string, manifest []byte) {
	t.Helper()
	tmp := filepath.Join(k.manifests, "."+name)
	if err := os.WriteFile(tmp, manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.manifests, name)); err != nil {
		t.Fatal(err)
	}
}

// staticPod is a host-network pod manifest in namespace vigil-e2e that
// runs its containers once.
func staticPod(name string, ann map[string]string, containers ...map[string]any) []byte {
	b, err := yaml.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": "vigil-e2e", "annotations": ann},
		"spec": map[string]any{"hostNetwork": true, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
			"containers": containers},
	})
	if err != nil {
		panic(err) // maps of strings
	}
	return b
}

// containerID is the newest running container NAME of static pod POD
// ("" if none).
func (k *kubelet) containerID(pod, name string) string {
	out, _ := crictl(nil, "ps", "-a", "-q", "--label", "io.kubernetes.pod.name="+pod, "--name", "^"+name+"$", "--latest")
	return out
}

// podUID is the uid kubelet gave a static pod (its sandbox's metadata).
func (k *kubelet) podUID(t *testing.T, name string) string {
	t.Helper()
	id, _ := crictl(t, "pods", "-q", "--label", "io.kubernetes.pod.name="+name)
	out, _ := crictl(t, "inspectp", "-o", "go-template", "--template", "{{.status.metadata.uid}}", strings.Fields(id)[0])
	return out
}

func (k *kubelet) containerPID(t *testing.T, id string) int {
	t.Helper()
	out, _ := crictl(t, "inspect", id)
	var v struct {
		Info struct {
			Pid int `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Info.Pid <= 0 {
		t.Fatalf("crictl inspect %s: pid %d, %v", id, v.Info.Pid, err)
	}
	return v.Info.Pid
}

// vigilStatus is `vigil status --json` against an agent's control socket.
func vigilStatus(sock string) (*agentctl.Status, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(vigil, "status", "--json", "--socket", sock)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("vigil status: %v: %s", err, stderr.Bytes())
	}
	var st agentctl.Status
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("vigil status --json: %w", err)
	}
	return &st, nil
}

// podContainerStatus is one container in `vigil status --json` of the agent
// at sock (live or finished; zero if not there).
func podContainerStatus(t *testing.T, sock, id string) agentctl.ContainerStatus {
	t.Helper()
	st, err := vigilStatus(sock)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(append(st.Containers, st.Finished...), func(c agentctl.ContainerStatus) bool { return c.ID == id }); i >= 0 {
		return append(st.Containers, st.Finished...)[i]
	}
	return agentctl.ContainerStatus{}
}
