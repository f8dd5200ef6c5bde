package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"

	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/internal/privtest"
)

// TestUninstallCommand: 'vigil uninstall --pin-dir DIR' after an agent
// stopped leaves no pin and no program of the tracer attached.
func TestUninstallCommand(t *testing.T) {
	privtest.Require(t)
	pin := fmt.Sprintf("/sys/fs/bpf/vigil-uninstall-cmd-test-%d", os.Getpid())
	t.Cleanup(func() { bpf.Unpin(pin) })
	m, err := bpf.Load(bpf.Config{PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	m.Close() // the agent stops: the pinned tracer stays attached
	entries, err := os.ReadDir(pin)
	if err != nil {
		t.Fatal(err)
	}
	var links []link.ID
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "link_") {
			continue
		}
		l, err := link.LoadPinnedLink(filepath.Join(pin, e.Name()), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		links = append(links, info.ID)
	}
	if len(links) == 0 {
		t.Fatal("no pinned links")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "uninstall", "--pin-dir", pin, "--control-socket", filepath.Join(dir, "vigil.sock"),
		"--listener", filepath.Join(dir, "seccomp.sock"), "--notify-keeper", filepath.Join(dir, "keeper.sock"))
	cmd.Env = append(os.Environ(), "VIGIL_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("vigil uninstall: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "removed the tracer pinned in "+pin) {
		t.Errorf("output does not say what it removed:\n%s", out)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir after uninstall: %v, want it gone", err)
	}
	for _, id := range links {
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			l, err := link.NewFromID(id)
			if err != nil {
				break // released: the program is detached
			}
			l.Close()
			if time.Now().After(deadline) {
				t.Errorf("link %d still attached after uninstall", id)
				break
			}
		}
	}
	// Again: nothing left, and it says so.
	again := exec.Command(os.Args[0], "uninstall", "--pin-dir", pin, "--control-socket", filepath.Join(dir, "vigil.sock"),
		"--listener", "", "--notify-keeper", "")
	again.Env = cmd.Env
	if out, err := again.CombinedOutput(); err != nil || !strings.Contains(string(out), "nothing of vigil's found") {
		t.Errorf("second uninstall: %v\n%s", err, out)
	}
}
