package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"vigil.dev/vigil/internal/bench"
)

func init() {
	register("bench", "benchmarks: tracer and pipeline overhead ratios, peers, throughput, latency (JSON)", runBench)
}

const benchUsage = `Usage: vigil bench tracer [OPTIONS]

Measures the tracer side by side in one run: each workload untraced, under
an empty BPF program on the same hook (the floor) and under vigil streaming
every syscall to a consumer that decodes and counts them. Modes are
interleaved in a shuffled order each repetition; medians are reported as
ratios to the untraced run. Also: the cost to an unmonitored process, the
event rate one reader sustains, and delivery latency for several wakeup
settings. Needs root, gcc, tar and go. Progress goes to standard error.

Workloads: getppid, open-read-close, tar-rm-5000, go-build, http,
           unmonitored, kernel-cost, throughput, latency

Example:
  sudo vigil bench tracer --reps 5 --out bench-tracer.json
  sudo vigil bench tracer --workloads getppid,unmonitored --reps 3
  sudo vigil bench tracer --workloads tar-rm-5000,http --peers --audit

Options:
`

func runBench(args []string) int {
	if len(args) > 0 && args[0] == "control" {
		return runBenchControl(args[1:])
	}
	if len(args) > 0 && args[0] == "scale" {
		return runBenchScale(args[1:])
	}
	if len(args) > 0 && args[0] == "pipeline" {
		return runBenchPipeline(args[1:])
	}
	if len(args) > 0 && args[0] == "latency" {
		return runBenchLatency(args[1:])
	}
	if len(args) == 0 || args[0] != "tracer" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Print(benchUsage)
			return 0
		}
		fmt.Fprintln(os.Stderr, "vigil bench: name a benchmark: tracer, pipeline, control, latency or scale (e.g. 'vigil bench pipeline --help')")
		return 2
	}
	fs := flag.NewFlagSet("bench tracer", flag.ContinueOnError)
	reps := fs.Int("reps", 5, "repetitions of each mode; medians are reported")
	out := fs.String("out", "", "write the JSON report to `FILE` (default: standard output)")
	wl := fs.String("workloads", "", "comma-separated `NAMES` to run (default: all)")
	scale := fs.Float64("scale", 1, "multiply the work per run by `X` (smaller is faster, noisier)")
	peers := fs.Bool("peers", false, "also run each workload under strace -f (a peer tracer)")
	withAudit := fs.Bool("audit", false, "also run each workload under vigil writing every event to an audit log")
	poll := fs.Duration("poll", 0, "the reader's poll `INTERVAL` in the vigil modes (default: the tracer's, 900µs)")
	fs.Usage = usageFunc(fs, benchUsage)
	if status, done := parseFlags(fs, args[1:]); done {
		return status
	}
	o := bench.Options{Reps: *reps, Scale: *scale, Log: os.Stderr, Peers: *peers, Audit: *withAudit, Poll: *poll}
	if *wl != "" {
		o.Workloads = strings.Split(*wl, ",")
	}
	rep, err := bench.RunTracer(o)
	if err != nil {
		return fail("bench tracer: %v", err)
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	b = append(b, '\n')
	if *out != "" {
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			return fail("bench tracer: --out: %v", err)
		}
		return 0
	}
	os.Stdout.Write(b)
	return 0
}

const benchControlUsage = `Usage: vigil bench control [OPTIONS]

Measures the response ladder end to end: for each action, --triggers
processes each in a fresh cgroup make a syscall that a rule turns into a
verdict whose policy takes that action, through the agent's pipeline
(tracer, pipeline, detector, controller, actuator). Reports p50/p99/max of
the time from the triggering event's kernel timestamp to the action being
in force, and the detector's decision time per event. Needs root and
busybox.

Example:
  sudo vigil bench control --triggers 100 --out bench-control.json

Options:
`

func runBenchControl(args []string) int {
	fs := flag.NewFlagSet("bench control", flag.ContinueOnError)
	triggers := fs.Int("triggers", 100, "triggers per action")
	actions := fs.String("actions", "", "comma-separated actions (default: kill-process,freeze,throttle,deny-connect)")
	out := fs.String("out", "", "write the JSON report to `FILE` (default: standard output)")
	fs.Usage = usageFunc(fs, benchControlUsage)
	if status, done := parseFlags(fs, args); done {
		return status
	}
	o := bench.ControlOptions{Triggers: *triggers, Log: os.Stderr}
	if *actions != "" {
		o.Actions = strings.Split(*actions, ",")
	}
	rep, err := bench.RunControl(o)
	if err != nil {
		return fail("bench control: %v", err)
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	b = append(b, '\n')
	if *out != "" {
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			return fail("bench control: --out: %v", err)
		}
		return 0
	}
	os.Stdout.Write(b)
	return 0
}
