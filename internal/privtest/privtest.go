// Package privtest is the one gate of vigil's privileged tests: they run for
// real as root (CI runs as root) and skip, saying why, anywhere else. With
// VIGIL_REQUIRE_PRIVILEGED=1 in the environment (CI sets it) a privileged
// test that cannot run fails instead, so none can pass CI by skipping.
package privtest

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/cilium/ebpf/rlimit"
)

// RequireEnv names the variable that turns the skip of a privileged test
// into a failure.
const RequireEnv = "VIGIL_REQUIRE_PRIVILEGED"

// Require skips t unless the test runs as root, and removes the memlock
// limit that older kernels apply to BPF maps. When RequireEnv is set to a
// true value it fails t where it would skip.
func Require(t testing.TB) {
	t.Helper()
	required, err := required()
	if err != nil {
		t.Fatal(err)
	}
	if uid := os.Geteuid(); uid != 0 {
		reason := fmt.Sprintf("privileged test: needs root for eBPF, cgroups and seccomp (run 'sudo make test'); running as uid %d", uid)
		if required {
			t.Fatalf("%s; %s=1 forbids skipping it", reason, RequireEnv)
		}
		t.Skip(reason)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("remove memlock: %v", err)
	}
}

// required reports whether RequireEnv asks privileged tests to run.
func required() (bool, error) {
	v, ok := os.LookupEnv(RequireEnv)
	if !ok || v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want 1 (privileged tests must run) or 0", RequireEnv, v)
	}
	return b, nil
}
