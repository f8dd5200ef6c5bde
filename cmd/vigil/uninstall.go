package main

import (
	"flag"
	"fmt"
	"os"

	"vigil.dev/vigil/agent"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/internal/uninstall"
)

func init() {
	register("uninstall", "remove what a stopped agent leaves attached: pinned tracer and guard, notify keeper, sockets", runUninstall)
}

const uninstallUsage = `Usage: vigil uninstall [OPTIONS]

Removes what 'vigil agent' leaves on the node on purpose when it stops, so
that the next agent carries on without a gap:

  - the tracer pinned in --pin-dir: its programs stay attached to every
    syscall of the host (about 100 ns each) while they are pinned; uninstall
    detaches them and removes their maps (the per-container counters);
  - the connect guard pinned in <pin-dir>-guard: detached from every
    cgroup, its deny rules removed;
  - the seccomp notify fd keeper (--notify-keeper): stopped. Containers that
    still run under a vigil seccomp notify profile then get ENOSYS for the
    notified syscalls: stop them first;
  - the control and listener sockets, when no agent answers.

Logs, the audit log, the state file and the configuration stay. It refuses
while an agent answers on --control-socket: stop the agent first (systemctl
stop vigil, or install/node.sh down), or pass --force to remove the tracer,
guard and keeper from under it (its programs then detach when it exits).
Use the same --pin-dir and socket paths as the agent. Needs root.

Example:
  sudo systemctl stop vigil && sudo vigil uninstall
  sudo vigil uninstall --pin-dir /sys/fs/bpf/vigil-e2e --force

Options:
`

func runUninstall(args []string) int {
	fs := flag.NewFlagSet("uninstall", flag.ContinueOnError)
	var o uninstall.Options
	fs.StringVar(&o.PinDir, "pin-dir", bpf.DefaultPinDir, "the agent's pin `DIR` on bpffs (the guard is in DIR-guard; '' removes neither)")
	fs.StringVar(&o.ControlSocket, "control-socket", agent.DefaultControlSocket, "the agent's control `SOCKET`")
	fs.StringVar(&o.ListenerPath, "listener", agent.DefaultListenerPath, "the agent's seccomp notify listener `SOCKET`")
	fs.StringVar(&o.KeeperSocket, "notify-keeper", "/run/vigil/notify-keeper.sock", "the notify fd keeper's `SOCKET` (its pid in SOCKET.pid; '' leaves it)")
	fs.BoolVar(&o.Force, "force", false, "remove the tracer, guard and keeper even while an agent answers")
	fs.Usage = usageFunc(fs, uninstallUsage)
	if status, done := parseFlags(fs, args); done {
		return status
	}
	if fs.NArg() > 0 {
		return fail("uninstall: unexpected argument %q (see 'vigil uninstall --help')", fs.Arg(0))
	}
	if os.Geteuid() != 0 {
		return fail("uninstall: needs root (bpffs pins, the keeper's process): run it with sudo")
	}
	done, err := uninstall.Run(o)
	for _, line := range done {
		fmt.Println(line)
	}
	if err != nil {
		return fail("uninstall: %v", err)
	}
	if len(done) == 0 {
		fmt.Println("nothing of vigil's found: no pinned tracer or guard, no keeper, no sockets")
	}
	return 0
}
