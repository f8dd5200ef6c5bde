// Package uninstall removes what vigil leaves on a node by design after its
// agent stops: the pinned tracer (its programs stay attached to every
// syscall of the host while pinned), the pinned connect guard (attached to
// the cgroups it guards), the seccomp notify fd keeper, and the agent's
// sockets. It never touches logs, audit logs, state or configuration.
// Needs root and bpffs.
package uninstall

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf/link"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/seccomp"
)

// Options say where the agent keeps what Run removes.
type Options struct {
	// PinDir is the tracer's pin dir (the agent's --pin-dir); the connect
	// guard is pinned beside it, in PinDir + "-guard". "" removes neither.
	PinDir string
	// ControlSocket is the agent's control socket: an agent answering
	// there makes Run refuse, unless Force.
	ControlSocket string
	// ListenerPath is the seccomp notify listener socket.
	ListenerPath string
	// KeeperSocket is the notify fd keeper's socket; its pid is in
	// KeeperSocket + ".pid".
	KeeperSocket string
	// Force removes the tracer, guard and keeper while an agent runs.
	Force bool
}

// ErrAgentRunning is returned when an agent answers on the control socket
// and Options.Force is not set.
var ErrAgentRunning = errors.New("an agent is running")

// GuardPinDir is where the agent pins the connect guard for a tracer
// pinned in pinDir.
func GuardPinDir(pinDir string) string {
	return strings.TrimSuffix(pinDir, "/") + "-guard"
}

// Run removes what o names and returns one line per thing removed (or
// kept, and why). It goes on after an error and returns them all.
func Run(o Options) ([]string, error) {
	running := agentAnswers(o.ControlSocket)
	if running && !o.Force {
		return nil, fmt.Errorf("%w: the agent answers at %s; stop it first (it keeps its tracer pinned for the next agent on purpose), or pass --force to remove the tracer, guard and keeper from under it",
			ErrAgentRunning, o.ControlSocket)
	}
	var out []string
	var errs []error
	say := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	if o.PinDir != "" {
		if line, err := removeTracer(o.PinDir); err != nil {
			errs = append(errs, err)
		} else if line != "" {
			say("%s", line)
		}
		if line, err := removeGuard(GuardPinDir(o.PinDir)); err != nil {
			errs = append(errs, err)
		} else if line != "" {
			say("%s", line)
		}
	}
	if o.KeeperSocket != "" {
		if line, err := stopKeeper(o.KeeperSocket); err != nil {
			errs = append(errs, err)
		} else if line != "" {
			say("%s", line)
		}
	}
	for _, s := range []struct{ name, path string }{{"control socket", o.ControlSocket}, {"seccomp notify listener socket", o.ListenerPath}} {
		if s.path == "" {
			continue
		}
		st, err := os.Lstat(s.path)
		if err != nil {
			continue
		}
		if st.Mode()&os.ModeSocket == 0 {
			say("kept the %s %s: not a socket", s.name, s.path)
			continue
		}
		if running {
			say("kept the %s %s: the running agent serves it", s.name, s.path)
			continue
		}
		if err := os.Remove(s.path); err != nil {
			errs = append(errs, fmt.Errorf("remove %s %s: %w", s.name, s.path, err))
			continue
		}
		say("removed the %s %s", s.name, s.path)
	}
	return out, errors.Join(errs...)
}

// agentAnswers reports whether an agent answers at the control socket (an
// answer that is an error, such as a refused caller, counts).
func agentAnswers(socket string) bool {
	if socket == "" {
		return false
	}
	resp, err := agentctl.Call(socket, agentctl.Request{Op: agentctl.OpStatus})
	return err == nil || resp != nil
}

// pinnedLinks returns the ids of the links pinned in dir (entries link_*).
func pinnedLinks(dir string) (ids []link.ID, maps int, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "link_") {
			maps++
			continue
		}
		l, err := link.LoadPinnedLink(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			continue
		}
		if info, err := l.Info(); err == nil {
			ids = append(ids, info.ID)
		}
		l.Close()
	}
	return ids, maps, nil
}

// held waits up to 2 s for the links to go (the kernel frees them after an
// RCU grace period) and returns how many a process still holds.
func held(ids []link.ID) int {
	n := 0
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n = 0
		for _, id := range ids {
			if l, err := link.NewFromID(id); err == nil {
				l.Close()
				n++
			}
		}
		if n == 0 || time.Now().After(deadline) {
			return n
		}
	}
}

func removeTracer(dir string) (string, error) {
	ids, maps, err := pinnedLinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("tracer pinned in %s: %w", dir, err)
	}
	if err := bpf.Unpin(dir); err != nil {
		return "", fmt.Errorf("unpin the tracer in %s: %w", dir, err)
	}
	line := fmt.Sprintf("removed the tracer pinned in %s: %d programs detached, %d maps (its counters) removed", dir, len(ids), maps)
	if n := held(ids); n > 0 {
		line += fmt.Sprintf("; %d programs stay attached while the process holding them (a running agent?) lives", n)
	}
	return line, nil
}

func removeGuard(dir string) (string, error) {
	ids, maps, err := pinnedLinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("connect guard pinned in %s: %w", dir, err)
	}
	if err := bpf.UnpinGuard(dir); err != nil {
		return "", fmt.Errorf("unpin the connect guard in %s: %w", dir, err)
	}
	line := fmt.Sprintf("removed the connect guard pinned in %s: %d cgroup attachments detached, %d maps (its policies) removed", dir, len(ids), maps)
	if n := held(ids); n > 0 {
		line += fmt.Sprintf("; %d attachments stay while the process holding them lives", n)
	}
	return line, nil
}

// stopKeeper stops the notify fd keeper at socket: the process named in
// its pid file, if it is the keeper of that socket (its environment says
// so), then removes the socket and the pid file. Without its socket a
// keeper stops by itself within seconds.
func stopKeeper(socket string) (string, error) {
	pidFile := socket + ".pid"
	_, sockErr := os.Lstat(socket)
	data, pidErr := os.ReadFile(pidFile)
	if sockErr != nil && pidErr != nil {
		return "", nil
	}
	line := ""
	if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); pidErr == nil && err == nil && pid > 0 && isKeeper(pid, socket) {
		if err := stop(pid); err != nil {
			return "", fmt.Errorf("stop the notify fd keeper (pid %d): %w", pid, err)
		}
		line = fmt.Sprintf("stopped the notify fd keeper (pid %d) at %s", pid, socket)
	}
	for _, p := range []string{socket, pidFile} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return line, fmt.Errorf("remove %s: %w", p, err)
		}
	}
	if line == "" {
		line = fmt.Sprintf("removed the notify fd keeper's socket %s (no keeper ran)", socket)
		if seccomp.KeeperRunning(socket) {
			line = fmt.Sprintf("removed the notify fd keeper's socket %s (the keeper stops by itself)", socket)
		}
	}
	return line, nil
}

// isKeeper reports whether pid is a notify fd keeper serving socket.
func isKeeper(pid int, socket string) bool {
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, kv := range strings.Split(string(env), "\x00") {
		if kv == seccomp.KeeperEnv+"="+socket {
			return true
		}
	}
	return false
}

// stop sends pid SIGTERM and, after 5 s, SIGKILL.
func stop(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil || zombie(pid) {
			return nil
		}
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// zombie reports whether pid exited and waits for its parent to reap it.
func zombie(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
