package scenarios

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"vigil.dev/vigil/detector"
)

// Select returns the attack and benign scenarios o asks for: all of them,
// or the benign workloads marked CI (o.CI), narrowed to o.Only when set.
// A name in o.Only that is no scenario is an error.
func Select(o Options) (attacks, benign []Scenario, err error) {
	only := map[string]bool{}
	for _, n := range o.Only {
		only[n] = true
	}
	known := map[string]bool{}
	pick := func(s Scenario) bool {
		known[s.Name] = true
		return len(only) == 0 || only[s.Name]
	}
	for _, s := range Attacks {
		if pick(s) {
			attacks = append(attacks, s)
		}
	}
	for _, s := range Benign {
		if pick(s) && (!o.CI || s.CI) {
			benign = append(benign, s)
		}
	}
	var unknown []string
	for n := range only {
		if !known[n] {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		var names []string
		for n := range known {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, nil, fmt.Errorf("--only: no scenario named %s; the scenarios are %s", strings.Join(unknown, ", "), strings.Join(names, ", "))
	}
	return attacks, benign, nil
}

// lookPath finds a program as the workloads do: in PATH, and cargo also
// where rustup puts it.
func lookPath(name string) error {
	if _, err := exec.LookPath(name); err == nil {
		return nil
	} else if name != "cargo" {
		return err
	}
	home, _ := os.UserHomeDir()
	_, err := exec.LookPath(filepath.Join(home, ".cargo", "bin", "cargo"))
	return err
}

// Available splits scenarios into those whose programs are all present
// and the skipped rest.
func Available(ss []Scenario) (ok []Scenario, skipped []Skipped) {
	for _, s := range ss {
		missing := ""
		for _, n := range s.Needs {
			if lookPath(n) != nil {
				missing = n
				break
			}
		}
		if missing != "" {
			skipped = append(skipped, Skipped{Scenario: s.Name, Missing: missing})
			continue
		}
		ok = append(ok, s)
	}
	return ok, skipped
}

// setupFixtures prepares, untraced, the fixtures the selected workloads
// start from (benign/corpus/setup.sh) in Work/fixtures.
func setupFixtures(o *Options, ss []Scenario) error {
	parts := map[string]bool{}
	for _, s := range ss {
		for _, p := range s.Setup {
			parts[p] = true
		}
	}
	if len(parts) == 0 {
		return nil
	}
	args := []string{filepath.Join(o.Src, "benign", "corpus", "setup.sh"), filepath.Join(o.Work, "fixtures")}
	args = append(args, sortedKeys(parts)...)
	cmd := exec.Command("bash", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("corpus fixtures (%s): %v: %s", strings.Join(sortedKeys(parts), " "), err, b)
	}
	return nil
}

// classEvals computes the per-class figures of the rules.
func classEvals(runs []Run) []ClassEval {
	var out []ClassEval
	for _, c := range []detector.Class{detector.ClassCPU, detector.ClassNetwork, detector.ClassFSEscape, detector.ClassPrivesc} {
		ce := ClassEval{Class: string(c)}
		var ttds []float64
		for _, r := range runs {
			if r.Attack {
				if r.Class != string(c) {
					continue
				}
				ce.Attacks++
				if r.Detected {
					ce.Detected++
					ttds = append(ttds, r.TTD)
				}
				continue
			}
			n := 0
			for _, v := range r.Verdicts {
				if v.Class == c {
					n++
				}
			}
			ce.FalseAlarms += n
			if n > 0 {
				ce.FalseAlarmRuns++
			}
		}
		if ce.Attacks > 0 {
			ce.DetectionRate = float64(ce.Detected) / float64(ce.Attacks)
		}
		ce.MeanTTDms, ce.P99TTDms = meanP99(ttds)
		out = append(out, ce)
	}
	return out
}

// meanP99 is the mean and the 99th percentile (nearest rank) of xs.
func meanP99(xs []float64) (mean, p99 float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	rank := int(math.Ceil(0.99*float64(len(s)))) - 1
	return sum / float64(len(s)), s[max(rank, 0)]
}

// ClassTable prints the per-class figures.
func ClassTable(cs []ClassEval) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %8s %9s %12s %10s %12s %12s\n", "class", "attacks", "detected", "false alarms", "(FA runs)", "mean ttd ms", "p99 ttd ms")
	for _, c := range cs {
		fmt.Fprintf(&b, "%-10s %8d %8.1f%% %12d %10d %12.1f %12.1f\n", c.Class, c.Attacks, 100*c.DetectionRate, c.FalseAlarms, c.FalseAlarmRuns, c.MeanTTDms, c.P99TTDms)
	}
	return b.String()
}
