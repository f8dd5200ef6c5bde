package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/replay"
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
  verify [--pubkey KEY] DIR    prove the log intact, or name the first bad segment/record and why
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
  vigil audit verify --pubkey /etc/vigil/audit.pub /var/lib/vigil/audit
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

const verifyUsage = `Usage: vigil audit verify [--pubkey KEY | --key FILE] [--head HEAD] [--json] DIR

Checks every segment of the audit log in DIR: each frame's SHA-256 hash and
ed25519 signature, the hash chain across frames and segments, contiguous
record numbers, segment seals, the retention anchor, and the signed head
file (DIR/head) that the writer rewrites after each batch reaches the disk:
the chain must pass through it, so records cut from the end are found.
Prints OK, the key's fingerprint and the chain's head, or names the first
bad segment/record and why (modified, deleted, reordered, truncated,
wrong-key). Exit status: 0 intact, 1 not intact or unreadable.

Pin the node's public key with --pubkey: the 64 hex digits the writer logs
when it opens the log, or a copy of its .pub kept away from the node.
Without it the key beside the log (DIR/../audit.key or .pub) is used, with
a warning: whoever can replace the log can replace that key too.

Verifying a log that is being written, use --live: the frame being written
at the very end is then not reported as a truncation. A signed head file
can be put back from an older copy after a cut to that point: give a head
published elsewhere (the agent's status and metrics, an anchor command)
with --head to prove nothing after it was cut.

Example:
  vigil audit verify --pubkey 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29 /var/lib/vigil/audit
  vigil audit verify --pubkey /etc/vigil/audit.pub --head head.json /var/lib/vigil/audit

Options:
`

func auditVerify(args []string, out io.Writer) int {
	fs := newAuditFlags("audit verify", verifyUsage)
	var kf keyFlags
	kf.add(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	live := fs.Bool("live", false, "the log is being written: accept a partly written frame at its very end")
	head := fs.String("head", "", "a head published earlier: its `HASH` (hex) or a FILE with its signed JSON (the agent's, an anchor's): the chain must pass through it")
	noHead := fs.Bool("no-head", false, "verify without the signed head file (a log written by a vigil without one): a cut of the newest records goes unnoticed")
	pos, st, done := parseAuditFlags(fs, args)
	if done {
		return st
	}
	if len(pos) != 1 {
		return fail("audit verify: give exactly one DIR (the audit log directory), got %d arguments", len(pos))
	}
	o := audit.VerifyOptions{KeyFile: kf.key, Live: *live, Head: *head, OldKeys: kf.oldKeys, NoHeadFile: *noHead}
	var err error
	if o.PubKey, err = kf.pinned(); err != nil {
		return fail("audit verify: %v", err)
	}
	if *head != "" && !isHex(*head) {
		b, err := os.ReadFile(*head)
		if err != nil {
			return fail("audit verify: --head %q: want a head hash (64 hex digits) or a file with a signed head: %v", *head, err)
		}
		o.Head = string(b)
	}
	rep, err := audit.VerifyWith(pos[0], o)
	var p *audit.Problem
	if err != nil && !errors.As(err, &p) {
		if errors.Is(err, iofs.ErrNotExist) && kf.key == "" && o.PubKey == nil {
			return fail("audit verify: %v (pin the node's public key with --pubkey HEX|FILE)", err)
		}
		return fail("audit verify: %v", err)
	}
	if rep.KeyBesideLog {
		fmt.Fprintf(os.Stderr, "vigil: audit verify: %s\n", besideLogWarning(rep.KeySource))
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

// besideLogWarning is the warning of a verify with the key found next to
// the log.
func besideLogWarning(keyFile string) string {
	return fmt.Sprintf("WARNING: verified with the key found next to the log (%s): whoever can replace the log can replace that key, "+
		"so this proves the log consistent, not authentic; pin the node's public key with --pubkey HEX|FILE", keyFile)
}

func printReport(w io.Writer, r *audit.Report) {
	key := fmt.Sprintf("key %s (%s)", r.Fingerprint, r.KeySource)
	if r.KeySource == "pinned" {
		key = fmt.Sprintf("pinned key %s", r.Fingerprint)
	}
	if r.Problem != nil {
		fmt.Fprintf(w, "audit log %s: NOT INTACT\n  %s\n", r.Dir, r.Problem.Error())
		fmt.Fprintf(w, "  checked before it: %d segments, %d batches, %d records; %s\n", r.Segments, r.Batches, r.Records, key)
		if r.KeyBesideLog {
			fmt.Fprintf(w, "  %s\n", besideLogWarning(r.KeySource))
		}
		return
	}
	fmt.Fprintf(w, "audit log %s: OK\n", r.Dir)
	fmt.Fprintf(w, "  segments %d..%d (%d), %d batches, records %d..%d (%d)\n", r.FirstSegment, r.LastSegment, r.Segments, r.Batches, r.FirstIndex, r.LastIndex, r.Records)
	fmt.Fprintf(w, "  verified against %s; key ids %s\n", key, strings.Join(r.KeyIDs, " + "))
	fmt.Fprintf(w, "  head %s\n", r.Head)
	if h := r.SignedHead; h != nil {
		fmt.Fprintf(w, "  signed head file: record %d, segment %d, seq %d, signed %s: the chain passes through it\n", h.Index, h.Segment, h.Seq, h.Time.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "  not checked against a signed head file (--no-head): records cut from the end would go unnoticed\n")
	}
	if r.KeyBesideLog {
		fmt.Fprintf(w, "  %s\n", besideLogWarning(r.KeySource))
	}
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
		fmt.Fprintf(w, "  the writer recorded %d losses (%d records counted, %d of unknown size; see 'vigil audit show --kind loss')\n", r.LossRecords, r.LostRecords, r.UnknownLoss)
	}
	for _, a := range r.Alerts {
		fmt.Fprintf(w, "  ALERT: recovery found the log cut or its head replaced: %s\n", a)
	}
}

// keyFlags are the key options of verify, show and export.
type keyFlags struct {
	key, pubkey string
	oldKeys     auditList
}

func (k *keyFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&k.pubkey, "pubkey", "", "the node's pinned public key: `HEX` (64 digits, as the writer logs it) or a FILE (.pub); overrides --key")
	fs.StringVar(&k.key, "key", "", "the node's key `FILE` (private or .pub); default: audit.key beside DIR (warned about: pin the key with --pubkey)")
	fs.Var(&k.oldKeys, "old-key", "an earlier node key `FILE` (.pub) whose segments are accepted too, after a key change (repeatable)")
}

// pinned is the --pubkey key, or nil.
func (k *keyFlags) pinned() (ed25519.PublicKey, error) {
	if k.pubkey == "" {
		return nil, nil
	}
	pub, err := audit.ParsePublicKey(k.pubkey)
	if err != nil {
		return nil, fmt.Errorf("--pubkey: %w", err)
	}
	return pub, nil
}

// readOptions are the key flags as the reader of show and export takes
// them.
func (k *keyFlags) readOptions(cmd, dir string, unverified bool) (audit.ReadOptions, error) {
	o := audit.ReadOptions{KeyFile: k.key, OldKeys: k.oldKeys, Unverified: unverified}
	var err error
	if o.PubKey, err = k.pinned(); err != nil {
		return o, err
	}
	switch {
	case unverified:
		fmt.Fprintf(os.Stderr, "vigil: %s: WARNING: --unverified: signatures are not checked; what follows may be forged\n", cmd)
	case o.PubKey == nil && (k.key == "" || isBesideLogFile(dir, k.key)):
		fmt.Fprintf(os.Stderr, "vigil: %s: checking signatures with the key found next to the log; pin it with --pubkey HEX|FILE\n", cmd)
	}
	return o, nil
}

// isBesideLogFile reports whether file is in dir or its parent.
func isBesideLogFile(dir, file string) bool {
	d, _ := filepath.Abs(dir)
	f, _ := filepath.Abs(file)
	return filepath.Dir(f) == d || filepath.Dir(f) == filepath.Dir(d)
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && len(s) == 64
}

// filterFlags are the record filters of show, export and replay.
type filterFlags struct{ replay.Spec }

func (f *filterFlags) add(fs *flag.FlagSet, all bool) {
	fs.StringVar(&f.ContainerID, "container", "", "only records of the container `ID` (prefix)")
	fs.Uint64Var(&f.CgroupID, "cgroup", 0, "only records of the cgroup `N`")
	if !all {
		return
	}
	fs.StringVar(&f.Pod, "pod", "", "only records of containers of pod `NAME` (or NAMESPACE/NAME)")
	fs.StringVar(&f.Since, "since", "", "records at or after `T` (RFC 3339, unix seconds, or a duration ago such as 15m)")
	fs.StringVar(&f.Until, "until", "", "records before `T`")
	fs.StringVar(&f.Syscalls, "syscall", "", "only events of these syscalls (`NAMES`, comma-separated); with --kind, records of the other kinds named pass too")
	fs.StringVar(&f.Kinds, "kind", "", "only these record `KINDS`: "+strings.Join(audit.KindNames(), ", "))
	fs.BoolVar(&f.Verdicts, "verdicts", false, "only verdicts and actions")
	fs.Uint64Var(&f.FromIndex, "from-index", 0, "only records numbered `N` or more (resume an export after the last index shipped)")
}

const showUsage = `Usage: vigil audit show [FILTERS] [--json] [--limit N] DIR

Prints the records of the audit log in DIR that the filters select, one line
each: time, record number, container, per-container sequence number, kind
and what happened (the syscall with its path/argv/address and result, the
verdict's severity, rule and message, ...). With --json the lines are the
export format.

Every frame's signature is checked as it is read (with --pubkey, or the key
beside the log): at a segment that does not verify, show stops with an
error naming it and the problem; --unverified reads it anyway. Whether
records were cut from the end, 'vigil audit verify' tells.

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
	var kf keyFlags
	kf.add(fs)
	unverified := fs.Bool("unverified", false, "read without checking signatures (a log that does not verify, or whose key is not at hand)")
	pos, st, done := parseAuditFlags(fs, args)
	if done {
		return st
	}
	if len(pos) != 1 {
		return fail("audit show: give exactly one DIR (the audit log directory), got %d arguments", len(pos))
	}
	ro, err := kf.readOptions("audit show", pos[0], *unverified)
	if err != nil {
		return fail("audit show: %v", err)
	}
	if *asJSON {
		return exportRecords("audit show", pos[0], &ff, ro, out, *limit, "")
	}
	sel, err := ff.Parse(time.Now())
	if err != nil {
		return fail("audit show: %v", err)
	}
	sel.Read = ro
	if err := replay.Show(pos[0], sel, out, *limit); err != nil {
		return fail("audit show: %v", err)
	}
	return 0
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

Signatures are checked as in 'vigil audit show': export stops with an error
at a segment that does not verify (--pubkey pins the key; --unverified
exports anyway).

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
	var kf keyFlags
	kf.add(fs)
	unverified := fs.Bool("unverified", false, "read without checking signatures (a log that does not verify, or whose key is not at hand)")
	pos, st, done := parseAuditFlags(fs, args)
	if done {
		return st
	}
	if len(pos) != 1 {
		return fail("audit export: give exactly one DIR (the audit log directory), got %d arguments", len(pos))
	}
	ro, err := kf.readOptions("audit export", pos[0], *unverified)
	if err != nil {
		return fail("audit export: %v", err)
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
		return exportFollow(pos[0], &ff, ro, out, *limit, *node, *follow)
	}
	return exportRecords("audit export", pos[0], &ff, ro, out, *limit, *node)
}

func exportRecords(cmd, dir string, ff *filterFlags, ro audit.ReadOptions, out io.Writer, limit int, node string) int {
	sel, err := ff.Parse(time.Now())
	if err != nil {
		return fail("%s: %v", cmd, err)
	}
	sel.Read = ro
	if _, _, err := replay.Export(dir, sel, out, limit, node); err != nil {
		return fail("%s: %v", cmd, err)
	}
	return 0
}

// exportFollow exports what is there, then polls for new records until
// the process is stopped (or limit records are written).
func exportFollow(dir string, ff *filterFlags, ro audit.ReadOptions, out io.Writer, limit int, node string, every time.Duration) int {
	sel, err := ff.Parse(time.Now())
	if err != nil {
		return fail("audit export: %v", err)
	}
	sel.Read = ro
	if err := replay.Follow(dir, sel, out, limit, node, every); err != nil {
		return fail("audit export: %v", err)
	}
	return 0
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
