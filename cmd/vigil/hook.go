package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/syslog"
	"os"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/hook"
)

func init() {
	register("hook", "OCI hook mode for runtimes without NRI: create-runtime | poststop", runHook)
}

const hookUsage = `Usage: vigil hook create-runtime|poststop [OPTIONS] < OCI-STATE

The OCI hook mode, for runtimes without NRI (podman, plain runc). The
runtime runs it with the container's state on standard input.
create-runtime registers the container with the running 'vigil agent', which
tracks its cgroup before the workload's first instruction (annotations as in
NRI mode; a seccomp profile cannot be injected this way); it fails the
container when the agent rejects it, or when the agent is unreachable and
the container asked to be monitored (--fail-open: it starts, unmonitored,
with a warning on standard error and in the system log). poststop
unregisters it.

Example (in the bundle's config.json):
  "hooks": {
    "createRuntime": [{"path": "/usr/local/bin/vigil", "args": ["vigil", "hook", "create-runtime"]}],
    "poststop":      [{"path": "/usr/local/bin/vigil", "args": ["vigil", "hook", "poststop"]}]
  }

Options:
`

func runHook(args []string) int {
	fs := flag.NewFlagSet("hook", flag.ContinueOnError)
	sock := fs.String("socket", agentctl.DefaultSocket, "the agent's control `SOCKET`")
	failOpen := fs.Bool("fail-open", false, "create-runtime: start a container that asked to be monitored, with a warning, when the agent cannot be reached (default: the container fails)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), hookUsage)
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fs.Usage()
		return 2
	}
	stage, rest := args[0], args[1:]
	if stage == "-h" || stage == "--help" || stage == "help" {
		fs.Usage()
		return 0
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var err error
	switch stage {
	case "create-runtime":
		err = hook.CreateRuntime(os.Stdin, hook.Options{Socket: *sock, FailOpen: *failOpen}, hookWarnings())
	case "poststop":
		err = hook.Poststop(os.Stdin, *sock, os.Stderr)
	default:
		return fail("hook: unknown stage %q: allowed values are create-runtime, poststop", stage)
	}
	if err != nil {
		return fail("hook %s: %v", stage, err)
	}
	return 0
}

// hookWarnings is where create-runtime's warnings go: standard error and,
// where there is one, the system log, since runc and crun drop the output of
// a hook that succeeds.
func hookWarnings() io.Writer {
	w, err := syslog.New(syslog.LOG_WARNING|syslog.LOG_DAEMON, "vigil-hook")
	if err != nil {
		return os.Stderr
	}
	return io.MultiWriter(os.Stderr, w)
}
