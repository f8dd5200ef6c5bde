package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"vigil.dev/vigil/internal/benchscale"
)

const benchScaleUsage = `Usage: vigil bench scale [OPTIONS]

Measures vigil with many containers at once. For each count N, it starts
the real agent (this binary, 'vigil agent --hook-only' with sockets of its
own and nothing pinned), makes N cgroups under a parent of its own in the
cgroup v2 hierarchy, each with a tiny static process (compiled from C at
the start) making --rate rounds of openat, read, close, getpid and
nanosleep per second, --heavy of them --heavy-rate syscalls per second,
and registers them all through the control socket as the OCI hook does.
After --warmup it measures a --steady window, then stops the workloads,
unregisters them and waits until the agent holds nothing for them.

One JSON line per N: containers, events_per_s, drops (records lost from
track to untrack: must be 0), decision_p99_ns, agent_cpu_cores, rss_bytes
and rss_bytes_per_container (the agent's resident memory), map_bytes (the
BPF maps' memory as the kernel reports it), kernel_slab_bytes_per_container,
track_all_s, untrack_all_s, released_s, and the agent's held state (tracer
list, detector, audit writer, goroutines, fds) idle, steady and after.
A count the machine cannot hold (memory, kernel.pid_max) gets a line with
"skipped" and the reason. Processes, cgroups and the agent are removed at
the end, on error and on Ctrl-C. Needs root and a C compiler (cc or
clang). Progress goes to standard error.

Example:
  sudo vigil bench scale --out bench-scale.jsonl
  sudo vigil bench scale --counts 1000 --steady 10s

Options:
`

func runBenchScale(args []string) int {
	fs := flag.NewFlagSet("bench scale", flag.ContinueOnError)
	counts := fs.String("counts", "1000,5000,10000,20000", "comma-separated `NUMBERS` of containers, measured one after the other")
	heavy := fs.Int("heavy", 4, "`N` heavy containers among them (0: none)")
	heavyRate := fs.Int("heavy-rate", 20000, "syscalls per second of each heavy container (`RATE`)")
	rate := fs.Float64("rate", 2, "rounds of 5 syscalls per second of each light container (`RATE`, at most 1000)")
	warmup := fs.Duration("warmup", 0, "time after tracking before the window (`DURATION`, default 5s)")
	steady := fs.Duration("steady", 0, "the measured window (`DURATION`, default 20s)")
	clients := fs.Int("clients", 8, "register and unregister with `N` clients at once")
	noAudit := fs.Bool("no-audit", false, "run the agent without its audit log")
	vigilBin := fs.String("vigil", "", "the agent `BINARY` to measure (default: this one)")
	out := fs.String("out", "", "append the JSON lines to `FILE` (default: standard output)")
	profDir := fs.String("profile", "", "write the agent's CPU profiles while it registers and in the steady window to `DIR` (N-register.pprof, N-steady.pprof; read them with 'go tool pprof')")
	var agentArgs multiFlag
	fs.Var(&agentArgs, "agent-arg", "pass `ARG` to the agent too (repeatable; e.g. --agent-arg=--sample-budget=500)")
	fs.Usage = usageFunc(fs, benchScaleUsage)
	if status, done := parseFlags(fs, args); done {
		return status
	}
	if fs.NArg() > 0 {
		return fail("bench scale: unexpected argument %q (see --help)", fs.Arg(0))
	}
	o := benchscale.Options{Heavy: *heavy, HeavyRate: *heavyRate, Rate: *rate, Warmup: *warmup, Steady: *steady,
		Clients: *clients, NoAudit: *noAudit, Vigil: *vigilBin, Log: os.Stderr, Out: os.Stdout, ProfileDir: *profDir, AgentArgs: agentArgs}
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fail("bench scale: --counts: %q is not a positive number of containers (e.g. --counts 1000,5000)", s)
		}
		o.Counts = append(o.Counts, n)
	}
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fail("bench scale: --out: %v", err)
		}
		defer f.Close()
		o.Out = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := benchscale.Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "vigil: bench scale:", err)
		return 1
	}
	return 0
}
