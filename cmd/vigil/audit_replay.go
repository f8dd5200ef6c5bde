package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"sort"
	"strings"
	"time"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

const auditReplayUsage = `Usage: vigil replay --container ID [--detect [--policy FILE]... [--model MODEL]] (--audit DIR | DIR)

Verifies the log (as 'vigil audit verify --live'; --no-verify skips it),
then rebuilds one container's timeline from the audit log: its process tree with
every exec and its arguments, the files it touched, its network peers, the
verdicts and actions recorded about it, its lifecycle, and any gaps.

With --detect the container's recorded events (and resource samples) run
through the detector again, in order, exactly as they were seen live. The
verdicts it reaches are compared with the recorded ones by id (ids depend
only on the input): with the rules and model of the live run they are the
same; with other rules (--policy, --no-default) or another model (--model)
the difference is what those would have changed. Exit status: 0 when the
replayed verdicts equal the recorded ones (or without --detect), 3 when they
differ, 1 on errors, 2 on usage errors.

--container takes a container id or a prefix of it; logs of 'vigil trace'
have no container ids: use --cgroup. Without either, replay lists the
containers in the log.

Examples:
  vigil replay --container 3f2a --audit /var/lib/vigil/audit
  vigil replay --container 3f2a --detect --audit /var/lib/vigil/audit
  vigil replay --cgroup 8123 --detect --policy stricter.yaml /tmp/run.audit

Options:
`

func replayMain(args []string, out io.Writer) int {
	fs := newAuditFlags("replay", auditReplayUsage)
	var ff filterFlags
	ff.add(fs, false)
	dirFlag := fs.String("audit", "", "the audit log `DIR`")
	detect := fs.Bool("detect", false, "run the recorded events through the detector again and compare the verdicts")
	var pol auditList
	fs.Var(&pol, "policy", "extra rule `FILE` for --detect (repeatable)")
	noDef := fs.Bool("no-default", false, "with --detect: leave the embedded default rules out")
	modelPath := fs.String("model", "", "with --detect: a learned `MODEL` to apply")
	asJSON := fs.Bool("json", false, "print the timeline (and comparison) as one JSON document")
	key := fs.String("key", "", "verify the log first with the node's key `FILE` (private or .pub); default: audit.key beside DIR")
	noVerify := fs.Bool("no-verify", false, "replay without verifying the log first")
	var oldKeys auditList
	fs.Var(&oldKeys, "old-key", "an earlier node key `FILE` (.pub) accepted by the verification, after a key change (repeatable)")
	top := fs.Int("top", 40, "show at most `N` files and peers (0: all)")
	pos, st, done := parseAuditFlags(fs, args)
	if done {
		return st
	}
	dir := *dirFlag
	switch {
	case dir == "" && len(pos) == 1:
		dir = pos[0]
	case dir == "" || len(pos) > 0:
		return fail("replay: give the audit log directory once, as --audit DIR or as the argument")
	}
	if !*detect && (len(pol) > 0 || *noDef || *modelPath != "") {
		return fail("replay: --policy, --no-default and --model need --detect")
	}
	if ff.container == "" && ff.cgroup == 0 {
		if err := listContainers(dir, out); err != nil {
			return fail("replay: %v", err)
		}
		fmt.Fprintln(os.Stderr, "vigil: replay: give --container ID or --cgroup N (the log's containers are listed above)")
		return 2
	}
	var verified *audit.Report
	var unverified string
	if !*noVerify {
		rep, err := audit.VerifyWith(dir, audit.VerifyOptions{KeyFile: *key, Live: true, OldKeys: oldKeys})
		var p *audit.Problem
		switch {
		case errors.As(err, &p):
			return fail("replay: the log does not verify: %v (replay it anyway with --no-verify)", p)
		case errors.Is(err, iofs.ErrNotExist) && *key == "":
			unverified = "not verified: no key at " + audit.DefaultKeyFile(dir) + " (give --key FILE)"
		case err != nil:
			return fail("replay: verify: %v (replay without verifying with --no-verify)", err)
		default:
			verified = &rep
		}
	}
	var eng *detector.Engine
	if *detect {
		cfg := detector.Config{RuleFiles: pol, NoDefaultRules: *noDef, Shards: 1, FromFirstExec: true,
			Lists: map[string][]string{"allowed_resolvers": detector.SystemResolvers("")}}
		if *modelPath != "" {
			m, err := detector.LoadModel(*modelPath)
			if err != nil {
				return fail("replay: --model: %v", err)
			}
			cfg.Model = m
		}
		var err error
		if eng, err = detector.New(cfg); err != nil {
			return fail("replay: %v", err)
		}
	}
	tl, err := buildTimeline(dir, audit.Filter{ContainerID: ff.container, CgroupID: ff.cgroup}, eng)
	if err != nil {
		return fail("replay: %v", err)
	}
	tl.Verified, tl.Unverified = verified, unverified
	if len(tl.Containers) > 1 {
		return fail("replay: --container %q matches %d containers (%s): give more of the id", ff.container, len(tl.Containers), strings.Join(tl.Containers, ", "))
	}
	if tl.Records == 0 {
		return fail("replay: no records of container %q cgroup %d in %s", ff.container, ff.cgroup, dir)
	}
	if *asJSON {
		b, err := json.MarshalIndent(tl, "", "  ")
		if err != nil {
			return fail("replay: %v", err)
		}
		fmt.Fprintln(out, string(b))
	} else {
		w := bufio.NewWriter(out)
		tl.print(w, *top)
		w.Flush()
	}
	if tl.Detect != nil && !tl.Detect.Same {
		return 3
	}
	return 0
}

// timeline is what replay rebuilds for one container.
type timeline struct {
	Containers []string          `json:"-"`
	Container  *event.Container  `json:"container,omitempty"`
	CgroupIDs  []uint64          `json:"cgroups"`
	First      time.Time         `json:"first"`
	Last       time.Time         `json:"last"`
	Records    int               `json:"records"`
	Events     int               `json:"events"`
	Syscalls   map[string]int    `json:"syscalls"`
	Processes  []*proc           `json:"processes"` // roots; children nested
	Files      []*use            `json:"files"`
	Peers      []*use            `json:"peers"`
	Verdicts   []recordedVerdict `json:"verdicts"`
	Other      []otherRecord     `json:"records_other"` // actions, lifecycle, gaps, losses, policy
	Detect     *detectResult     `json:"detect,omitempty"`
	Verified   *audit.Report     `json:"verified,omitempty"`
	Unverified string            `json:"unverified,omitempty"`

	procs map[uint32]*proc
	files map[string]*use
	peers map[string]*use
	cgs   map[uint64]bool
	ids   map[string]bool
	forks map[uint32]uint32 // child pid -> parent pid, from fork/clone return values
}

type proc struct {
	PID      uint32    `json:"pid"`
	PPID     uint32    `json:"ppid,omitempty"`
	Comm     string    `json:"comm"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
	Events   int       `json:"events"`
	Execs    []execRec `json:"execs,omitempty"`
	Exit     *uint64   `json:"exit_code,omitempty"`
	Children []*proc   `json:"children,omitempty"`
}

type execRec struct {
	Time  time.Time `json:"time"`
	Path  string    `json:"path"`
	Argv  []string  `json:"argv"`
	Ret   int64     `json:"ret"`
	Errno string    `json:"errno,omitempty"`
}

type use struct {
	Name   string         `json:"name"`
	Ops    map[string]int `json:"ops"`
	Errors int            `json:"errors,omitempty"`
	First  time.Time      `json:"first"`
	count  int
}

type recordedVerdict struct {
	Index   uint64           `json:"index"`
	Verdict detector.Verdict `json:"verdict"`
}

type otherRecord struct {
	Index uint64          `json:"index"`
	Time  time.Time       `json:"time"`
	Kind  audit.Kind      `json:"kind"`
	Body  json.RawMessage `json:"body"`
}

type detectResult struct {
	Rules      int                `json:"rules"`
	Recorded   int                `json:"recorded"`
	Replayed   int                `json:"replayed"`
	Reproduced int                `json:"reproduced"`
	Same       bool               `json:"same"`
	Missing    []detector.Verdict `json:"missing,omitempty"` // recorded, not reached by the replay
	New        []detector.Verdict `json:"new,omitempty"`     // reached by the replay, not recorded
	EndOfTrace []detector.Verdict `json:"end_of_trace,omitempty"`
}

var forkNrs, exitNrs, execNrs = syscallSet("clone", "clone3", "fork", "vfork"), syscallSet("exit", "exit_group"), syscallSet("execve", "execveat")

func syscallSet(names ...string) map[int32]bool {
	m := map[int32]bool{}
	for _, n := range names {
		if nr, ok := event.SyscallNr(n); ok {
			m[int32(nr)] = true
		}
	}
	return m
}

// buildTimeline reads the container's records; with eng it also replays
// them through the detector.
func buildTimeline(dir string, flt audit.Filter, eng *detector.Engine) (*timeline, error) {
	tl := &timeline{Syscalls: map[string]int{}, procs: map[uint32]*proc{}, files: map[string]*use{}, peers: map[string]*use{},
		cgs: map[uint64]bool{}, ids: map[string]bool{}, forks: map[uint32]uint32{}}
	var replayed []detector.Verdict
	err := audit.Scan(dir, &flt, func(r *audit.Record) error {
		tl.Records++
		if tl.First.IsZero() {
			tl.First = r.Time
		}
		tl.Last = r.Time
		tl.cgs[r.CgroupID] = true
		if r.ContainerID != "" {
			tl.ids[r.ContainerID] = true
		}
		switch r.Kind {
		case audit.KindEvent:
			tl.event(r.Event)
			if eng != nil {
				replayed = append(replayed, eng.Observe(r.Event)...)
			}
		case audit.KindVerdict:
			var v detector.Verdict
			if err := json.Unmarshal(r.Body, &v); err != nil {
				return fmt.Errorf("record %d: verdict body: %w", r.Index, err)
			}
			tl.Verdicts = append(tl.Verdicts, recordedVerdict{Index: r.Index, Verdict: v})
		case audit.KindSample:
			if eng != nil {
				var s detector.Sample
				if err := json.Unmarshal(r.Body, &s); err != nil {
					return fmt.Errorf("record %d: sample body: %w", r.Index, err)
				}
				replayed = append(replayed, eng.Sample(s)...)
			}
		default:
			tl.Other = append(tl.Other, otherRecord{Index: r.Index, Time: r.Time, Kind: r.Kind, Body: r.Body})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for id := range tl.ids {
		tl.Containers = append(tl.Containers, id)
	}
	sort.Strings(tl.Containers)
	for cg := range tl.cgs {
		tl.CgroupIDs = append(tl.CgroupIDs, cg)
	}
	sort.Slice(tl.CgroupIDs, func(i, j int) bool { return tl.CgroupIDs[i] < tl.CgroupIDs[j] })
	tl.finish()
	if eng != nil {
		tl.Detect = compareVerdicts(tl.Verdicts, replayed, eng.Flush())
		tl.Detect.Rules = len(eng.Rules())
	}
	return tl, nil
}

func (tl *timeline) event(ev *event.Event) {
	tl.Events++
	if ev.Container != nil && tl.Container == nil {
		tl.Container = ev.Container
	}
	name := ev.Name()
	tl.Syscalls[name]++
	p := tl.procs[ev.PID]
	if p == nil {
		p = &proc{PID: ev.PID, PPID: tl.forks[ev.PID], First: ev.Time}
		tl.procs[ev.PID] = p
	}
	p.Comm, p.Last = ev.Comm, ev.Time
	p.Events++
	failed := ev.Flags&event.NoReturn == 0 && ev.Errno() != 0
	switch {
	case forkNrs[ev.Nr] && ev.Ret > 0 && !failed:
		tl.forks[uint32(ev.Ret)] = ev.PID
	case execNrs[ev.Nr]:
		x := execRec{Time: ev.Time, Path: ev.Path, Argv: ev.Argv, Ret: ev.Ret}
		if failed {
			x.Errno = event.ErrnoName(ev.Errno())
		}
		p.Execs = append(p.Execs, x)
	case exitNrs[ev.Nr] && ev.Flags&event.NoReturn != 0:
		code := ev.Args[0] & 0xff
		p.Exit = &code
	}
	if ev.Path != "" {
		tl.touch(tl.files, ev.Path, name, failed, ev.Time)
	}
	if ev.Path2 != "" {
		tl.touch(tl.files, ev.Path2, name+"(target)", failed, ev.Time)
	}
	if !ev.Addr.IsZero() {
		tl.touch(tl.peers, ev.Addr.String(), name, failed, ev.Time)
	}
}

func (tl *timeline) touch(m map[string]*use, key, op string, failed bool, t time.Time) {
	u := m[key]
	if u == nil {
		u = &use{Name: key, Ops: map[string]int{}, First: t}
		m[key] = u
	}
	u.Ops[op]++
	u.count++
	if failed {
		u.Errors++
	}
}

// finish builds the process tree and sorts files and peers by use.
func (tl *timeline) finish() {
	var all []*proc
	for _, p := range tl.procs {
		if p.PPID == 0 {
			// a child often runs before its parent's fork returns
			p.PPID = tl.forks[p.PID]
		}
		all = append(all, p)
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].First.Equal(all[j].First) {
			return all[i].First.Before(all[j].First)
		}
		return all[i].PID < all[j].PID
	})
	for _, p := range all {
		if parent := tl.procs[p.PPID]; p.PPID != 0 && parent != nil && parent != p {
			parent.Children = append(parent.Children, p)
		} else {
			tl.Processes = append(tl.Processes, p)
		}
	}
	tl.Files = sortUses(tl.files)
	tl.Peers = sortUses(tl.peers)
}

func sortUses(m map[string]*use) []*use {
	out := make([]*use, 0, len(m))
	for _, u := range m {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].count != out[j].count {
			return out[i].count > out[j].count
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// compareVerdicts matches replayed verdicts with recorded ones by id.
// Verdicts of the final flush (partial model windows) are compared too but,
// when not recorded, listed apart: a live run that did not end (or did not
// flush) has no such verdicts.
func compareVerdicts(recorded []recordedVerdict, replayed, flushed []detector.Verdict) *detectResult {
	res := &detectResult{Recorded: len(recorded), Replayed: len(replayed)}
	rec := map[string]bool{}
	for _, r := range recorded {
		rec[r.Verdict.ID] = true
	}
	got := map[string]bool{}
	for _, v := range replayed {
		got[v.ID] = true
		if rec[v.ID] {
			res.Reproduced++
		} else {
			res.New = append(res.New, v)
		}
	}
	for _, v := range flushed {
		if rec[v.ID] {
			got[v.ID] = true
			res.Reproduced++
			res.Replayed++
		} else {
			res.EndOfTrace = append(res.EndOfTrace, v)
		}
	}
	for _, r := range recorded {
		if !got[r.Verdict.ID] {
			res.Missing = append(res.Missing, r.Verdict)
		}
	}
	res.Same = len(res.Missing) == 0 && len(res.New) == 0
	return res
}

func (tl *timeline) print(w io.Writer, top int) {
	if c := tl.Container; c != nil {
		fmt.Fprintf(w, "container %s", c.ID)
		if c.Name != "" || c.Pod != "" {
			fmt.Fprintf(w, " (%s, pod %s/%s, image %s)", c.Name, c.Namespace, c.Pod, c.Image)
		}
	} else if len(tl.Containers) == 1 {
		fmt.Fprintf(w, "container %s", tl.Containers[0])
	} else {
		fmt.Fprintf(w, "no container id")
	}
	fmt.Fprintf(w, ", cgroup %v\n", tl.CgroupIDs)
	fmt.Fprintf(w, "%d records (%d events) from %s to %s\n", tl.Records, tl.Events, stamp(tl.First), stamp(tl.Last))
	if v := tl.Verified; v != nil {
		fmt.Fprintf(w, "log verified: records %d..%d intact, key %s, head %s\n", v.FirstIndex, v.LastIndex, v.KeyID, v.Head)
		if v.LossRecords > 0 {
			fmt.Fprintf(w, "note: the writer recorded %d losses (%d records; see 'vigil audit show --kind loss'): what they held is not replayed\n", v.LossRecords, v.LostRecords)
		}
	} else if tl.Unverified != "" {
		fmt.Fprintf(w, "log %s\n", tl.Unverified)
	}

	fmt.Fprintf(w, "\nprocesses (%d):\n", len(tl.procs))
	for _, p := range tl.Processes {
		printProc(w, p, "  ")
	}
	printUses(w, "files", tl.Files, top)
	printUses(w, "network peers", tl.Peers, top)

	fmt.Fprintf(w, "\nverdicts (%d):\n", len(tl.Verdicts))
	for _, r := range tl.Verdicts {
		printVerdict(w, "  ", &r.Verdict)
	}
	if len(tl.Other) > 0 {
		fmt.Fprintf(w, "\nactions, lifecycle, gaps, losses, policy (%d):\n", len(tl.Other))
		for _, o := range tl.Other {
			fmt.Fprintf(w, "  %s #%d %s %s\n", stamp(o.Time), o.Index, o.Kind, o.Body)
		}
	}
	if d := tl.Detect; d != nil {
		fmt.Fprintf(w, "\ndetector replay (%d rules): %d verdicts recorded, %d reached again, %d reproduced with the same id\n", d.Rules, d.Recorded, d.Replayed, d.Reproduced)
		for _, v := range d.Missing {
			printVerdict(w, "  - recorded, not reached: ", &v)
		}
		for _, v := range d.New {
			printVerdict(w, "  + reached, not recorded: ", &v)
		}
		for _, v := range d.EndOfTrace {
			printVerdict(w, "  (end-of-trace window, not recorded: the live run had not ended) ", &v)
		}
		if d.Same {
			fmt.Fprintln(w, "result: the same verdicts")
		} else {
			fmt.Fprintf(w, "result: different (%d not reached, %d new)\n", len(d.Missing), len(d.New))
		}
	}
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000Z")
}

func printProc(w io.Writer, p *proc, indent string) {
	fmt.Fprintf(w, "%s%d %s  [%s .. %s, %d events", indent, p.PID, p.Comm, stamp(p.First), stamp(p.Last), p.Events)
	if p.Exit != nil {
		fmt.Fprintf(w, ", exit %d", *p.Exit)
	}
	fmt.Fprintln(w, "]")
	for _, x := range p.Execs {
		res := "ok"
		if x.Errno != "" {
			res = x.Errno
		}
		q := make([]string, len(x.Argv))
		for i, a := range x.Argv {
			q[i] = fmt.Sprintf("%q", a)
		}
		fmt.Fprintf(w, "%s  exec %s [%s] %s (%s)\n", indent, x.Path, strings.Join(q, " "), stamp(x.Time), res)
	}
	for _, c := range p.Children {
		printProc(w, c, indent+"  ")
	}
}

func printUses(w io.Writer, title string, us []*use, top int) {
	fmt.Fprintf(w, "\n%s (%d):\n", title, len(us))
	for i, u := range us {
		if top > 0 && i == top {
			fmt.Fprintf(w, "  ... %d more (--top 0 shows all)\n", len(us)-top)
			break
		}
		ops := make([]string, 0, len(u.Ops))
		for op, n := range u.Ops {
			ops = append(ops, fmt.Sprintf("%s×%d", op, n))
		}
		sort.Strings(ops)
		fmt.Fprintf(w, "  %s  %s", u.Name, strings.Join(ops, " "))
		if u.Errors > 0 {
			fmt.Fprintf(w, " (%d failed)", u.Errors)
		}
		fmt.Fprintln(w)
	}
}

func printVerdict(w io.Writer, prefix string, v *detector.Verdict) {
	fmt.Fprintf(w, "%s%s %s %s %s pid %d %s: %s [%s]\n", prefix, stamp(v.Time), v.Severity, v.Class, v.Rule, v.PID, v.Comm, v.Message, v.ID)
}

// listContainers prints the containers (and bare cgroups) of a log.
func listContainers(dir string, out io.Writer) error {
	type row struct {
		id               string
		cg               uint64
		meta             *event.Container
		events, verdicts int
		first, last      time.Time
	}
	rows := map[string]*row{}
	err := audit.Scan(dir, nil, func(r *audit.Record) error {
		key := r.ContainerID
		if key == "" {
			if r.CgroupID == 0 {
				return nil
			}
			key = fmt.Sprintf("cgroup:%d", r.CgroupID)
		}
		rw := rows[key]
		if rw == nil {
			rw = &row{id: r.ContainerID, cg: r.CgroupID, first: r.Time}
			rows[key] = rw
		}
		rw.last = r.Time
		switch r.Kind {
		case audit.KindEvent:
			rw.events++
			if rw.meta == nil && r.Event.Container != nil {
				rw.meta = r.Event.Container
			}
		case audit.KindVerdict:
			rw.verdicts++
		}
		return nil
	})
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(out, "%-14s %-10s %-24s %9s %8s  %s\n", "CONTAINER", "CGROUP", "POD", "EVENTS", "VERDICTS", "FIRST .. LAST")
	for _, k := range keys {
		r := rows[k]
		pod := "-"
		if r.meta != nil && r.meta.Pod != "" {
			pod = r.meta.Namespace + "/" + r.meta.Pod
		}
		fmt.Fprintf(out, "%-14s %-10d %-24s %9d %8d  %s .. %s\n", shortID(r.id, r.cg), r.cg, pod, r.events, r.verdicts, stamp(r.first), stamp(r.last))
	}
	if len(keys) == 0 {
		return errors.New("the log holds no container records")
	}
	return nil
}
