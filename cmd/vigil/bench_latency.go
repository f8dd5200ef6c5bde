package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"vigil.dev/vigil/internal/bench"
)

const benchLatencyUsage = `Usage: vigil bench latency [OPTIONS]

Measures the tracing classes side by side. Latency: a workload makes
syscalls at a steady rate (getppid and clock_nanosleep, half each) in a
cgroup of the normal class, then of the realtime class
(vigil.dev/latency: realtime), runs interleaved in a shuffled order; each
run reports the p50 and p99 of the time from a record's kernel timestamp
(syscall exit) to the detector's decision on it, through the agent's
pipeline, and the CPU of the agent side (reader, pipeline, detector) and
of the workload. Loss: a 4-thread getppid flood in a cgroup of the drop
class, then of the block class (vigil.dev/loss: block), with the default
budget: the records dropped, the flood's rate, how often the block class
stopped it. Medians of the runs; JSON on standard output. Needs root and
gcc. Progress goes to standard error.

Example:
  sudo vigil bench latency --out bench-latency.json
  sudo vigil bench latency --rates 1000,10000,50000 --reps 5 --no-flood

Options:
`

func runBenchLatency(args []string) int {
	fs := flag.NewFlagSet("bench latency", flag.ContinueOnError)
	rates := fs.String("rates", "1000,10000", "comma-separated workload `RATES` in events/s (2 to 1000000)")
	reps := fs.Int("reps", 3, "runs of each class and rate; medians are reported")
	dur := fs.Duration("duration", 0, "length of one latency run (default 3s)")
	floodCalls := fs.Int("flood-calls", 0, "getppid calls per thread of the loss runs (default 250000)")
	noFlood := fs.Bool("no-flood", false, "skip the loss runs")
	out := fs.String("out", "", "write the JSON report to `FILE` (default: standard output)")
	fs.Usage = usageFunc(fs, benchLatencyUsage)
	if status, done := parseFlags(fs, args); done {
		return status
	}
	o := bench.LatencyOptions{Reps: *reps, Duration: *dur, FloodCalls: *floodCalls, NoFlood: *noFlood, Log: os.Stderr}
	for _, r := range strings.Split(*rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n < 2 || n > 1_000_000 {
			fmt.Fprintf(os.Stderr, "vigil bench latency: --rates: %q is not a rate: allowed values are integers from 2 to 1000000 (events/s), comma-separated\n", r)
			return 2
		}
		o.Rates = append(o.Rates, n)
	}
	if *reps < 1 {
		fmt.Fprintf(os.Stderr, "vigil bench latency: --reps %d: allowed values are 1 or more\n", *reps)
		return 2
	}
	rep, err := bench.RunLatency(o)
	if err != nil {
		return fail("bench latency: %v", err)
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	b = append(b, '\n')
	if *out != "" {
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			return fail("bench latency: --out: %v", err)
		}
		return 0
	}
	os.Stdout.Write(b)
	return 0
}
