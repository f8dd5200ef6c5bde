// Package privtest is the one gate of vigil's privileged tests: they run for
// real as root (CI runs as root) and skip, saying why, anywhere else.
package privtest

import (
	"os"
	"testing"

	"github.com/cilium/ebpf/rlimit"
)

// Require skips t unless the test runs as root, and removes the memlock
// limit that older kernels apply to BPF maps.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root for eBPF, cgroups and seccomp (run 'sudo make test'); skipped as uid", os.Geteuid())
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("remove memlock: %v", err)
	}
}
