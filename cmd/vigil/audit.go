package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

func init() {
	register("audit", "verify, show and export the tamper-evident audit log", runAudit)
	register("replay", "rebuild a container's timeline from the audit log and re-run the detector on it", runReplay)
}

const auditUsage = `Usage: vigil audit SUBCOMMAND [OPTIONS] DIR

The audit log (written by the agent, or by 'vigil trace --audit DIR') holds
every syscall event, tracer drop, verdict, action, container lifecycle event,
policy change and agent start/stop of a node, in segments that are
hash-chained (SHA-256) and signed with the node's ed25519 key.

Subcommands:
  verify [--key FILE] DIR      prove the log intact, or name the first bad segment/record and why
  show   [FILTERS] DIR         print records as text (or --json lines)
  export [FILTERS] DIR         JSON lines for log shippers (one object per record)
  bench  [OPTIONS]             the writer's sustained events/s, CPU and bytes per event (JSON)

Filters (show, export):
  --container ID   container id (prefix)      --pod NAME     pod name (or namespace/name)
  --cgroup N       cgroup id                  --kind K,...   event, gap, verdict, action,
  --since T        at or after T              --until T      lifecycle, policy, agent, loss, sample
  --syscall S,...  events of these syscalls   --verdicts     only verdicts and actions
  --from-index N   records numbered N or more (a shipper resumes after the last index it sent)
  T is RFC 3339 (2026-11-28T21:00:00Z), unix seconds, or a duration ago (15m).

Examples:
  vigil audit verify /var/lib/vigil/audit
  vigil audit show --pod shop --syscall execve,connect /var/lib/vigil/audit
  vigil audit export --since 1h /var/lib/vigil/audit | vector --config ship.toml
  vigil replay --container 3f2a --detect --audit /var/lib/vigil/audit

Run 'vigil audit SUBCOMMAND --help' for its options.
`

func runAudit(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Print(auditUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub := map[string]func([]string, io.Writer) int{"verify": auditVerify, "show": auditShow, "export": auditExport, "bench": auditBench}
	run, ok := sub[args[0]]
	if !ok {
		return fail("audit: unknown subcommand %q: use verify, show, export or bench (see 'vigil audit --help')", args[0])
	}
	return run(args[1:], os.Stdout)
}

func runReplay(args []string) int { return replayMain(args, os.Stdout) }

// newAuditFlags makes a FlagSet whose --help prints usage, an example and
// the options.
func newAuditFlags(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseAuditFlags parses flags placed before or after the positional
// arguments and returns the positional ones; done is true for --help
// (status 0) and errors (status 2).
func parseAuditFlags(fs *flag.FlagSet, args []string) (pos []string, status int, done bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, true
			}
			return nil, 2, true
		}
		if fs.NArg() == 0 {
			return pos, 0, false
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// auditList is a repeatable string flag.
type auditList []string

func (l *auditList) String() string     { return strings.Join(*l, ",") }
func (l *auditList) Set(v string) error { *l = append(*l, v); return nil }

const verifyUsage = `Usage: vigil audit verify [--key FILE] [--json] DIR

Checks every segment of the audit log in DIR: each frame's SHA-256 hash and
ed25519 signature, the hash chain across frames and segments, contiguous
record numbers, segment seals, and the retention anchor. Prints OK and the
chain's head hash, or names the first bad segment/record and why
(modified, deleted, reordered, truncated, wrong-key). Exit status: 0 intact,
1 not intact or unreadable.

The key may be the node's private key or its public key (.pub): verifying
needs only the public key, so an auditor cannot forge what they check.

Verifying a log that is being written, use --live: the frame being written
at the very end is then not reported as a truncation. The chain cannot show
a cut of the newest records at a frame boundary (it looks like a writer that
stopped there): keep the head hash a verify prints, or the agent's published
head, elsewhere, and give it with --head to prove nothing after it was cut.

Example:
  vigil audit verify --key /etc/vigil/audit.pub /var/lib/vigil/audit

Options:
`

func auditVerify(args []string, out io.Writer) int {
	fs := newAuditFlags("audit verify", verifyUsage)
	key := fs.String("key", "", "the node's key `FILE` (private or .pub); default: audit.key beside DIR")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	live := fs.Bool("live", false, "the log is being written: accept a partly written frame at its very end")
	var oldKeys auditList
	fs.Var(&oldKeys, "old-key", "an earlier node key `FILE` (.pub) whose segments are accepted too, after a key change (repeatable)")
	head := fs.String("head", "", "a head `HASH` published earlier (a past verify's head, or the agent's): the chain must pass through it")
	pos, st, done := parseAuditFlags(fs, args)
	if done {
		return st
	}
	if len(pos) != 1 {
		return fail("audit verify: give exactly one DIR (the audit log directory), got %d arguments", len(pos))
	}
	rep, err := audit.VerifyWith(pos[0], audit.VerifyOptions{KeyFile: *key, Live: *live, Head: *head, OldKeys: oldKeys})
	var p *audit.Problem
	if err != nil && !errors.As(err, &p) {
		if errors.Is(err, iofs.ErrNotExist) && *key == "" {
			return fail("audit verify: %v (give the node's key, private or .pub, with --key FILE)", err)
		}
		return fail("audit verify: %v", err)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintln(out, string(b))
	} else {
		printReport(out, &rep)
	}
	if p != nil {
		return 1
	}
	return 0
}

func printReport(w io.Writer, r *audit.Report) {
	if r.Problem != nil {
		fmt.Fprintf(w, "audit log %s: NOT INTACT\n  %s\n", r.Dir, r.Problem.Error())
		fmt.Fprintf(w, "  checked before it: %d segments, %d batches, %d records; key %s\n", r.Segments, r.Batches, r.Records, r.KeyID)
		return
	}
	fmt.Fprintf(w, "audit log %s: OK\n", r.Dir)
	fmt.Fprintf(w, "  segments %d..%d (%d), %d batches, records %d..%d (%d)\n", r.FirstSegment, r.LastSegment, r.Segments, r.Batches, r.FirstIndex, r.LastIndex, r.Records)
	fmt.Fprintf(w, "  key %s, head %s\n", strings.Join(r.KeyIDs, " + "), r.Head)
	if r.Anchored {
		fmt.Fprintf(w, "  starts at a signed retention anchor (older segments were deleted by retention)\n")
	}
	if r.Open {
		fmt.Fprintf(w, "  the last segment is open: a writer is running, or crashed and has not restarted (its next start seals it)\n")
	}
	if r.TornTail > 0 {
		fmt.Fprintf(w, "  the last %d bytes are a frame being written (--live)\n", r.TornTail)
	}
	if r.LossRecords > 0 {
		fmt.Fprintf(w, "  the writer recorded %d losses (%d records counted; see 'vigil audit show --kind loss')\n", r.LossRecords, r.LostRecords)
	}
}

// filterFlags are the record filters of show, export and replay.
type filterFlags struct {
	container, pod, since, until, syscalls, kinds string
	cgroup, fromIndex                             uint64
	verdicts                                      bool
}

func (f *filterFlags) add(fs *flag.FlagSet, all bool) {
	fs.StringVar(&f.container, "container", "", "only records of the container `ID` (prefix)")
	fs.Uint64Var(&f.cgroup, "cgroup", 0, "only records of the cgroup `N`")
	if !all {
		return
	}
	fs.StringVar(&f.pod, "pod", "", "only records of containers of pod `NAME` (or NAMESPACE/NAME)")
	fs.StringVar(&f.since, "since", "", "records at or after `T` (RFC 3339, unix seconds, or a duration ago such as 15m)")
	fs.StringVar(&f.until, "until", "", "records before `T`")
	fs.StringVar(&f.syscalls, "syscall", "", "only events of these syscalls (`NAMES`, comma-separated); with --kind, records of the other kinds named pass too")
	fs.StringVar(&f.kinds, "kind", "", "only these record `KINDS`: "+strings.Join(audit.KindNames(), ", "))
	fs.BoolVar(&f.verdicts, "verdicts", false, "only verdicts and actions")
	fs.Uint64Var(&f.fromIndex, "from-index", 0, "only records numbered `N` or more (resume an export after the last index shipped)")
}

// build turns the flags into an audit.Filter and a pod matcher.
func (f *filterFlags) build(now time.Time) (audit.Filter, *podMatcher, error) {
	var flt audit.Filter
	flt.ContainerID, flt.CgroupID, flt.FromIndex = f.container, f.cgroup, f.fromIndex
	var err error
	if flt.Since, err = parseWhen("since", f.since, now); err != nil {
		return flt, nil, err
	}
	if flt.Until, err = parseWhen("until", f.until, now); err != nil {
		return flt, nil, err
	}
	for _, s := range splitList(f.syscalls) {
		nr, ok := event.SyscallNr(s)
		if !ok {
			return flt, nil, fmt.Errorf("--syscall %q: unknown syscall in the %s ABI", s, event.NativeABI())
		}
		flt.Syscalls = append(flt.Syscalls, int32(nr))
	}
	for _, s := range splitList(f.kinds) {
		k, err := audit.ParseKind(s)
		if err != nil {
			return flt, nil, fmt.Errorf("--kind: %w", err)
		}
		flt.Kinds = append(flt.Kinds, k)
	}
	if f.verdicts {
		if len(flt.Kinds) > 0 {
			return flt, nil, errors.New("--verdicts and --kind: give one of them")
		}
		flt.Kinds = []audit.Kind{audit.KindVerdict, audit.KindAction}
	}
	if len(flt.Syscalls) > 0 && len(flt.Kinds) == 0 {
		flt.Kinds = []audit.Kind{audit.KindEvent} // --syscall alone: just those events
	}
	var pm *podMatcher
	if f.pod != "" {
		pm = &podMatcher{want: f.pod, pods: map[string]string{}}
	}
	return flt, pm, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseWhen reads a time flag: RFC 3339, unix seconds or a duration ago.
func parseWhen(name, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Unix(0, int64(secs*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("--%s %q: want an RFC 3339 time (2026-11-28T21:00:00Z), unix seconds, or a duration ago (15m)", name, s)
}

// podMatcher selects records of a pod. Events carry their container's pod;
// other records are matched through the container ids seen in events,
// lifecycle records and verdicts before them.
type podMatcher struct {
	want string
	pods map[string]string // container id -> namespace/pod
}

func (p *podMatcher) match(r *audit.Record) bool {
	if r.Event != nil && r.Event.Container != nil {
		c := r.Event.Container
		p.pods[c.ID] = c.Namespace + "/" + c.Pod
	} else if r.Kind == audit.KindLifecycle || r.Kind == audit.KindVerdict {
		var b struct {
			Pod, Namespace string
			Container      *event.Container
		}
		if json.Unmarshal(r.Body, &b) == nil {
			if b.Container != nil {
				b.Pod, b.Namespace = b.Container.Pod, b.Container.Namespace
			}
			if b.Pod != "" && r.ContainerID != "" {
				p.pods[r.ContainerID] = b.Namespace + "/" + b.Pod
			}
		}
	}
	got := p.pods[r.ContainerID]
	if got == "" {
		return false
	}
	if strings.Contains(p.want, "/") {
		return got == p.want
	}
	_, name, _ := strings.Cut(got, "/")
	return name == p.want
}

const showUsage = `Usage: vigil audit show [FILTERS] [--json] [--limit N] DIR

Prints the records of the audit log in DIR that the filters select, one line
each: time, record number, container, per-container sequence number, kind
and what happened (the syscall with its path/argv/address and result, the
verdict's severity, rule and message, ...). With --json the lines are the
export format.

Example:
  vigil audit show --container 3f2a --syscall openat,execve /var/lib/vigil/audit
  vigil audit show --verdicts --since 1h /var/lib/vigil/audit

Options:
`

func auditShow(args []string, out io.Writer) int {
	fs := newAuditFlags("audit show", showUsage)
	var ff filterFlags
	ff.add(fs, true)
	asJSON := fs.Bool("json", false, "print JSON lines (the export format) instead of text")
	limit := fs.Int("limit", 0, "stop after `N` records (0: no limit)")
	pos, st, done := parseAuditFlags(fs, args)
	if done {
		return st
	}
	if len(pos) != 1 {
		return fail("audit show: give exactly one DIR (the audit log directory), got %d arguments", len(pos))
	}
	if *asJSON {
		return exportRecords("audit show", pos[0], &ff, out, *limit, "")
	}
	flt, pm, err := ff.build(time.Now())
	if err != nil {
		return fail("audit show: %v", err)
	}
	w := bufio.NewWriter(out)
	defer w.Flush()
	n := 0
	err = audit.Scan(pos[0], &flt, func(r *audit.Record) error {
		if pm != nil && !pm.match(r) {
			return nil
		}
		w.WriteString(formatRecord(r))
		w.WriteByte('\n')
		n++
		if *limit > 0 && n >= *limit {
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		w.Flush()
		return fail("audit show: %v", err)
	}
	return 0
}

var errStop = errors.New("stop")

// formatRecord is the text line of show.
func formatRecord(r *audit.Record) string {
	var b strings.Builder
	b.WriteString(r.Time.UTC().Format("2006-01-02T15:04:05.000000Z"))
	fmt.Fprintf(&b, " #%d %s cs=%d %s ", r.Index, shortID(r.ContainerID, r.CgroupID), r.CSeq, r.Kind)
	switch r.Kind {
	case audit.KindEvent:
		b.WriteString(formatEvent(r.Event))
	case audit.KindVerdict:
		var v detector.Verdict
		if err := json.Unmarshal(r.Body, &v); err == nil && v.Rule != "" {
			fmt.Fprintf(&b, "%s %s %s pid %d %s: %s [%s]", v.Severity, v.Class, v.Rule, v.PID, v.Comm, v.Message, v.ID)
		} else {
			b.Write(r.Body)
		}
	default:
		b.Write(r.Body)
	}
	return b.String()
}

func shortID(id string, cg uint64) string {
	if id == "" {
		return "cgroup:" + strconv.FormatUint(cg, 10)
	}
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// formatEvent is one syscall as text: pid/tid comm name(args) = ret.
func formatEvent(ev *event.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d", ev.PID)
	if ev.TID != ev.PID {
		fmt.Fprintf(&b, "/%d", ev.TID)
	}
	fmt.Fprintf(&b, " %s %s(", ev.Comm, ev.Name())
	var parts []string
	if ev.Path != "" {
		parts = append(parts, strconv.Quote(ev.Path))
	}
	if ev.Path2 != "" {
		parts = append(parts, strconv.Quote(ev.Path2))
	}
	if len(ev.Argv) > 0 {
		q := make([]string, len(ev.Argv))
		for i, a := range ev.Argv {
			q[i] = strconv.Quote(a)
		}
		parts = append(parts, "["+strings.Join(q, " ")+"]")
	}
	if !ev.Addr.IsZero() {
		parts = append(parts, ev.Addr.String())
	}
	if len(parts) == 0 {
		n := 6
		for n > 0 && ev.Args[n-1] == 0 {
			n--
		}
		for _, a := range ev.Args[:min(n, 3)] {
			if a < 1<<20 {
				parts = append(parts, strconv.FormatUint(a, 10))
			} else {
				parts = append(parts, "0x"+strconv.FormatUint(a, 16))
			}
		}
		if n > 3 {
			parts = append(parts, "...")
		}
	}
	b.WriteString(strings.Join(parts, ", "))
	b.WriteString(")")
	switch {
	case ev.Flags&event.NoReturn != 0:
		b.WriteString(" (no return)")
	case ev.Errno() != 0:
		fmt.Fprintf(&b, " = %d %s", ev.Ret, event.ErrnoName(ev.Errno()))
	default:
		fmt.Fprintf(&b, " = %d", ev.Ret)
	}
	if ev.Flags&event.Lost != 0 {
		fmt.Fprintf(&b, " [lost %d]", ev.Count)
	} else if ev.Flags&event.Truncated != 0 {
		b.WriteString(" [truncated]")
	}
	fmt.Fprintf(&b, " seq %d", ev.Seq)
	return b.String()
}

const exportUsage = `Usage: vigil audit export [FILTERS] [--out FILE] [--node NAME] DIR

Writes the records of the audit log in DIR that the filters select as JSON
lines, one object per record, for log shippers (Vector, Fluent Bit,
Filebeat, Promtail read them as they are):

  {"time":"2026-11-28T21:00:00.123456789Z","node":"n1","index":42,"kind":"event",
   "cgroup":1234,"container":"3f2a...","cseq":17,"segment":3,"event":{...}}
  {"time":"...","node":"n1","index":43,"kind":"verdict",...,"body":{...}}

"event" is the event JSON of 'vigil trace --json'; "body" is the record's
JSON body (a detector verdict, an action, lifecycle metadata, a gap
{"from_seq","count"}, a loss {"reason","records"}, ...). "index" counts the
node's records from 1 without gaps and "cseq" a container's records, so a
consumer can tell a gap in what it received.

With --follow the export keeps running and writes new records as the
writer adds them (a log shipper can read its standard output).

Example:
  vigil audit export --since 24h --out /var/log/vigil/audit.jsonl /var/lib/vigil/audit
  vigil audit export --follow 1s --kind verdict,action /var/lib/vigil/audit | fluent-bit -i stdin ...

Options:
`

func auditExport(args []string, out io.Writer) int {
	fs := newAuditFlags("audit export", exportUsage)
	var ff filterFlags
	ff.add(fs, true)
	outPath := fs.String("out", "", "write to `FILE` instead of standard output")
	host, _ := os.Hostname()
	node := fs.String("node", host, "the node `NAME` put in every line")
	limit := fs.Int("limit", 0, "stop after `N` records (0: no limit)")
	follow := fs.Duration("follow", 0, "keep running: after the last record, look for new ones every `INTERVAL` (e.g. 1s)")
	pos, st, done := parseAuditFlags(fs, args)
	if done {
		return st
	}
	if len(pos) != 1 {
		return fail("audit export: give exactly one DIR (the audit log directory), got %d arguments", len(pos))
	}
	if *follow < 0 {
		return fail("audit export: --follow %s: want a positive interval such as 1s", *follow)
	}
	if *outPath != "" && *outPath != "-" {
		f, err := os.Create(*outPath)
		if err != nil {
			return fail("audit export: %v", err)
		}
		defer f.Close()
		out = f
	}
	if *follow > 0 {
		return exportFollow(pos[0], &ff, out, *limit, *node, *follow)
	}
	return exportRecords("audit export", pos[0], &ff, out, *limit, *node)
}

func exportRecords(cmd, dir string, ff *filterFlags, out io.Writer, limit int, node string) int {
	flt, pm, err := ff.build(time.Now())
	if err != nil {
		return fail("%s: %v", cmd, err)
	}
	if _, err := exportPass(dir, &flt, pm, out, limit, node); err != nil {
		return fail("%s: %v", cmd, err)
	}
	return 0
}

// exportFollow exports what is there, then polls for new records (from
// the index after the last one seen) until the process is stopped.
func exportFollow(dir string, ff *filterFlags, out io.Writer, limit int, node string, every time.Duration) int {
	flt, pm, err := ff.build(time.Now())
	if err != nil {
		return fail("audit export: %v", err)
	}
	total := 0
	for {
		n, last, err := exportPassLast(dir, &flt, pm, out, limit-total, node)
		if err != nil {
			return fail("audit export: %v", err)
		}
		total += n
		if limit > 0 && total >= limit {
			return 0
		}
		if last > 0 {
			flt.FromIndex = last + 1
		}
		time.Sleep(every)
	}
}

func exportPass(dir string, flt *audit.Filter, pm *podMatcher, out io.Writer, limit int, node string) (int, error) {
	n, _, err := exportPassLast(dir, flt, pm, out, limit, node)
	return n, err
}

// exportPassLast writes the selected records once and returns how many and
// the index of the last record the filter passed (a follow-up pass starts
// after it).
func exportPassLast(dir string, flt *audit.Filter, pm *podMatcher, out io.Writer, limit int, node string) (int, uint64, error) {
	w := bufio.NewWriterSize(out, 1<<16)
	var line []byte
	n := 0
	var last uint64
	err := audit.Scan(dir, flt, func(r *audit.Record) error {
		last = r.Index
		if pm != nil && !pm.match(r) {
			return nil
		}
		line = appendExport(line[:0], r, node)
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
		n++
		if limit > 0 && n >= limit {
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		w.Flush()
		return n, last, err
	}
	if err := w.Flush(); err != nil {
		return n, last, fmt.Errorf("write: %w", err)
	}
	return n, last, nil
}

// appendExport appends the export JSON object of r.
func appendExport(b []byte, r *audit.Record, node string) []byte {
	b = append(b, `{"time":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if node != "" {
		q, _ := json.Marshal(node)
		b = append(b, `,"node":`...)
		b = append(b, q...)
	}
	b = append(b, `,"index":`...)
	b = strconv.AppendUint(b, r.Index, 10)
	b = append(b, `,"kind":"`...)
	b = append(b, r.Kind.String()...)
	b = append(b, `","cgroup":`...)
	b = strconv.AppendUint(b, r.CgroupID, 10)
	if r.ContainerID != "" {
		c, _ := json.Marshal(r.ContainerID)
		b = append(b, `,"container":`...)
		b = append(b, c...)
	}
	b = append(b, `,"cseq":`...)
	b = strconv.AppendUint(b, r.CSeq, 10)
	b = append(b, `,"segment":`...)
	b = strconv.AppendUint(b, r.Segment, 10)
	if r.Event != nil {
		b = append(b, `,"event":`...)
		b = r.Event.AppendJSON(b)
	} else if len(r.Body) > 0 {
		b = append(b, `,"body":`...)
		b = append(b, r.Body...)
	}
	return append(b, '}')
}

const auditBenchUsage = `Usage: vigil audit bench [--events N] [--compression s2|zstd|none] [--fsync batch|never|DURATION] [--noisy] [--dir DIR]

Measures the audit writer alone: appends N synthetic events (a realistic
mix: openat with paths, getppid, read, connect with addresses, execve with
argv, over three containers) to a new log with the real batching,
compression, hashing, signing, writes and fsync, then prints one JSON object:
events/s sustained, CPU ns per event (the whole process), bytes per event on
disk, allocations per event. --noisy randomizes pointers, results, timing
and file names (compresses worse). The log goes to a temporary directory on
the same file system as --dir (default: the system temp dir) and is removed.

Example:
  vigil audit bench --events 5000000 --fsync batch
  vigil audit bench --compression zstd --noisy --dir /var/lib/vigil

Options:
`

func auditBench(args []string, out io.Writer) int {
	fs := newAuditFlags("audit bench", auditBenchUsage)
	n := fs.Int("events", 3_000_000, "append `N` events")
	comp := fs.String("compression", "s2", "batch compression: `s2`, zstd or none")
	fsync := fs.String("fsync", "batch", "fsync policy: `batch`, never or a duration such as 100ms")
	noisy := fs.Bool("noisy", false, "randomize pointers, results, timing and file names")
	batch := fs.Int("batch", 0, "records per batch (0: the default, 4096)")
	dir := fs.String("dir", "", "make the temporary log under `DIR` (its file system is measured)")
	pos, st, done := parseAuditFlags(fs, args)
	if done {
		return st
	}
	if len(pos) > 0 {
		return fail("audit bench: unexpected argument %q", pos[0])
	}
	if *n <= 0 {
		return fail("audit bench: --events %d: want a positive count", *n)
	}
	fp, err := audit.ParseFsync(*fsync)
	if err != nil {
		return fail("audit bench: --%v", err)
	}
	tmp, err := os.MkdirTemp(*dir, "vigil-audit-bench-")
	if err != nil {
		return fail("audit bench: %v", err)
	}
	defer os.RemoveAll(tmp)
	r, err := audit.Bench(audit.Options{Dir: filepath.Join(tmp, "log"), KeyFile: filepath.Join(tmp, "bench.key"),
		Compression: audit.Compression(*comp), Fsync: fp, BatchRecords: *batch}, *n, *noisy)
	if err != nil {
		return fail("audit bench: %v", err)
	}
	b, _ := json.Marshal(r)
	fmt.Fprintln(out, string(b))
	return 0
}
