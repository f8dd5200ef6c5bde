// Command eval runs vigil's detection evaluation: the CVE protocol on the
// development data set (syscall-count windows of real CVE attacks, no root
// needed), then, as root, every attack and benign scenario under `vigil
// trace`; it writes eval-report.json and prints tables.
//
//	go build -o bin/vigil ./cmd/vigil && sudo go run ./test/scenarios/eval
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"vigil.dev/vigil/test/scenarios"
)

func main() {
	vigil := flag.String("vigil", "bin/vigil", "the vigil `BINARY` to trace with")
	out := flag.String("out", "eval-report.json", "write the JSON report to `FILE`")
	src := flag.String("src", "test/scenarios", "the scenarios `DIR`")
	runs := flag.Int("runs", 2, "runs per benign workload")
	keep := flag.String("keep", "", "copy each run's events and samples to `DIR` (golden data for detector tests)")
	sok := flag.String("sok-dev", "", "the development CVE data set `DIR` (default $VIGIL_SOK_DEV, else ../shared/datasets/sok-dev beside the repository)")
	cveOnly := flag.Bool("cve-only", false, "run the CVE protocol only (no scenarios, no root needed)")
	variants := flag.Bool("variants", false, "also evaluate the model's variants and other detectors (KNN, syscall pairs) side by side, and leave-one-CVE-out")
	only := flag.String("only", "", "run only the scenarios of these comma-separated `NAMES`")
	ci := flag.Bool("ci", false, "benign: only the workloads make test runs (attacks: all)")
	flag.Parse()
	absSrc, _ := filepath.Abs(*src)
	dataset := *sok
	if dataset == "" {
		dataset = scenarios.SokDevDir(absSrc)
	}
	var rep scenarios.Report
	if dataset == "" {
		fmt.Fprintln(os.Stderr, "eval: no CVE data set (../shared/datasets/sok-dev beside the repository, or --sok-dev DIR): CVE protocol skipped")
	} else {
		var vs []scenarios.Method
		if *variants {
			vs = append(scenarios.ModelVariants(), scenarios.CompareMethods()...)
		}
		cr, err := scenarios.EvaluateCVE(dataset, vs, os.Stdout)
		if err != nil {
			fail(err)
		}
		rep.CVE = cr
	}
	if !*cveOnly {
		if os.Geteuid() != 0 {
			fail(fmt.Errorf("the scenarios need root (vigil trace loads eBPF programs): run it with sudo, or pass --cve-only"))
		}
		work, err := os.MkdirTemp("", "vigil-eval-")
		if err != nil {
			fail(err)
		}
		defer os.RemoveAll(work)
		scratch = work // fail removes it too
		absVigil, _ := filepath.Abs(*vigil)
		var names []string
		if *only != "" {
			names = strings.Split(*only, ",")
		}
		sr, err := scenarios.Evaluate(scenarios.Options{Vigil: absVigil, Src: absSrc, Work: work, Runs: *runs, Log: os.Stderr, Keep: *keep, Only: names, CI: *ci})
		if err != nil {
			fail(err)
		}
		sr.CVE = rep.CVE
		rep = *sr
		fmt.Print(rep.Table())
	}
	b, err := json.MarshalIndent(&rep, "", "  ")
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		fail(err)
	}
	fmt.Printf("report: %s\n", *out)
	if len(rep.Runs) > 0 {
		// every benign run of the corpus must do its work without a verdict
		if err := rep.BenignClean(); err != nil {
			fail(err)
		}
	}
}

// scratch is the run's scratch directory, removed on failure as well.
var scratch string

func fail(err error) {
	if scratch != "" {
		os.RemoveAll(scratch)
	}
	fmt.Fprintln(os.Stderr, "eval:", err)
	os.Exit(1)
}
