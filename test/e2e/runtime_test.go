package e2e

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The suite runs once per container runtime: TestMain re-executes the test
// binary with VIGIL_E2E_RUNTIME set to each of VIGIL_E2E_RUNTIMES (default
// "containerd crio"), and each run brings its runtime up (install/node.sh
// up --runtime NAME) and starts its own agent on that runtime's NRI socket.
// Set VIGIL_E2E_RUNTIME to run against one runtime only.
const (
	runtimeEnv  = "VIGIL_E2E_RUNTIME"
	runtimesEnv = "VIGIL_E2E_RUNTIMES"
)

// nodeRuntime is one runtime of the test node.
type nodeRuntime struct {
	name      string // containerd or crio
	endpoint  string // its CRI socket (crictl --runtime-endpoint)
	nriSocket string
	pluginDir string // where it finds pre-registered NRI plugins
}

// runtimes are the test node's runtimes, with the paths install/node.sh and
// install/crio.sh give them.
var runtimes = map[string]nodeRuntime{
	"containerd": {name: "containerd", endpoint: "/run/containerd/containerd.sock", nriSocket: "/var/run/nri/nri.sock", pluginDir: "/opt/nri/plugins"},
	"crio": {name: "crio", endpoint: "/run/vigil-node/crio/crio.sock", nriSocket: "/var/run/nri/crio-nri.sock",
		pluginDir: "/var/lib/vigil-node/crio/nri-plugins"},
}

// testRuntime is the runtime this run of the suite is against.
var testRuntime = runtimes[cmp.Or(os.Getenv(runtimeEnv), "containerd")]

// eachRuntime runs the suite once per runtime in a child process when no
// runtime is chosen, and returns the combined exit code; ran is false when
// this process is to run the tests itself.
func eachRuntime() (code int, ran bool) {
	if os.Getenv(runtimeEnv) != "" || os.Geteuid() != 0 {
		return 0, false
	}
	// One binary for every runtime's run.
	dir, err := os.MkdirTemp("", "vigil-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1, true
	}
	defer os.RemoveAll(dir)
	if repo, err = filepath.Abs("../.."); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: find repository: %v\n", err)
		return 1, true
	}
	bin, err := buildVigil(filepath.Join(dir, "vigil"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1, true
	}
	for _, name := range strings.Fields(cmp.Or(os.Getenv(runtimesEnv), "containerd crio")) {
		if _, ok := runtimes[name]; !ok {
			fmt.Fprintf(os.Stderr, "e2e: %s: runtime %q: allowed values are containerd, crio\n", runtimesEnv, name)
			return 2, true
		}
		cmd := exec.Command(os.Args[0], os.Args[1:]...)
		cmd.Env = append(os.Environ(), runtimeEnv+"="+name, vigilBinEnv+"="+bin)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		start := time.Now()
		err := cmd.Run()
		result := "ok"
		if err != nil {
			result, code = "FAIL: "+err.Error(), 1
		}
		fmt.Printf("e2e: runtime %s: %s (%v)\n", name, result, time.Since(start).Round(time.Second))
	}
	return code, true
}

// vigilBinEnv names the agent binary the runs per runtime share.
const vigilBinEnv = "VIGIL_E2E_BIN"

// buildVigil builds the agent binary at dst, or returns the one the parent
// process built (VIGIL_E2E_BIN).
func buildVigil(dst string) (string, error) {
	if bin := os.Getenv(vigilBinEnv); bin != "" {
		return bin, nil
	}
	build := exec.Command("go", "build", "-o", dst, "./cmd/vigil")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build vigil: %v\n%s", err, out)
	}
	return dst, nil
}

// crictlCmd is crictl against the runtime under test.
func crictlCmd(args ...string) *exec.Cmd {
	ep := "unix://" + testRuntime.endpoint
	return exec.Command("crictl", append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "30s"}, args...)...)
}

// nodeUpArgs are install/node.sh's arguments that bring the runtime up.
func nodeUpArgs() []string {
	return []string{filepath.Join(repo, "install/node.sh"), "up", "--runtime", testRuntime.name}
}

// restartRuntime restarts the runtime under test with env set for the node
// scripts (containers keep running) and waits for the agent to reconnect.
func restartRuntime(t *testing.T, env ...string) {
	t.Helper()
	st, err := status()
	if err != nil {
		t.Fatal(err)
	}
	if err := restartRuntimeOnly(env...); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the agent reconnected", 20*time.Second, func() bool {
		s, err := status()
		return err == nil && s.Connected && s.Connections > st.Connections
	})
}

// restartRuntimeOnly restarts the runtime under test.
func restartRuntimeOnly(env ...string) error {
	cmd := exec.Command("bash", filepath.Join(repo, "install/node.sh"), "restart-"+testRuntime.name)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("restart %s: %v\n%s", testRuntime.name, err, out)
	}
	return nil
}

// preRegisteredEntry is where TestPreRegisteredPlugin installs vigil: the
// runtime's NRI plugin directory.
func preRegisteredEntry() string { return filepath.Join(testRuntime.pluginDir, "10-vigil") }

// skipOn skips the test on the named runtime, saying why.
func skipOn(t *testing.T, runtime, why string) {
	t.Helper()
	if testRuntime.name == runtime {
		t.Skipf("not on %s: %s", runtime, why)
	}
}

// needSeccompAdjust skips a test of vigil's seccomp profiles when the
// runtime cannot take seccomp policies through NRI (CRI-O 1.34: its NRI
// v0.9 drops them), as the agent found at Configure.
func needSeccompAdjust(t *testing.T) {
	t.Helper()
	st, err := status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Runtime == nil {
		t.Fatal("the agent does not know the runtime (no NRI Configure?)")
	}
	if !st.Runtime.Seccomp {
		t.Skipf("not on %s %s: %s (TestSeccompWithoutRuntimeSupport covers what vigil does there)", st.Runtime.Name, st.Runtime.Version, st.Runtime.SeccompWhy)
	}
}

// seccompTests need the runtime to take vigil's seccomp policy; need skips
// them where it cannot (they live in files of their own).
var seccompTests = map[string]bool{
	"TestDenySyscallThroughNotify":    true,
	"TestAgentRestartKeepsActions":    true,
	"TestSeccompFloorKeepsPodProfile": true,
}

// defaultSeccomp is what vigil status shows as a monitored container's
// seccomp profile when its pod names none: notify, or "(runtime's)" where
// the runtime cannot take vigil's policy and the node falls back.
func defaultSeccomp(t *testing.T) string {
	t.Helper()
	if st, err := status(); err == nil && st.Runtime != nil && !st.Runtime.Seccomp {
		return "(runtime's)"
	}
	return "notify"
}

// containerLinux is the linux part of a test container's config. CRI-O
// reads a container config without a seccomp profile as RuntimeDefault
// (containerd as unconfined): on CRI-O the tests ask for Unconfined, as the
// kubelet does for a pod that names no profile, so that a container runs
// with the same seccomp policy on both runtimes unless vigil gives it one.
func (r nodeRuntime) containerLinux() map[string]any {
	if r.name != "crio" {
		return map[string]any{}
	}
	return map[string]any{"security_context": map[string]any{"seccomp": map[string]any{"profile_type": 1}}}
}
