package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"vigil.dev/vigil/internal/bench"
)

const benchPipelineUsage = `Usage: vigil bench pipeline [OPTIONS]

Measures what vigil costs realistic workloads on the agent's real event
path: the registry's enrichment, the audit log (default durability), the
detector with the default rules and a model (trained on the workloads
first), the response ladder in mode detect and the agent's alert output.
Each workload runs untraced, under that path and under 'vigil trace
--quiet' (the same from the shell, start-up included), with --peers also
under bpftrace, auditd and strace -f; modes interleaved in a shuffled order
each repetition, medians reported as ratios to the untraced runs.

Per workload and mode: wall time and CPU (workload's cgroup plus the
tracer's processes) and their ratios, the tracer's CPU per event, events/s,
losses, delivery latency (kernel timestamp to detector) and, for vigil, its
CPU per event by stage (decode, enrich, audit, export, detect, other) and
without its idle cost (marginal).

Workloads: idle     sleep: what vigil costs when no event comes
           tar-rm   tar -x of 5000 files and rm -rf on tmpfs, repeated
           go-build incremental Go builds of a small program, repeated
           http     a loopback HTTP server under a fixed request rate
           getppid  a getppid loop (the worst case: the cheapest syscall)
Modes:     untraced, vigil, trace-quiet; peers: bpftrace-print,
           bpftrace-count, auditd, strace

Needs root, gcc, tar and go; --peers installs bpftrace, auditd and strace
with apt-get when missing, and stops an auditd it started. Progress goes to
standard error, the table to standard output.

Example:
  sudo vigil bench pipeline --out bench-pipeline.json
  sudo vigil bench pipeline --workloads tar-rm,http --reps 7 --duration 10s
  sudo vigil bench pipeline --peers --duration 2s --out bench-peers.json

Options:
`

func runBenchPipeline(args []string) int {
	fs := flag.NewFlagSet("bench pipeline", flag.ContinueOnError)
	reps := fs.Int("reps", 5, "runs of each mode; medians are reported (at least 5 for a report)")
	out := fs.String("out", "", "also write the JSON report to `FILE`")
	wl := fs.String("workloads", "", "comma-separated `NAMES` (default: all): "+strings.Join(bench.PipelineWorkloads, ", "))
	modes := fs.String("modes", "", "comma-separated `MODES` (default: untraced, vigil, trace-quiet; untraced always runs)")
	peers := fs.Bool("peers", false, "also run the peer tracers: bpftrace-print, bpftrace-count, auditd, strace")
	install := fs.Bool("install-peers", true, "install missing peer tracers with apt-get")
	dur := fs.Duration("duration", 5*time.Second, "length of an untraced run (`DURATION`; the work per run is calibrated to it)")
	rate := fs.Int("http-rate", 2000, "requests per second of the http workload")
	fs.Usage = usageFunc(fs, benchPipelineUsage)
	if status, done := parseFlags(fs, args); done {
		return status
	}
	if *reps < 1 {
		return fail("bench pipeline: --reps %d: want 1 or more (5 or more for a report)", *reps)
	}
	if *dur < 100*time.Millisecond {
		return fail("bench pipeline: --duration %v: want 100ms or more (start-up must stay under 1%% of a run)", *dur)
	}
	if *rate < 1 {
		return fail("bench pipeline: --http-rate %d: want 1 or more", *rate)
	}
	// Interrupted, it stops after the run in progress and removes what it
	// set up (cgroups, mounts, an auditd it started and its rule).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := bench.PipelineOptions{Reps: *reps, Duration: *dur, HTTPRate: *rate, InstallPeers: *install, Log: os.Stderr, Ctx: ctx}
	if *wl != "" {
		o.Workloads = strings.Split(*wl, ",")
	}
	if *modes != "" {
		o.Modes = strings.Split(*modes, ",")
	}
	if *peers {
		if len(o.Modes) == 0 {
			o.Modes = append(o.Modes, bench.PipelineModes...)
		}
		o.Modes = append(o.Modes, bench.PeerModes...)
	}
	if exe, err := os.Executable(); err == nil {
		o.Vigil = exe
	}
	rep, err := bench.RunPipeline(o)
	if err != nil {
		return fail("bench pipeline: %v", err)
	}
	rep.Commit = commit
	if *out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			return fail("bench pipeline: --out: %v", err)
		}
	}
	rep.WriteTable(os.Stdout)
	if *out != "" {
		fmt.Fprintf(os.Stderr, "wrote %s\n", *out)
	}
	return 0
}
