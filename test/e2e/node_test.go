// Package e2e runs vigil on a real node: containerd with NRI, runc,
// crictl and local images (install/node.sh sets them up), and the real
// agent binary. Tests create pods and containers with crictl and assert
// what the tracer, the seccomp notify server and the kernel did. As root.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	vigilagent "vigil.dev/vigil/agent"
	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/privtest"
)

const (
	busybox = "localhost/vigil/busybox:1"
	probe   = "localhost/vigil/probe:1"
	probeN  = 500 // PROBE_N in testdata/probe.c
)

var (
	repo     string
	vigil    string // the agent binary under test
	workDir  string // sockets, outputs, pod logs
	agent    *agentProc
	setupErr error
)

func TestMain(m *testing.M) {
	if code, ran := eachRuntime(); ran {
		os.Exit(code)
	}
	if os.Geteuid() == 0 {
		setupErr = setup()
	}
	code := m.Run()
	if agent != nil {
		agent.stop()
	}
	if os.Geteuid() == 0 && setupErr == nil {
		crictl(nil, "rmp", "-fa")
		// The tracer and the connect guard stay pinned (and attached to
		// the host) after the agent by design: remove both.
		if err := errors.Join(bpf.Unpin(pinDir), bpf.UnpinGuard(guardPinDir)); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: unpin: %v\n", err)
			code = 1
		}
		for _, d := range []string{pinDir, guardPinDir} {
			if _, err := os.Stat(d); err == nil {
				fmt.Fprintf(os.Stderr, "e2e: pins remain in %s after the tests\n", d)
				code = 1
			}
		}
		// The agent started the notify fd keeper; it outlives agents by design.
		if data, err := os.ReadFile(keeperSocket() + ".pid"); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
		os.RemoveAll(workDir)
	}
	os.Exit(code)
}

const pinDir = "/sys/fs/bpf/vigil-e2e"

// guardPinDir is where the agent pins the connect guard: beside pinDir.
const guardPinDir = pinDir + "-guard"

func setup() error {
	// go test runs in the package's directory, test/e2e.
	var err error
	if repo, err = filepath.Abs("../.."); err != nil {
		return fmt.Errorf("find repository: %w", err)
	}
	// A pre-registered test agent left by an interrupted run would start
	// with containerd and claim every container's seccomp policy.
	if data, err := os.ReadFile(preRegisteredEntry()); err == nil && strings.Contains(string(data), "vigil-e2e-") {
		os.Remove(preRegisteredEntry())
	}
	if out, err := exec.Command("bash", nodeUpArgs()...).CombinedOutput(); err != nil {
		return fmt.Errorf("install/node.sh up --runtime %s: %v\n%s", testRuntime.name, err, out)
	}
	workDir, err = os.MkdirTemp("", "vigil-e2e-")
	if err != nil {
		return err
	}
	if vigil, err = buildVigil(filepath.Join(workDir, "vigil")); err != nil {
		return err
	}
	crictl(nil, "rmp", "-fa")
	os.RemoveAll(pinDir)
	cfg := fmt.Sprintf("forceMonitor:\n  namespaces: [vigil-forced]\nprofileDir: %s\npolicyDir: %s\n", filepath.Join(repo, "test/e2e/testdata/profiles"), policyDir())
	if err := writeControlFiles(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(workDir, "config.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	metricsAddr = ln.Addr().String()
	ln.Close()
	agent, err = startAgent()
	return err
}

// metricsAddr is where the test agent serves /healthz and /metrics.
var metricsAddr string

// need skips when not root and fails when the node could not be set up;
// it skips the tests of vigil's seccomp policies in other files where the
// runtime cannot take them (seccompTests).
func need(t *testing.T) {
	t.Helper()
	privtest.Require(t)
	if setupErr != nil {
		t.Fatalf("test node setup (%s): %v", testRuntime.name, setupErr)
	}
	if seccompTests[t.Name()] {
		needSeccompAdjust(t)
	}
}

// agentProc is a running `vigil agent`.
type agentProc struct {
	cmd       *exec.Cmd
	events    string
	decisions string
	log       *bytes.Buffer
	logMu     *sync.Mutex
	done      chan struct{}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func startAgent() (*agentProc, error) {
	a := &agentProc{events: filepath.Join(workDir, "events.jsonl"), decisions: filepath.Join(workDir, "decisions.jsonl"),
		log: &bytes.Buffer{}, logMu: &sync.Mutex{}, done: make(chan struct{})}
	a.cmd = exec.Command(vigil, "agent", "--config", filepath.Join(workDir, "config.yaml"),
		"--control-socket", controlSocket(), "--listener", filepath.Join(workDir, "seccomp.sock"),
		"--events", a.events, "--decisions", a.decisions, "--pin-dir", pinDir, "--audit", auditDir(),
		"--metrics-addr", metricsAddr, "--notify-keeper", keeperSocket(), "--nri-socket", testRuntime.nriSocket,
		"--policy", ruleFile(), "--allowed-resolver", allowedResolver, "--state", filepath.Join(workDir, "control-state.json"))
	a.cmd.Stdout = lockedWriter{a.logMu, a.log}
	a.cmd.Stderr = lockedWriter{a.logMu, a.log}
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-a.done:
			return nil, fmt.Errorf("agent exited:\n%s", a.logs())
		default:
		}
		if st, err := status(); err == nil && st.Connected {
			return a, nil
		}
	}
	a.kill()
	return nil, fmt.Errorf("agent not connected to %s after 15s:\n%s", testRuntime.name, a.logs())
}

func (a *agentProc) logs() string { a.logMu.Lock(); defer a.logMu.Unlock(); return a.log.String() }

func (a *agentProc) stop() {
	if a == nil { // an earlier test failed to restart it
		return
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		a.kill()
	}
}

func (a *agentProc) kill() {
	a.cmd.Process.Kill()
	<-a.done
}

func controlSocket() string { return filepath.Join(workDir, "vigil.sock") }

func auditDir() string { return filepath.Join(workDir, "audit") }

func keeperSocket() string { return filepath.Join(workDir, "keeper.sock") }

func status() (*agentctl.Status, error) {
	resp, err := agentctl.Call(controlSocket(), agentctl.Request{Op: "status"})
	if err != nil {
		return nil, err
	}
	return resp.Status, nil
}

// crictl runs crictl; with t set, a failure fails the test.
func crictl(t *testing.T, args ...string) (string, error) {
	if t != nil {
		t.Helper()
	}
	var stderr bytes.Buffer
	cmd := crictlCmd(args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("crictl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		if t != nil {
			t.Fatal(err)
		}
	}
	return strings.TrimSpace(string(out)), err
}

// pod is a host-network pod sandbox (no CNI needed; no hostname set).
type pod struct {
	id, name, namespace string
	config              string
}

var podSeq int

func runPod(t *testing.T, name, namespace string, ann map[string]string) *pod {
	t.Helper()
	podSeq++
	cfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": namespace, "uid": fmt.Sprintf("%s-%d-%d", name, os.Getpid(), podSeq)},
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
		"log_directory": filepath.Join(workDir, "logs", fmt.Sprintf("%s-%d", name, podSeq)),
		"annotations":   ann,
	}
	path := writeJSON(t, fmt.Sprintf("pod-%s-%d.json", name, podSeq), cfg)
	id, _ := crictl(t, "runp", path)
	p := &pod{id: id, name: name, namespace: namespace, config: path}
	t.Cleanup(func() { crictl(nil, "rmp", "-f", id) })
	return p
}

var ctrSeq int

// create creates a container; it returns crictl's error (e.g. a rejection).
func (p *pod) create(t *testing.T, name, image string, cmd []string, ann map[string]string) (string, error) {
	t.Helper()
	ctrSeq++
	cfg := map[string]any{
		"metadata":    map[string]any{"name": name},
		"image":       map[string]any{"image": image},
		"log_path":    fmt.Sprintf("%s-%d.log", name, ctrSeq),
		"annotations": ann,
		"linux":       testRuntime.containerLinux(),
	}
	if cmd != nil {
		cfg["command"] = cmd
	}
	path := writeJSON(t, fmt.Sprintf("ctr-%s-%d.json", name, ctrSeq), cfg)
	return crictl(nil, "create", p.id, path, p.config)
}

// run creates and starts a container, failing the test on error.
func (p *pod) run(t *testing.T, name, image string, cmd []string, ann map[string]string) string {
	t.Helper()
	id, err := p.create(t, name, image, cmd, ann)
	if err != nil {
		t.Fatal(err)
	}
	crictl(t, "start", id)
	return id
}

func writeJSON(t *testing.T, name string, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(workDir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitExited waits for a container to exit and returns its logs.
func waitExited(t *testing.T, id string) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, _ := crictl(t, "inspect", "-o", "go-template", "--template", "{{.status.state}}", id)
		if out == "CONTAINER_EXITED" {
			// crictl prints the container's stderr on its own stderr.
			logs, err := crictlCmd("logs", id).CombinedOutput()
			if err != nil {
				t.Fatalf("crictl logs %s: %v: %s", id, err, logs)
			}
			return string(logs)
		}
	}
	t.Fatalf("container %s did not exit in 20s", id)
	return ""
}

// eventsOf reads the agent's events of one container (by id).
func eventsOf(t *testing.T, id string) []event.Event {
	t.Helper()
	return eventsIn(t, agent.events, id)
}

// eventsIn reads the events of one container (by id) from an agent's
// --events file.
func eventsIn(t *testing.T, path, id string) []event.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []event.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	needle := []byte(`"id":"` + id + `"`)
	for sc.Scan() {
		// Events only: the stream also holds verdicts, actions and gaps.
		if !bytes.Contains(sc.Bytes(), needle) || !bytes.HasPrefix(sc.Bytes(), []byte(`{"seq":`)) {
			continue
		}
		var ev event.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("bad event line %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

// verdictsOf reads the detector's verdicts about one container (by id)
// from the agent's event stream.
func verdictsOf(t *testing.T, id string) []detector.Verdict {
	t.Helper()
	b, err := os.ReadFile(agent.events)
	if err != nil {
		t.Fatal(err)
	}
	var out []detector.Verdict
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte(`{"verdict":`)) || !bytes.Contains(line, []byte(`"id":"`+id+`"`)) {
			continue
		}
		var l struct{ Verdict detector.Verdict }
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("bad verdict line %q: %v", line, err)
		}
		out = append(out, l.Verdict)
	}
	return out
}

// decisionsOf reads the seccomp notify decisions for one container.
func decisionsOf(t *testing.T, id string) []vigilagent.Decision {
	t.Helper()
	return decisionsIn(t, agent.decisions, id)
}

// decisionsIn reads the notify decisions for one container from an agent's
// --decisions file.
func decisionsIn(t *testing.T, path, id string) []vigilagent.Decision {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []vigilagent.Decision
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var d vigilagent.Decision
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatalf("bad decision line %q: %v", line, err)
		}
		if d.Container != nil && d.Container.ID == id {
			out = append(out, d)
		}
	}
	return out
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out after %v waiting for: %s\nagent log:\n%s", timeout, what, agent.logs())
}

// containerStatus finds a container in the agent's status (live or finished).
func containerStatus(t *testing.T, id string) (agentctl.ContainerStatus, bool) {
	t.Helper()
	st, err := status()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range append(st.Containers, st.Finished...) {
		if c.ID == id {
			return c, true
		}
	}
	return agentctl.ContainerStatus{}, false
}

// runtimeSpec is the OCI spec the runtime gave a container. Where the
// runtime leaves the cgroups path empty (CRI-O under _CRIO_ROOTLESS, see
// install/crio.sh), it is filled with the cgroup v2 path of the container's
// process while it runs.
func runtimeSpec(t *testing.T, id string) *specs.Spec {
	t.Helper()
	out, _ := crictl(t, "inspect", id)
	var v struct {
		Info struct {
			RuntimeSpec specs.Spec `json:"runtimeSpec"`
			Pid         int        `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("crictl inspect %s: %v", id, err)
	}
	if v.Info.RuntimeSpec.Linux == nil {
		t.Fatalf("crictl inspect %s: no linux spec", id)
	}
	if v.Info.RuntimeSpec.Linux.CgroupsPath == "" && v.Info.Pid > 0 {
		if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", v.Info.Pid)); err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if p, ok := strings.CutPrefix(line, "0::"); ok {
					v.Info.RuntimeSpec.Linux.CgroupsPath = p
				}
			}
		}
	}
	return &v.Info.RuntimeSpec
}
