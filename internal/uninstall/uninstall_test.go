package uninstall

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/internal/privtest"
	"vigil.dev/vigil/seccomp"
)

// TestMain runs the test binary as a notify fd keeper when the agent's
// keeper variable is set, as 'vigil agent' does.
func TestMain(m *testing.M) {
	if path := os.Getenv(seccomp.KeeperEnv); path != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		if err := seccomp.RunKeeper(ctx, path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// node is what a stopped agent leaves: a pinned tracer, a pinned guard
// attached to a cgroup, a keeper and stale sockets.
type node struct {
	opts  Options
	links []link.ID
	pids  []int
}

func leftNode(t *testing.T) *node {
	t.Helper()
	privtest.Require(t)
	pin := fmt.Sprintf("/sys/fs/bpf/vigil-uninstall-test-%d", os.Getpid())
	dir := t.TempDir()
	n := &node{opts: Options{PinDir: pin, ControlSocket: filepath.Join(dir, "vigil.sock"),
		ListenerPath: filepath.Join(dir, "seccomp.sock"), KeeperSocket: filepath.Join(dir, "keeper.sock")}}
	t.Cleanup(func() {
		bpf.Unpin(pin)
		bpf.UnpinGuard(GuardPinDir(pin))
		for _, pid := range n.pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	m, err := bpf.Load(bpf.Config{PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	cg, err := bpf.NewCgroup(fmt.Sprintf("vigil-test-uninstall-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cg.Remove() })
	g, err := bpf.LoadGuard(GuardPinDir(pin))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Attach(cg.Path, cg.ID); err != nil {
		t.Fatal(err)
	}
	g.Close()
	for _, d := range []string{pin, GuardPinDir(pin)} {
		ids, _, err := pinnedLinks(d)
		if err != nil || len(ids) == 0 {
			t.Fatalf("pinned links in %s: %v %v", d, ids, err)
		}
		n.links = append(n.links, ids...)
	}

	// Stale sockets: bound, but nobody serves them any more.
	for _, p := range []string{n.opts.ControlSocket, n.opts.ListenerPath} {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close()
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	keeper := exec.Command(self)
	keeper.Env = append(os.Environ(), seccomp.KeeperEnv+"="+n.opts.KeeperSocket)
	if err := keeper.Start(); err != nil {
		t.Fatal(err)
	}
	n.pids = append(n.pids, keeper.Process.Pid)
	go keeper.Wait()
	for i := 0; !seccomp.KeeperRunning(n.opts.KeeperSocket); i++ {
		if i == 150 {
			t.Fatal("keeper not answering")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

func (n *node) checkGone(t *testing.T) {
	t.Helper()
	for _, d := range []string{n.opts.PinDir, GuardPinDir(n.opts.PinDir)} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin dir %s after uninstall: %v, want it gone", d, err)
		}
	}
	if h := held(n.links); h > 0 {
		t.Errorf("%d of %d links still attached after uninstall", h, len(n.links))
	}
	for _, p := range []string{n.opts.KeeperSocket, n.opts.KeeperSocket + ".pid"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s remains after uninstall", p)
		}
	}
	for _, pid := range n.pids {
		if syscall.Kill(pid, 0) == nil && !zombie(pid) {
			t.Errorf("keeper pid %d still runs after uninstall", pid)
		}
	}
}

func TestUninstall(t *testing.T) {
	n := leftNode(t)
	out, err := Run(n.opts)
	if err != nil {
		t.Fatal(err)
	}
	n.checkGone(t)
	for _, p := range []string{n.opts.ControlSocket, n.opts.ListenerPath} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("stale socket %s remains", p)
		}
	}
	text := strings.Join(out, "\n")
	for _, want := range []string{"removed the tracer pinned in", "4 programs detached", "removed the connect guard", "stopped the notify fd keeper",
		"removed the control socket", "removed the seccomp notify listener socket"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// A second run finds nothing.
	if out, err := Run(n.opts); err != nil || len(out) != 0 {
		t.Errorf("second run: %q %v, want nothing", out, err)
	}
}

func TestUninstallRefusesWhileAgentRuns(t *testing.T) {
	n := leftNode(t)
	os.Remove(n.opts.ControlSocket)
	ln, err := agentctl.Listen(n.opts.ControlSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go agentctl.Serve(context.Background(), ln, func(ctx context.Context, req agentctl.Request, p agentctl.Peer) agentctl.Response {
		return agentctl.Response{Status: &agentctl.Status{}}
	})
	if _, err := Run(n.opts); !errors.Is(err, ErrAgentRunning) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("uninstall with an agent running: %v, want a refusal naming --force", err)
	}
	if _, err := os.Stat(n.opts.PinDir); err != nil {
		t.Fatalf("refused uninstall removed the pins: %v", err)
	}
	n.opts.Force = true
	out, err := Run(n.opts)
	if err != nil {
		t.Fatal(err)
	}
	n.checkGone(t)
	if _, err := os.Lstat(n.opts.ControlSocket); err != nil {
		t.Errorf("the running agent's control socket was removed: %v", err)
	}
	if !strings.Contains(strings.Join(out, "\n"), "kept the control socket") {
		t.Errorf("output does not say the control socket was kept:\n%s", strings.Join(out, "\n"))
	}
}
