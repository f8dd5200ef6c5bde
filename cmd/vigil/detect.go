package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

func init() {
	register("detect", "train, score and inspect learned models; check rules; replay events through the detector", runDetect)
}

const detectUsage = `Usage: vigil detect SUBCOMMAND [OPTIONS]

The detector offline: learn a model of a workload's normal syscall behaviour,
score traces against it, turn it into a seccomp profile, and run recorded
events through the rules.

Subcommands:
  train    --in PATH... --out MODEL    learn a model from normal traces
  score    --model MODEL PATH...       score traces: one JSON line per trace or window
  profile  --model MODEL --out FILE    the smallest OCI seccomp profile allowing what the model saw
  inspect  MODEL                       what a model holds and how it was calibrated
  rules    [--policy FILE]...          check rule files and list the loaded rules
  replay   [--policy FILE] [--model MODEL] EVENTS...
                                       run vigil event files through the detector, print verdicts

Inputs (PATH may be a directory: its files are read in name order):
  events   vigil event JSON lines (vigil trace --json); windows of --window events per cgroup
  seq      one trace per file: whitespace-separated syscall numbers (--abi) or names
  pidseq   one trace per file: lines of "PID SYSCALL" (the UNM traces), a sequence per
           pid; auto takes a seq file of such lines for it when pids run on for lines
  counts   CSV: a time column in ms, then one column per syscall name; one window per row

Example:
  vigil detect train --in normal/ --out web.model
  vigil detect score --model web.model suspicious/
  vigil detect profile --model web.model --out web-seccomp.json

Run 'vigil detect SUBCOMMAND --help' for its options.
`

func runDetect(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Print(detectUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub := map[string]func([]string) int{
		"train": detectTrain, "score": detectScore, "profile": detectProfile,
		"inspect": detectInspect, "rules": detectRules, "replay": detectReplay,
	}
	run, ok := sub[args[0]]
	if !ok {
		return fail("detect: unknown subcommand %q: use train, score, profile, inspect, rules or replay (see 'vigil detect --help')", args[0])
	}
	return run(args[1:])
}

// newDetectFlags makes a FlagSet whose --help prints usage and an example.
func newDetectFlags(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("detect "+name, flag.ContinueOnError)
	fs.Usage = usageFunc(fs, usage)
	return fs
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

type readFlags struct {
	format string
	abi    string
	window int
}

func (r *readFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&r.format, "format", "auto", "input format: `auto`, events, seq, pidseq or counts")
	fs.StringVar(&r.abi, "abi", "x86_64", "syscall numbering of numeric sequence traces: `x86_64`, i386 or arm64")
	fs.IntVar(&r.window, "window", detector.DefaultWindowEvents, "events per window for event files (per cgroup)")
}

func (r *readFlags) options() (detector.ReadOptions, error) {
	abi, err := event.ParseABI(r.abi)
	if err != nil {
		return detector.ReadOptions{}, fmt.Errorf("--abi: %w", err)
	}
	ok := false
	for _, f := range detector.Formats {
		ok = ok || f == r.format
	}
	if !ok {
		return detector.ReadOptions{}, fmt.Errorf("--format %q: unknown, use one of %s", r.format, strings.Join(detector.Formats, ", "))
	}
	if r.window < 1 {
		return detector.ReadOptions{}, fmt.Errorf("--window %d: want at least 1", r.window)
	}
	return detector.ReadOptions{Format: r.format, ABI: abi, Window: r.window}, nil
}

func readAll(paths []string, opt detector.ReadOptions) ([]detector.Unit, []string, error) {
	files, err := detector.ExpandPaths(paths)
	if err != nil {
		return nil, nil, err
	}
	var units []detector.Unit
	var formats []string
	seen := map[string]bool{}
	for _, f := range files {
		u, format, err := detector.ReadUnits(f, opt)
		if err != nil {
			return nil, nil, err
		}
		if !seen[format] {
			seen[format] = true
			formats = append(formats, format)
		}
		units = append(units, u...)
	}
	return units, formats, nil
}

const trainUsage = `Usage: vigil detect train --in PATH [--in PATH...] --out MODEL [OPTIONS]

Learns a model of normal behaviour from traces of normal runs: an n-gram
language model, STIDE sequence set, tf-idf frequency windows and per-syscall
count deviations (from event windows); the n-gram mean negative
log-likelihood and the tf-idf distance, each normalized by its rarity among
held-out normal traces (from whole per-process traces, --abi); per-syscall
count deviations beyond 10 standard deviations, lasting two consecutive
windows (from count windows); calibrated on held-out folds of the same data so that the threshold is a
high quantile of normal scores. Deterministic. --name is the workload key
(image/container name): the agent scores only that workload's containers
with the model, others by the rules only.

Example:
  vigil detect train --in normal/ --abi i386 --out app.model
  vigil detect train --in run1.jsonl --in run2.jsonl --name nginx/web --out web.model
  vigil detect train --in day1.csv --in day2.csv --context 3 --out app.model

Options:
`

func detectTrain(args []string) int {
	fs := newDetectFlags("train", trainUsage)
	var in multiFlag
	var rf readFlags
	fs.Var(&in, "in", "training input `PATH` (file or directory; repeatable)")
	out := fs.String("out", "", "write the model to `MODEL`")
	name := fs.String("name", "", "workload key stored in the model (image/container name)")
	context := fs.Int("context", 0, "consecutive windows a deviation must last, `N` in 1..100 (0: 2 for count windows, 1 otherwise)")
	rf.add(fs)
	if st, done := parseFlags(fs, args); done {
		return st
	}
	in = append(in, fs.Args()...)
	if len(in) == 0 {
		return fail("detect train: no input: give --in PATH (a file or directory of normal traces)")
	}
	if *out == "" {
		return fail("detect train: no --out MODEL: say where to write the model")
	}
	if *context < 0 || *context > 100 {
		return fail("detect train: --context %d: want 1..100 windows (or 0 for the default)", *context)
	}
	opt, err := rf.options()
	if err != nil {
		return fail("detect train: %v", err)
	}
	units, formats, err := readAll(in, opt)
	if err != nil {
		return fail("detect train: %v", err)
	}
	kind := strings.Join(formats, "+")
	m, err := detector.Train(units, detector.TrainOptions{Name: *name, UnitKind: kind, WindowN: opt.Window, Context: *context})
	if err != nil {
		return fail("detect train: %v", err)
	}
	if err := m.SaveFile(*out); err != nil {
		return fail("detect train: %v", err)
	}
	fmt.Fprintf(os.Stderr, "trained on %d units (%s), %d syscalls, %d distinct; threshold %.3f; wrote %s\n",
		m.Units, kind, m.Syscalls, len(m.Vocab), m.Threshold, *out)
	return 0
}

const scoreUsage = `Usage: vigil detect score --model MODEL [OPTIONS] PATH...

Scores each trace (sequence file), window (counts CSV row, or --window events
of a cgroup in an event file) against the model and prints one JSON line each:
  {"source":FILE,"index":N,"score":S,"verdict":"anomaly"|"normal","anomaly":BOOL,...}
The score is about 1 for typical normal data; "anomaly" means above the
model's calibrated threshold. The rows of a counts CSV are consecutive
windows: when the model asks a deviation to last N windows (its context),
a row's score is the smallest of its last N rows' scores.

Example:
  vigil detect score --model app.model --abi i386 attack/ validation/

Options:
`

type scoreLine struct {
	Source    string             `json:"source"`
	Index     int                `json:"index"`
	Score     float64            `json:"score"`
	Verdict   string             `json:"verdict"`
	Anomaly   bool               `json:"anomaly"`
	Threshold float64            `json:"threshold"`
	Length    int                `json:"length"`
	Parts     map[string]float64 `json:"parts"`
}

func detectScore(args []string) int {
	fs := newDetectFlags("score", scoreUsage)
	var rf readFlags
	modelPath := fs.String("model", "", "the `MODEL` file (from vigil detect train)")
	threshold := fs.Float64("threshold", 0, "call scores above `T` anomalies instead of the model's calibrated threshold")
	rf.add(fs)
	if st, done := parseFlags(fs, args); done {
		return st
	}
	if *modelPath == "" {
		return fail("detect score: no --model MODEL given")
	}
	if *threshold < 0 {
		return fail("detect score: --threshold %v: want a score >= 0", *threshold)
	}
	if fs.NArg() == 0 {
		return fail("detect score: no input: give one or more PATHs of traces to score")
	}
	m, err := detector.LoadModel(*modelPath)
	if err != nil {
		return fail("detect score: %v", err)
	}
	opt, err := rf.options()
	if err != nil {
		return fail("detect score: %v", err)
	}
	if !setFlag(fs, "window") && m.WindowN > 0 {
		opt.Window = m.WindowN
	}
	if setFlag(fs, "threshold") {
		m.Threshold = *threshold
	}
	files, err := detector.ExpandPaths(fs.Args())
	if err != nil {
		return fail("detect score: %v", err)
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	enc := json.NewEncoder(w)
	for _, f := range files {
		units, format, err := detector.ReadUnits(f, opt)
		if err != nil {
			w.Flush()
			return fail("detect score: %v", err)
		}
		var series []detector.Scores
		if format == detector.FormatCounts {
			series = m.ScoreSeries(units)
		}
		for i := range units {
			var s detector.Scores
			if series != nil {
				s = series[i]
			} else {
				s = m.Score(&units[i])
			}
			line := scoreLine{Source: f, Index: units[i].Index, Score: round6(s.Score), Verdict: "normal",
				Anomaly: s.Anomalous, Threshold: round6(m.Threshold), Length: units[i].Len(),
				Parts: map[string]float64{"ngram": round6(s.Parts[0]), "stide": round6(s.Parts[1]), "freq": round6(s.Parts[2]), "count": round6(s.Parts[3]), "pca": round6(s.Parts[4])}}
			if s.Anomalous {
				line.Verdict = "anomaly"
			}
			if err := enc.Encode(line); err != nil {
				return fail("detect score: %v", err)
			}
		}
	}
	return 0
}

func round6(f float64) float64 {
	if f != f { // NaN
		return 0
	}
	return float64(int64(f*1e6+0.5)) / 1e6
}

func setFlag(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

const profileUsage = `Usage: vigil detect profile --model MODEL --out FILE [--abi ABI]

Writes the smallest OCI seccomp profile (the docker/podman/kubelet profile
JSON) that allows every syscall the model saw, plus the few the runtime
needs to exec the workload; everything else fails with EPERM.

Example:
  vigil detect profile --model web.model --out /var/lib/vigil/profiles/web.json

Options:
`

func detectProfile(args []string) int {
	fs := newDetectFlags("profile", profileUsage)
	modelPath := fs.String("model", "", "the `MODEL` file")
	out := fs.String("out", "", "write the profile to `FILE` (- for standard output)")
	abiName := fs.String("abi", string(event.NativeABI()), "architecture of the profile: `x86_64`, i386 or arm64")
	if st, done := parseFlags(fs, args); done {
		return st
	}
	if *modelPath == "" || *out == "" {
		return fail("detect profile: give both --model MODEL and --out FILE")
	}
	abi, err := event.ParseABI(*abiName)
	if err != nil {
		return fail("detect profile: --abi: %v", err)
	}
	m, err := detector.LoadModel(*modelPath)
	if err != nil {
		return fail("detect profile: %v", err)
	}
	b, skipped, err := m.ProfileJSON(abi)
	if err != nil {
		return fail("detect profile: %v", err)
	}
	if len(skipped) > 0 {
		fmt.Fprintf(os.Stderr, "vigil: detect profile: %d names unknown to %s left out: %s\n", len(skipped), abi, strings.Join(skipped, " "))
	}
	if *out == "-" {
		os.Stdout.Write(b)
		return 0
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return fail("detect profile: %v", err)
	}
	return 0
}

const inspectUsage = `Usage: vigil detect inspect MODEL

Prints what a model holds: training size, vocabulary, components,
calibration (normalizers, threshold) and the most frequent syscalls.

Example:
  vigil detect inspect web.model
`

func detectInspect(args []string) int {
	fs := newDetectFlags("inspect", inspectUsage)
	asJSON := fs.Bool("json", false, "print the calibration as JSON")
	if st, done := parseFlags(fs, args); done {
		return st
	}
	if fs.NArg() != 1 {
		return fail("detect inspect: give exactly one MODEL file, for example 'vigil detect inspect web.model'")
	}
	m, err := detector.LoadModel(fs.Arg(0))
	if err != nil {
		return fail("detect inspect: %v", err)
	}
	if *asJSON {
		b, _ := json.Marshal(map[string]any{"name": m.Name, "units": m.Units, "syscalls": m.Syscalls,
			"vocab": len(m.Vocab), "threshold": m.Threshold, "norm": m.Norm, "calibration": m.Calib})
		fmt.Println(string(b))
		return 0
	}
	fmt.Print(m.Summary())
	return 0
}

const rulesUsage = `Usage: vigil detect rules [--policy FILE]... [--no-default]

Loads the embedded default rules and the given rule files, reports the first
error with its file and line, and lists the rules. --print writes the
default rule file (a starting point for your own).

Example:
  vigil detect rules --policy my-rules.yaml
  vigil detect rules --print > default.yaml

Options:
`

func detectRules(args []string) int {
	fs := newDetectFlags("rules", rulesUsage)
	var pol multiFlag
	fs.Var(&pol, "policy", "extra rule `FILE` (repeatable)")
	noDef := fs.Bool("no-default", false, "leave the embedded default rules out")
	print := fs.Bool("print", false, "print the embedded default rule file and exit")
	if st, done := parseFlags(fs, args); done {
		return st
	}
	if *print {
		os.Stdout.Write(detector.DefaultRules())
		return 0
	}
	e, err := detector.New(detector.Config{RuleFiles: pol, NoDefaultRules: *noDef})
	if err != nil {
		return fail("detect rules: %v", err)
	}
	for _, r := range e.Rules() {
		fmt.Println(r)
	}
	return 0
}

const replayUsage = `Usage: vigil detect replay [--policy FILE]... [--model MODEL] EVENTS...

Runs recorded vigil event files (vigil trace --json output) through the
rules (and the model) and prints each verdict as a JSON line
{"verdict":{...}}. The same events always give the same verdicts and ids.

Example:
  vigil detect replay run.jsonl
  vigil detect replay --policy strict.yaml --model web.model run.jsonl

Options:
`

func detectReplay(args []string) int {
	fs := newDetectFlags("replay", replayUsage)
	var pol multiFlag
	fs.Var(&pol, "policy", "extra rule `FILE` (repeatable)")
	modelPath := fs.String("model", "", "a learned `MODEL` to apply as well")
	if st, done := parseFlags(fs, args); done {
		return st
	}
	if fs.NArg() == 0 {
		return fail("detect replay: give one or more event files (vigil trace --json output)")
	}
	cfg := detector.Config{RuleFiles: pol, Shards: 1, Lists: map[string][]string{"allowed_resolvers": detector.SystemResolvers("")}}
	if *modelPath != "" {
		m, err := detector.LoadModel(*modelPath)
		if err != nil {
			return fail("detect replay: %v", err)
		}
		cfg.Model = m
	}
	e, err := detector.New(cfg)
	if err != nil {
		return fail("detect replay: %v", err)
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	emit := func(vs []detector.Verdict) error {
		for i := range vs {
			b, err := vs[i].MarshalJSONLine()
			if err != nil {
				return err
			}
			w.Write(append(b, '\n'))
		}
		return nil
	}
	for _, f := range fs.Args() {
		r, err := os.Open(f)
		if err != nil {
			return fail("detect replay: %v", err)
		}
		err = detector.ReplayEvents(r, f, func(ev *event.Event) error { return emit(e.Observe(ev)) })
		r.Close()
		if err != nil {
			return fail("detect replay: %v", err)
		}
	}
	if err := emit(e.Flush()); err != nil {
		return fail("detect replay: %v", err)
	}
	return 0
}

var _ io.Reader
