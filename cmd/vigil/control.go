package main

import (
	"flag"
	"fmt"
	"os"

	"vigil.dev/vigil/agentctl"
)

func init() {
	register("release", "undo every action the response ladder has in force on a container", func(args []string) int {
		return runControl("release", agentctl.OpRelease, releaseUsage, args)
	})
	register("unfreeze", "thaw a container the response ladder froze", func(args []string) int {
		return runControl("unfreeze", agentctl.OpUnfreeze, unfreezeUsage, args)
	})
	register("reload", "reload rules, response policies, the model and the node configuration now", func(args []string) int {
		return runControl("reload", agentctl.OpReload, reloadUsage, args)
	})
}

const releaseUsage = `Usage: vigil release [OPTIONS] CONTAINER

Asks the running agent to undo what its response ladder has in force on
CONTAINER (its id, a unique id prefix, or its name): CPU throttling is
restored to the values it had before, denied syscalls and connections are
allowed again, a frozen container is thawed. A killed process stays killed.
Each undo is written to the audit log. Needs root.

Example:
  sudo vigil release 3f2a9c
  sudo vigil release miner

Options:
`

const unfreezeUsage = `Usage: vigil unfreeze [OPTIONS] CONTAINER

Asks the running agent to thaw CONTAINER (its id, a unique id prefix, or its
name) that its response ladder froze; other actions stay in force (see
'vigil release'). Needs root.

Example:
  sudo vigil unfreeze 3f2a9c

Options:
`

const reloadUsage = `Usage: vigil reload [OPTIONS]

Asks the running agent to reload its rule files, response policies, model
and node configuration now (it also does when they change, and on SIGHUP).
A file with an error is rejected with its file and line, and what was in
force stays. Needs root.

Options:
`

func runControl(name, op, usage string, args []string) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	sock := fs.String("socket", agentctl.DefaultSocket, "the agent's control `SOCKET`")
	fs.Usage = usageFunc(fs, usage)
	if status, done := parseFlags(fs, args); done {
		return status
	}
	req := agentctl.Request{Op: op}
	switch {
	case op == agentctl.OpReload && fs.NArg() > 0:
		return fail("%s: unexpected argument %q (see 'vigil %s --help')", name, fs.Arg(0), name)
	case op != agentctl.OpReload && fs.NArg() != 1:
		return fail("%s: name one container: its id, a unique id prefix or its name (see 'vigil status')", name)
	case op != agentctl.OpReload:
		req.Target = fs.Arg(0)
	}
	resp, err := agentctl.Call(*sock, req)
	if resp != nil {
		for _, d := range resp.Done {
			fmt.Fprintln(os.Stdout, d)
		}
	}
	if err != nil {
		return fail("%s: %v", name, err)
	}
	return 0
}
