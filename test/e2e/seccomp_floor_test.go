package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// localhostSeccompDir is where the kubelet keeps the Localhost seccomp
// profiles pods refer to (containerd reads the absolute path it is given).
const localhostSeccompDir = "/var/lib/kubelet/seccomp"

// writeLocalhostProfile writes a pod's own seccomp profile: moby's default
// list (what busybox and runc need) without the mkdir and rmdir family,
// mkdir and mkdirat denied with EACCES, and ENOSYS for everything it does
// not name (rmdir, unlinkat among them). It returns the absolute path.
func writeLocalhostProfile(t *testing.T) string {
	t.Helper()
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN", "CAP_SYS_CHROOT", "CAP_SETUID", "CAP_SETGID"}}}}
	s, err := mobyseccomp.GetDefaultProfile(spec)
	if err != nil {
		t.Fatal(err)
	}
	gone := []string{"mkdir", "mkdirat", "rmdir", "unlinkat"}
	var rules []specs.LinuxSyscall
	for _, r := range s.Syscalls {
		r.Names = slices.DeleteFunc(r.Names, func(n string) bool { return slices.Contains(gone, n) })
		if len(r.Names) > 0 {
			rules = append(rules, r)
		}
	}
	eacces, enosys := uint(13), uint(38)
	s.Syscalls = append(rules, specs.LinuxSyscall{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: &eacces})
	s.DefaultErrnoRet = &enosys
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(localhostSeccompDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(localhostSeccompDir, fmt.Sprintf("vigil-e2e-floor-%d.json", os.Getpid()))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	return path
}

// createLocalhost creates a container whose pod security context names a
// Localhost seccomp profile (crictl: profile_type 2 with localhost_ref).
func (p *pod) createLocalhost(t *testing.T, name string, cmd []string, ann map[string]string, profile string) (string, error) {
	t.Helper()
	ctrSeq++
	cfg := map[string]any{
		"metadata":    map[string]any{"name": name},
		"image":       map[string]any{"image": busybox},
		"command":     cmd,
		"log_path":    fmt.Sprintf("%s-%d.log", name, ctrSeq),
		"annotations": ann,
		"linux": map[string]any{"security_context": map[string]any{
			"seccomp": map[string]any{"profile_type": 2, "localhost_ref": profile}}},
	}
	path := writeJSON(t, fmt.Sprintf("ctr-%s-%d.json", name, ctrSeq), cfg)
	return crictl(nil, "create", p.id, path, p.config)
}

// TestSeccompFloorKeepsPodProfile: a forced pod that brings its own
// Localhost profile stays within it once vigil monitors it: mkdir, which
// the pod denies, still fails with the pod's EACCES (vigil's notify profile
// alone allows it), rmdir, which the pod does not allow, still fails with
// the pod's ENOSYS, and syscalls the pod allows still go to vigil's
// listener (chroot, answered allow).
func TestSeccompFloorKeepsPodProfile(t *testing.T) {
	need(t)
	profile := writeLocalhostProfile(t)
	p := runPod(t, "floor", "vigil-forced", nil)
	script := "mkdir /tmp/made && echo mkdir-ok; rmdir /tmp || echo rmdir-failed; chroot / true && echo chroot-ok; echo done"
	id, err := p.createLocalhost(t, "app", []string{"sh", "-c", script}, nil, profile)
	if err != nil {
		t.Fatal(err)
	}
	crictl(t, "start", id)
	logs := waitExited(t, id)
	if strings.Contains(logs, "mkdir-ok") || !strings.Contains(logs, "Permission denied") {
		t.Errorf("logs %q: want mkdir denied with the pod's EACCES", logs)
	}
	if !strings.Contains(logs, "rmdir-failed") || !strings.Contains(logs, "Function not implemented") {
		t.Errorf("logs %q: want rmdir (outside the pod's allow-list) to fail with the pod's ENOSYS", logs)
	}
	if !strings.Contains(logs, "chroot-ok") || !strings.Contains(logs, "done") {
		t.Errorf("logs %q: want chroot allowed and the script to finish", logs)
	}
	s := runtimeSpec(t, id).Linux.Seccomp
	if s == nil || s.ListenerPath != filepath.Join(workDir, "seccomp.sock") {
		t.Fatalf("container not under vigil's notify profile: %+v", s)
	}
	for _, r := range s.Syscalls {
		if (r.Action == specs.ActAllow || r.Action == specs.ActNotify) && slices.ContainsFunc(r.Names, func(n string) bool {
			return n == "mkdir" || n == "mkdirat" || n == "rmdir" || n == "unlinkat"
		}) {
			t.Errorf("rule %s %v lets through what the pod's profile denies", r.Action, r.Names)
		}
	}
	eventually(t, "the notify decision for chroot", 5*time.Second, func() bool { return hasDecision(decisionsOf(t, id), "chroot", "allow", "") })
	for _, d := range decisionsOf(t, id) {
		if d.Action == "allow" && (strings.HasPrefix(d.Syscall, "mkdir") || d.Syscall == "rmdir") {
			t.Errorf("vigil allowed what the pod denies: %+v", d)
		}
	}
}

// TestSeccompFloorRefusesLowerProfile: a forced pod cannot ask for a
// profile below the node's floor (notify by default), in any key form.
func TestSeccompFloorRefusesLowerProfile(t *testing.T) {
	need(t)
	p := runPod(t, "floorlow", "vigil-forced", nil)
	for _, ann := range []map[string]string{
		{"vigil.dev/seccomp": "runtime-default"},
		{"vigil.dev/seccomp/pod": "strict"},
		{"vigil.dev/seccomp": "notify", "vigil.dev/seccomp/container.app": "runtime-default"},
	} {
		_, err := p.create(t, "app", busybox, []string{"true"}, ann)
		if err == nil {
			t.Errorf("forced container with %v was created", ann)
			continue
		}
		if msg := strings.ReplaceAll(err.Error(), `\"`, `"`); !strings.Contains(msg, "seccompFloor") || !strings.Contains(msg, `"notify"`) {
			t.Errorf("%v: error lacks the floor: %v", ann, err)
		}
	}
}
