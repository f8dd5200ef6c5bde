package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestAgentSamplingFlags: a bad sampling flag stops vigil agent before it
// loads anything, with a message naming the flag, the value and what is
// allowed; --help describes --sample-cpu.
func TestAgentSamplingFlags(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, int) {
		cmd := exec.Command(self, append([]string{"agent"}, args...)...)
		cmd.Env = append(os.Environ(), "VIGIL_TEST_MAIN=1")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &ee):
			return string(out), ee.ExitCode()
		}
		t.Fatalf("vigil agent %q: %v", args, err)
		return "", 0
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sample-cpu", "0"}, "--sample-cpu 0: must be a share of one core above 0 and at most 1"},
		{[]string{"--sample-cpu", "-0.1"}, "--sample-cpu -0.1: must be"},
		{[]string{"--sample-cpu", "1.5"}, "--sample-cpu 1.5: must be"},
		{[]string{"--sample-cpu", "NaN"}, "--sample-cpu NaN: must be"},
		{[]string{"--sample-cpu", "half"}, `invalid value "half" for flag -sample-cpu`},
		{[]string{"--sample-budget", "0"}, "--sample-budget 0: must be a positive number of cgroup files read a second"},
		{[]string{"--sample-idle-every", "-1s"}, "--sample-idle-every -1s: must be a positive duration"},
	} {
		out, status := run(append(tc.args, "--config", "/nonexistent/vigil-test.yaml", "--control-socket", "/nonexistent/vigil.sock")...)
		if status == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("vigil agent %s: status %d, output %q; want a failure saying %q", strings.Join(tc.args, " "), status, out, tc.want)
		}
		if strings.Contains(out, "tracer loaded") {
			t.Errorf("vigil agent %s: loaded the tracer before refusing the flag", strings.Join(tc.args, " "))
		}
	}
	out, _ := run("--help")
	if !strings.Contains(out, "-sample-cpu CORES") || !strings.Contains(out, "(default 0.2)") {
		t.Errorf("vigil agent --help does not describe --sample-cpu CORES, default 0.2:\n%s", out)
	}
}
