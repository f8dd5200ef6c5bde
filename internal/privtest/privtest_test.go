package privtest

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// helperEnv makes TestRequireHelper call Require; it is set only in the
// children TestRequire starts.
const helperEnv = "VIGIL_PRIVTEST_HELPER"

// TestRequireHelper is the privileged test TestRequire runs in a child, as
// another user.
func TestRequireHelper(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("the child of TestRequire; runs only when re-executed by it")
	}
	Require(t)
	t.Log("past Require")
}

// TestRequire runs TestRequireHelper in a child as nobody and as root,
// with and without RequireEnv: as nobody it skips without the variable and
// fails with it; as root it runs either way.
func TestRequire(t *testing.T) {
	Require(t) // to start children as another user
	bin := execCopy(t)
	const nobody = 65534
	tests := map[string]struct {
		uid     uint32
		env     string // RequireEnv's value, "" for unset
		wantErr bool
		want    []string // in the output
	}{
		"nobody, unset": {uid: nobody, want: []string{"--- SKIP: TestRequireHelper", "needs root", "running as uid 65534"}},
		"nobody, 0":     {uid: nobody, env: "0", want: []string{"--- SKIP: TestRequireHelper", "running as uid 65534"}},
		"nobody, 1": {uid: nobody, env: "1", wantErr: true,
			want: []string{"--- FAIL: TestRequireHelper", "needs root", "running as uid 65534", RequireEnv + "=1 forbids skipping it"}},
		"nobody, true": {uid: nobody, env: "true", wantErr: true, want: []string{"--- FAIL: TestRequireHelper", "running as uid 65534"}},
		"nobody, bad":  {uid: nobody, env: "yes", wantErr: true, want: []string{"--- FAIL: TestRequireHelper", RequireEnv + `="yes": want 1`}},
		"root, 1":      {uid: 0, env: "1", want: []string{"--- PASS: TestRequireHelper", "past Require"}},
		"root, unset":  {uid: 0, want: []string{"--- PASS: TestRequireHelper", "past Require"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(bin, "-test.run=^TestRequireHelper$", "-test.v", "-test.count=1")
			cmd.Dir = filepath.Dir(bin)
			cmd.Env = append(childEnv(), helperEnv+"=1")
			if tt.env != "" {
				cmd.Env = append(cmd.Env, RequireEnv+"="+tt.env)
			}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tt.uid, Gid: tt.uid}}
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatalf("start %s as uid %d: %v", bin, tt.uid, err)
			}
			if (err != nil) != tt.wantErr {
				t.Errorf("child as uid %d with %s=%q: exit %v, want failure %v", tt.uid, RequireEnv, tt.env, err, tt.wantErr)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("child output lacks %q", w)
				}
			}
			if t.Failed() {
				t.Logf("child output:\n%s", out)
			}
		})
	}
}

// execCopy copies the test binary where another user can run it: go test
// builds it in a directory only its owner can enter.
func execCopy(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vigil-privtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatalf("open the test binary: %v", err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "privtest.test")
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatalf("copy the test binary: %v", err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// childEnv is the environment without RequireEnv and helperEnv, which each
// case sets itself.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, RequireEnv+"=") && !strings.HasPrefix(kv, helperEnv+"=") {
			env = append(env, kv)
		}
	}
	return env
}
