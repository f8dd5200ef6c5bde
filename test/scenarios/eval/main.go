// Command eval runs vigil's detection evaluation (as root): every attack
// and benign scenario under `vigil trace`, then writes eval-report.json and
// prints a table.
//
//	go build -o bin/vigil ./cmd/vigil && sudo go run ./test/scenarios/eval
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"vigil.dev/vigil/test/scenarios"
)

func main() {
	vigil := flag.String("vigil", "bin/vigil", "the vigil `BINARY` to trace with")
	out := flag.String("out", "eval-report.json", "write the JSON report to `FILE`")
	src := flag.String("src", "test/scenarios", "the scenarios `DIR`")
	runs := flag.Int("runs", 2, "runs per benign workload (the first trains the model)")
	keep := flag.String("keep", "", "copy each run's events and samples to `DIR` (golden data for detector tests)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "eval: needs root (vigil trace loads eBPF programs): run it with sudo")
		os.Exit(1)
	}
	work, err := os.MkdirTemp("", "vigil-eval-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "eval:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(work)
	absVigil, _ := filepath.Abs(*vigil)
	absSrc, _ := filepath.Abs(*src)
	rep, err := scenarios.Evaluate(scenarios.Options{Vigil: absVigil, Src: absSrc, Work: work, Runs: *runs, Log: os.Stderr, Keep: *keep})
	if err != nil {
		fmt.Fprintln(os.Stderr, "eval:", err)
		os.Exit(1)
	}
	if err := rep.WriteJSON(*out); err != nil {
		fmt.Fprintln(os.Stderr, "eval:", err)
		os.Exit(1)
	}
	fmt.Print(rep.Table())
	fmt.Printf("report: %s\n", *out)
}
