package pipeline

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"vigil.dev/vigil/internal/privtest"
)

// TestSelfPID: in the initial pid namespace the detector skips this
// process's pid; in another (a container without hostPID, here a child in
// a new pid namespace) it skips none, since its pid there names an
// unrelated host process.
func TestSelfPID(t *testing.T) {
	if os.Getenv("VIGIL_SELFPID_CHILD") == "1" {
		fmt.Printf("selfpid=%d\n", selfPID())
		return
	}
	if ns, _ := os.Readlink("/proc/self/ns/pid"); ns == initPIDNamespace {
		if got := selfPID(); got != uint32(os.Getpid()) {
			t.Errorf("selfPID() = %d in the initial pid namespace, want %d", got, os.Getpid())
		}
	} else if got := selfPID(); got != 0 {
		t.Errorf("selfPID() = %d in pid namespace %s, want 0", got, ns)
	}
	privtest.Require(t)
	cmd := exec.Command("unshare", "--pid", "--fork", os.Args[0], "-test.run=^TestSelfPID$", "-test.v")
	cmd.Env = append(os.Environ(), "VIGIL_SELFPID_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unshare --pid: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "selfpid=0\n") {
		t.Errorf("in a new pid namespace: %s, want selfpid=0", out)
	}
}
