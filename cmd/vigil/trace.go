package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
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

The detector runs on every event with the default rules (plus --policy
files and a --model); each verdict is written into the stream, as a line
"!! verdict ..." in text or {"verdict":{...}} with --json.

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
}

func runTrace(args []string) int {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	var o traceOpts
	fs.BoolVar(&o.json, "json", false, "write events as JSON lines (see the event contract in the README)")
	fs.StringVar(&o.out, "out", "", "write events to `FILE` instead of standard output")
	fs.BoolVar(&o.quiet, "quiet", false, "write no events, only the summary")
	fs.IntVar(&o.ringSize, "ring-size", 16<<20, "ring buffer size in `BYTES` (a power of two)")
	fs.BoolVar(&o.summary, "summary", true, "print per-syscall counts and counters at the end (to standard error)")
	fs.Var(&o.policy, "policy", "extra detection rule `FILE` (repeatable), on top of the default rules")
	fs.StringVar(&o.model, "model", "", "learned model `FILE` (from 'vigil detect train') to score the workload with")
	fs.BoolVar(&o.noDetect, "no-detect", false, "trace only: run no detector")
	fs.StringVar(&o.auditDir, "audit", "", "also write the run's audit log to `DIR` (verify with 'vigil audit verify DIR')")
	fs.Usage = usageFunc(fs, traceUsage)
	if status, done := parseFlags(fs, args); done {
		return status
	}
	cmdArgs := fs.Args()
	if len(cmdArgs) == 0 {
		fmt.Fprintln(os.Stderr, "vigil trace: no command given: use 'vigil trace [OPTIONS] -- CMD [ARG...]', for example 'vigil trace -- ls /tmp'")
		return 2
	}
	status, err := trace(o, cmdArgs)
	if err != nil {
		return fail("trace: %v", err)
	}
	return status
}

// trace runs cmdArgs under the tracer and returns its exit status.
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

	sink, err := newTraceSink(o, cg.ID)
	if err != nil {
		return 0, err
	}
	defer sink.close()

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
	out.sink = sink

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- mon.Run(ctx, out.write)
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
	stopSampling := out.sample(cg, 250*time.Millisecond)
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
	out.flushDetector()
	counters, err := mon.Counters(cg.ID)
	if err != nil {
		return status, err
	}
	if err := sink.finish(counters, cmdArgs, status); err != nil {
		return status, err
	}
	if err := out.finish(counters); err != nil {
		return status, err
	}
	if o.summary {
		out.printSummary(os.Stderr, counters)
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

// eventWriter streams events as text or JSON lines and counts them per
// syscall. It flushes at least every flushEvery so the stream stays live.
type eventWriter struct {
	mu        sync.Mutex // the event path and the sampler both write
	sink      *traceSink
	w         *bufio.Writer
	json      bool
	quiet     bool
	buf       []byte
	counts    [1024]uint64
	received  uint64
	verdicts  int
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

func (o *eventWriter) write(ev *event.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.received++
	o.sink.event(ev, o.writeVerdict)
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

// writeVerdict writes one verdict into the stream (o.mu held).
func (o *eventWriter) writeVerdict(v *detector.Verdict) {
	o.verdicts++
	if o.err != nil {
		return
	}
	if o.json {
		b, err := json.Marshal(struct {
			V *detector.Verdict `json:"verdict"`
		}{v})
		if err != nil {
			o.err = err
			return
		}
		o.buf = append(append(o.buf[:0], b...), '\n')
	} else {
		o.buf = fmt.Appendf(o.buf[:0], "!! verdict %s %s rule=%s pid=%d comm=%s: %s\n", v.Severity, v.Class, v.Rule, v.PID, v.Comm, v.Message)
	}
	_, o.err = o.w.Write(o.buf)
	if o.err == nil {
		o.err = o.w.Flush()
	}
}

// flushDetector closes the model's last partial window once the command
// ended, so a short run is scored too.
func (o *eventWriter) flushDetector() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sink.flush(o.writeVerdict)
}

// sample feeds the detector the cgroup's CPU use and thread count every
// interval (a busy loop makes few syscalls: it shows here, not in events).
func (o *eventWriter) sample(cg *bpf.Cgroup, every time.Duration) (stop func()) {
	if o.sink.eng == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				usage, threads, err := cg.Usage()
				if err != nil {
					continue
				}
				o.mu.Lock()
				o.sink.sample(detector.Sample{CgroupID: cg.ID, Time: now, CPUUsageNs: usage, Threads: threads}, o.writeVerdict)
				o.mu.Unlock()
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
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

func (o *eventWriter) printSummary(w io.Writer, c bpf.Counters) {
	fmt.Fprintf(w, "\n%-20s %10s\n", "syscall", "count")
	for _, s := range o.sorted() {
		fmt.Fprintf(w, "%-20s %10d\n", s.name, s.n)
	}
	ok := "ok"
	if c.Seen != c.Emitted+c.Dropped || o.received != c.Emitted {
		ok = "MISMATCH"
	}
	fmt.Fprintf(w, "\nseen %d = emitted %d + dropped %d; received %d (%s)\n", c.Seen, c.Emitted, c.Dropped, o.received, ok)
	if o.sink.eng != nil {
		fmt.Fprintf(w, "verdicts: %d\n", o.verdicts)
	}
	if o.preExec > 0 {
		fmt.Fprintf(w, "(%d syscalls of vigil's fork before CMD's execve are counted, not shown)\n", o.preExec)
	}
}

// appendText is the human form of an event:
// 12:00:00.123456 cat[41/41] openat(0xffffff9c, 0x7ffd2a1b, 0x0, 0x0) = -2 ENOENT path="/x"
func appendText(b []byte, ev *event.Event) []byte {
	b = ev.Time.AppendFormat(b, "15:04:05.000000")
	b = append(b, ' ')
	b = append(b, ev.Comm...)
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
		b = append(b, ev.Addr.String()...)
	}
	if ev.Flags&event.Truncated != 0 {
		b = append(b, " (truncated)"...)
	}
	return b
}
