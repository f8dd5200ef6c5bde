package control

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestV1PathOfMember: the v1 cgroup of a v2 cgroup is its first process's,
// as /proc/PID/cgroup names it for the controller (runc without a cgroups
// path puts them in different places).
func TestV1PathOfMember(t *testing.T) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	want, found := "", false
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && slices.Contains(strings.Split(f[1], ","), "cpu") {
			want, found = cleanRel(f[2]), true
		}
	}
	root := t.TempDir()
	dir := filepath.Join(root, "ctr")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())+"\n1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Cgroups{V2Root: root}
	got, ok := c.v1PathOfMember("cpu", "ctr")
	if ok != (found && want != "") || got != want {
		t.Errorf("v1PathOfMember(cpu) = %q, %v; want %q (from /proc/self/cgroup)", got, ok, want)
	}
	if _, ok := c.v1PathOfMember("nosuchcontroller", "ctr"); ok {
		t.Error("a controller no process is in was found")
	}
	os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644)
	if _, ok := c.v1PathOfMember("cpu", "ctr"); ok {
		t.Error("an empty cgroup has no member to follow")
	}
}
