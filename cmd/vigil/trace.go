package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/agent"
	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/pipeline"
)

func init() {
	register("trace", "run a command in a fresh cgroup and trace every syscall it makes", runTrace)
}

const traceUsage = `Usage: vigil trace [OPTIONS] -- CMD [ARG...]

Runs CMD in a fresh cgroup v2 group that is traced before CMD's first
instruction, streams one line per completed syscall (with arguments, return
value, decoded paths, exec arguments and socket addresses), and at the end
prints per-syscall counts and the tracer's exact counters:
seen == emitted + dropped. Exits with CMD's exit status. Needs root.

The events take the same pipeline as in the agent: the audit log (--audit),
the detector with the default rules (plus --policy files and a --model) and
the command's CPU use, and the response ladder in --mode (detect by default:
each verdict says what the --response policy would do; enforce does it).
Each verdict is written into the stream, as a line "!! verdict ..." in text
or {"verdict":{...}} with --json; actions as "!! action ..." or
{"action":{...}}; lost records as gaps.

Example:
  sudo vigil trace -- ls /tmp
  sudo vigil trace --json --out run.jsonl -- sh -c 'cat /etc/hostname'
  sudo vigil trace --audit /var/lib/vigil/trace-audit -- ./job.sh

Options:
`

type traceOpts struct {
	json     bool
	out      string
	quiet    bool
	ringSize int
	summary  bool
	policy   multiFlag
	model    string
	noDetect bool
	auditDir string
	mode     string
	response string
	cpuProf  string
	allocs   string
}

func runTrace(args []string) int {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	var o traceOpts
	fs.BoolVar(&o.json, "json", false, "write events as JSON lines (see the event contract in the README)")
	fs.StringVar(&o.out, "out", "", "write events to `FILE` instead of standard output")
	fs.BoolVar(&o.quiet, "quiet", false, "write no events, only verdicts, actions and the summary")
	fs.IntVar(&o.ringSize, "ring-size", 16<<20, "ring buffer size in `BYTES` (a power of two)")
	fs.BoolVar(&o.summary, "summary", true, "print per-syscall counts and counters at the end (to standard error)")
	fs.Var(&o.policy, "policy", "extra detection rule `FILE` (repeatable), on top of the default rules")
	fs.StringVar(&o.model, "model", "", "learned model `FILE` (from 'vigil detect train') to score the workload with")
	fs.BoolVar(&o.noDetect, "no-detect", false, "trace only: run no detector")
	fs.StringVar(&o.auditDir, "audit", "", "also write the run's audit log to `DIR` (verify with 'vigil audit verify DIR')")
	fs.StringVar(&o.mode, "mode", "detect", "what verdicts do: learn (record only), detect (report what the response policy would do), enforce (do it: kill, freeze, deny-connect; throttle where a cpu controller is at hand)")
	fs.StringVar(&o.response, "response", "", "response policy `FILE` (YAML, see docs/response.md; default: the built-in default policy)")
	fs.StringVar(&o.cpuProf, "cpuprofile", "", "write vigil's own CPU profile of the run to `FILE` (read it with 'go tool pprof')")
	fs.StringVar(&o.allocs, "memprofile", "", "write vigil's own allocation profile of the run to `FILE` (every allocation sampled at the end of the run)")
	fs.Usage = usageFunc(fs, traceUsage)
	if status, done := parseFlags(fs, args); done {
		return status
	}
	switch annotations.Mode(o.mode) {
	case annotations.ModeLearn, annotations.ModeDetect, annotations.ModeEnforce:
	default:
		return fail("trace: --mode %q: allowed values are learn, detect, enforce", o.mode)
	}
	cmdArgs := fs.Args()
	if len(cmdArgs) == 0 {
		fmt.Fprintln(os.Stderr, "vigil trace: no command given: use 'vigil trace [OPTIONS] -- CMD [ARG...]', for example 'vigil trace -- ls /tmp'")
		return 2
	}
	stopProfile, err := startProfiles(o.cpuProf, o.allocs)
	if err != nil {
		return fail("trace: %v", err)
	}
	status, err := trace(o, cmdArgs)
	if perr := stopProfile(); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return fail("trace: %v", err)
	}
	return status
}

// startProfiles starts vigil's own CPU profile into cpuFile and prepares
// the allocation profile into allocsFile ("" for none); stop writes them.
func startProfiles(cpuFile, allocsFile string) (stop func() error, err error) {
	var cpu *os.File
	if cpuFile != "" {
		if cpu, err = os.Create(cpuFile); err != nil {
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			cpu.Close()
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
	}
	rate := runtime.MemProfileRate
	if allocsFile != "" {
		runtime.MemProfileRate = 1
	}
	return func() error {
		defer func() { runtime.MemProfileRate = rate }()
		var errs []error
		if cpu != nil {
			pprof.StopCPUProfile()
			if err := cpu.Close(); err != nil {
				errs = append(errs, fmt.Errorf("--cpuprofile: %w", err))
			}
		}
		if allocsFile != "" {
			runtime.GC() // the profile holds what the last collection saw
			f, err := os.Create(allocsFile)
			if err != nil {
				return errors.Join(append(errs, fmt.Errorf("--memprofile: %w", err))...)
			}
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				errs = append(errs, fmt.Errorf("--memprofile: %w", err))
			}
			if err := f.Close(); err != nil {
				errs = append(errs, fmt.Errorf("--memprofile: %w", err))
			}
		}
		return errors.Join(errs...)
	}, nil
}

// trace runs cmdArgs under the tracer and returns its exit status. The
// events take the agent's pipeline: audit, detector, response ladder, and
// this command's output as a sink.
func trace(o traceOpts, cmdArgs []string) (int, error) {
	path, err := exec.LookPath(cmdArgs[0])
	if err != nil {
		return 0, fmt.Errorf("command %q: %w", cmdArgs[0], err)
	}
	// Load the tracer first: its errors (root, BTF, kernel) say what to do.
	mon, err := bpf.Load(bpf.Config{RingBytes: o.ringSize})
	if err != nil {
		return 0, err
	}
	defer mon.Close()
	cg, err := bpf.NewCgroup(fmt.Sprintf("vigil-trace-%d", os.Getpid()))
	if err != nil {
		return 0, err
	}
	defer cg.Remove()
	if err := mon.Track(cg.ID); err != nil {
		return 0, err
	}

	var w io.Writer = os.Stdout
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return 0, fmt.Errorf("--out: %w", err)
		}
		defer f.Close()
		w = f
	}
	out := newEventWriter(w, o.json, o.quiet)
	root, err := bpf.CgroupRoot()
	if err != nil {
		return 0, err
	}
	tc := agent.TraceConfig{CgroupID: cg.ID, CgroupDir: cg.Path, CgroupRoot: root, NoDetect: o.noDetect,
		Detect: pipeline.Detection{RuleFiles: o.policy, Model: o.model}, AuditDir: o.auditDir,
		Mode: annotations.Mode(o.mode), ResponseFile: o.response, Sinks: []pipeline.Sink{out}, Log: quietLogger(),
		Counters: mon.Counters}
	if annotations.Mode(o.mode) == annotations.ModeEnforce {
		// deny-connect in a trace: a guard of its own, gone with the run.
		if g, err := bpf.LoadGuard(""); err == nil {
			defer g.Close()
			tc.Guard = g
		}
	}
	run, err := agent.NewTraceRun(tc)
	if err != nil {
		return 0, err
	}
	defer run.Close()

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- mon.Consume(ctx, bpf.Consumer{Event: run.P.Event, EndBatch: run.P.EndBatch, String: run.P.String, Slot: run.P.Slot})
	}()

	cmd := exec.Command(path, cmdArgs[1:]...)
	cmd.Args[0] = cmdArgs[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = cg.SysProcAttr()
	// Signals for the traced command: forward, do not die of them.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		stop()
		<-done
		return 0, fmt.Errorf("start %s: %w", cmdArgs[0], err)
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	stopSampling := run.Sample(250 * time.Millisecond)
	waitErr := cmd.Wait()
	stopSampling()
	status := exitStatus(cmd.ProcessState, waitErr)
	// What CMD left running in the cgroup ends with it. The cgroup itself
	// stays until the counters are read: they live in its local storage.
	if err := cg.Kill(); err != nil {
		fmt.Fprintf(os.Stderr, "vigil: trace: %v\n", err)
	}
	stop()
	if err := <-done; err != nil {
		return status, err
	}
	counters, err := mon.Counters(cg.ID)
	if err != nil {
		return status, err
	}
	if err := run.Finish(counters, fmt.Sprintf("vigil trace %q exited %d; seen %d emitted %d dropped %d",
		cmdArgs, status, counters.Seen, counters.Emitted, counters.Dropped)); err != nil {
		return status, err
	}
	if err := out.finish(counters); err != nil {
		return status, err
	}
	if o.summary {
		out.printSummary(os.Stderr, counters, !o.noDetect)
	}
	return status, nil
}

func exitStatus(ps *os.ProcessState, err error) int {
	if ps == nil {
		return 1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if err != nil && ps.ExitCode() < 0 {
		return 1
	}
	return ps.ExitCode()
}

// eventWriter is the trace's sink: it streams events as text or JSON
// lines, verdicts, actions and gaps, and counts events per syscall. It
// flushes at least every flushEvery so the stream stays live. The
// pipeline's worker calls it.
type eventWriter struct {
	w         *bufio.Writer
	json      bool
	quiet     bool
	buf       []byte
	counts    [1024]uint64
	received  uint64
	verdicts  int
	actions   int
	started   bool   // the first successful execve (CMD's) was seen
	preExec   uint64 // records of vigil's own fork before that execve
	lastFlush time.Time
	err       error
}

const flushEvery = 100 * time.Millisecond

var execveNr = func() int32 { nr, _ := event.SyscallNr("execve"); return int32(nr) }()

func newEventWriter(w io.Writer, json, quiet bool) *eventWriter {
	return &eventWriter{w: bufio.NewWriterSize(w, 256<<10), json: json, quiet: quiet, buf: make([]byte, 0, 1024)}
}

// Event writes one event.
func (o *eventWriter) Event(ev *event.Event) {
	o.received++
	if ev.Nr >= 0 && int(ev.Nr) < len(o.counts) {
		o.counts[ev.Nr]++
	}
	if !o.started {
		// Between clone and execve the child is vigil's fork, resetting
		// signals and fds: counted, not shown.
		if ev.Nr != execveNr || ev.Ret != 0 {
			o.preExec++
			return
		}
		o.started = true
	}
	if o.quiet || o.err != nil {
		return
	}
	if o.json {
		o.buf = ev.AppendJSON(o.buf[:0])
	} else {
		o.buf = appendText(o.buf[:0], ev)
	}
	o.buf = append(o.buf, '\n')
	if _, err := o.w.Write(o.buf); err != nil {
		o.err = err
		return
	}
	if now := time.Now(); now.Sub(o.lastFlush) >= flushEvery {
		o.lastFlush = now
		o.err = o.w.Flush()
	}
}

// Verdict writes one verdict into the stream, at once.
func (o *eventWriter) Verdict(v *detector.Verdict) {
	o.verdicts++
	if o.json {
		o.object("verdict", v)
		return
	}
	line := fmt.Sprintf("!! verdict %s %s rule=%s pid=%d comm=%s: %s", v.Severity, v.Class, v.Rule, v.PID, v.Comm, v.Message)
	if len(v.Actions) > 0 {
		line += fmt.Sprintf(" [%s: %s]", v.Mode, strings.Join(v.Actions, ", "))
	} else if len(v.WouldAct) > 0 {
		line += fmt.Sprintf(" [%s: would %s]", v.Mode, strings.Join(v.WouldAct, ", "))
	}
	o.text(event.Printable(line)) // comm and message are the container's
}

// Action writes one action taken or undone.
func (o *eventWriter) Action(r control.Record) {
	o.actions++
	if o.json {
		o.object("action", r)
		return
	}
	what := "in force"
	if r.Undo {
		what = "undone"
	}
	if r.Error != "" {
		what = "failed: " + r.Error
	}
	o.text(event.Printable(fmt.Sprintf("!! action %s %s (%s) after %v", r.Action, what, r.Detail, r.Latency)))
}

// Gap writes a run of lost records.
func (o *eventWriter) Gap(g pipeline.Gap) {
	if o.json {
		o.object("gap", g)
		return
	}
	o.text(fmt.Sprintf("!! lost %d records from seq %d (ring full)", g.Count, g.FromSeq))
}

func (o *eventWriter) object(key string, v any) {
	if o.err != nil {
		return
	}
	b, err := json.Marshal(map[string]any{key: v})
	if err != nil {
		o.err = err
		return
	}
	o.text(string(b))
}

func (o *eventWriter) text(line string) {
	if o.err != nil {
		return
	}
	if _, o.err = o.w.WriteString(line + "\n"); o.err == nil {
		o.err = o.w.Flush()
	}
}

// Flush writes what is buffered.
func (o *eventWriter) Flush() error {
	if o.err != nil {
		return o.err
	}
	o.err = o.w.Flush()
	return o.err
}

// finish writes the JSON summary line (with --json) and flushes.
func (o *eventWriter) finish(c bpf.Counters) error {
	if o.json && !o.quiet && o.err == nil {
		b := fmt.Appendf(nil, `{"summary":{"seen":%d,"emitted":%d,"dropped":%d,"received":%d,"pre_exec":%d,"verdicts":%d,"syscalls":{`, c.Seen, c.Emitted, c.Dropped, o.received, o.preExec, o.verdicts)
		for i, s := range o.sorted() {
			if i > 0 {
				b = append(b, ',')
			}
			b = fmt.Appendf(b, "%q:%d", s.name, s.n)
		}
		b = append(b, "}}}\n"...)
		_, o.err = o.w.Write(b)
	}
	if err := o.w.Flush(); err != nil && o.err == nil {
		o.err = err
	}
	if o.err != nil {
		return fmt.Errorf("write events: %w", o.err)
	}
	return nil
}

type sysCount struct {
	name string
	n    uint64
}

func (o *eventWriter) sorted() []sysCount {
	var out []sysCount
	for nr, n := range o.counts {
		if n > 0 {
			out = append(out, sysCount{event.SyscallName(nr), n})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].n != out[j].n {
			return out[i].n > out[j].n
		}
		return out[i].name < out[j].name
	})
	return out
}

func (o *eventWriter) printSummary(w io.Writer, c bpf.Counters, detect bool) {
	fmt.Fprintf(w, "\n%-20s %10s\n", "syscall", "count")
	for _, s := range o.sorted() {
		fmt.Fprintf(w, "%-20s %10d\n", s.name, s.n)
	}
	ok := "ok"
	if c.Seen != c.Emitted+c.Dropped || o.received != c.Emitted {
		ok = "MISMATCH"
	}
	fmt.Fprintf(w, "\nseen %d = emitted %d + dropped %d; received %d (%s)\n", c.Seen, c.Emitted, c.Dropped, o.received, ok)
	if detect {
		fmt.Fprintf(w, "verdicts: %d, actions: %d\n", o.verdicts, o.actions)
	}
	if ru, ok := selfUsage(); ok {
		fmt.Fprintf(w, "vigil's own CPU: user %.3fs, sys %.3fs, %d context switches (start-up included)\n",
			time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds(), ru.Nvcsw+ru.Nivcsw)
	}
	if o.preExec > 0 {
		fmt.Fprintf(w, "(%d syscalls of vigil's fork before CMD's execve are counted, not shown)\n", o.preExec)
	}
}

// selfUsage is what vigil's process used so far (all its threads, not the
// traced command's): CPU time and context switches.
func selfUsage() (syscall.Rusage, bool) {
	var ru syscall.Rusage
	err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru, err == nil
}

// appendText is the human form of an event:
// 12:00:00.123456 cat[41/41] openat(0xffffff9c, 0x7ffd2a1b, 0x0, 0x0) = -2 ENOENT path="/x"
// What the traced program controls is escaped: paths and argv are quoted,
// comm and addresses made printable, so each event stays one line.
func appendText(b []byte, ev *event.Event) []byte {
	b = ev.Time.AppendFormat(b, "15:04:05.000000")
	b = append(b, ' ')
	b = event.AppendPrintable(b, ev.Comm)
	b = append(b, '[')
	b = strconv.AppendUint(b, uint64(ev.PID), 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(ev.TID), 10)
	b = append(b, "] "...)
	b = append(b, ev.Name()...)
	b = append(b, '(')
	for i, a := range ev.Args {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, "0x"...)
		b = strconv.AppendUint(b, a, 16)
	}
	b = append(b, ')')
	if ev.Flags&event.NoReturn != 0 {
		b = append(b, " = ?"...)
	} else {
		b = append(b, " = "...)
		b = strconv.AppendInt(b, ev.Ret, 10)
		if n := ev.Errno(); n != 0 {
			b = append(b, ' ')
			b = append(b, event.ErrnoName(n)...)
		}
	}
	if ev.Path != "" {
		b = append(b, " path="...)
		b = strconv.AppendQuote(b, ev.Path)
	}
	if ev.Path2 != "" {
		b = append(b, " path2="...)
		b = strconv.AppendQuote(b, ev.Path2)
	}
	if len(ev.Argv) > 0 {
		b = append(b, " argv=["...)
		for i, a := range ev.Argv {
			if i > 0 {
				b = append(b, ' ')
			}
			b = strconv.AppendQuote(b, a)
		}
		b = append(b, ']')
	}
	if !ev.Addr.IsZero() {
		b = append(b, " addr="...)
		b = event.AppendPrintable(b, ev.Addr.String())
	}
	if ev.Flags&event.Truncated != 0 {
		b = append(b, " (truncated)"...)
	}
	return b
}

// quietLogger logs warnings and errors of the trace's parts to standard
// error.
func quietLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	l.SetLevel(logrus.WarnLevel)
	return l
}
