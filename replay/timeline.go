package replay

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// Timeline is what Build rebuilds from the records of one container (or
// of what a filter selects).
type Timeline struct {
	// Containers are the container ids the records carry: more than one
	// when a container id prefix matched several.
	Containers []string          `json:"-"`
	Container  *event.Container  `json:"container,omitempty"`
	CgroupIDs  []uint64          `json:"cgroups"`
	First      time.Time         `json:"first"`
	Last       time.Time         `json:"last"`
	Records    int               `json:"records"`
	Events     int               `json:"events"`
	Syscalls   map[string]int    `json:"syscalls"`
	Processes  []*Process        `json:"processes"` // roots; children nested
	Files      []*Use            `json:"files"`
	Peers      []*Use            `json:"peers"`
	Verdicts   []RecordedVerdict `json:"verdicts"`
	Other      []OtherRecord     `json:"records_other"` // actions, lifecycle, gaps, losses, policy
	Detect     *Comparison       `json:"detect,omitempty"`
	Verified   *audit.Report     `json:"verified,omitempty"`
	Unverified string            `json:"unverified,omitempty"`

	procs map[uint32]*Process
	files map[string]*Use
	peers map[string]*Use
	cgs   map[uint64]bool
	ids   map[string]bool
	forks map[uint32]uint32 // child pid -> parent pid, from fork/clone return values
}

// Process is one process of the timeline's tree.
type Process struct {
	PID      uint32     `json:"pid"`
	PPID     uint32     `json:"ppid,omitempty"`
	Comm     string     `json:"comm"`
	First    time.Time  `json:"first"`
	Last     time.Time  `json:"last"`
	Events   int        `json:"events"`
	Execs    []Exec     `json:"execs,omitempty"`
	Exit     *uint64    `json:"exit_code,omitempty"`
	Children []*Process `json:"children,omitempty"`
}

// Exec is one execve or execveat of a process, failed ones included.
type Exec struct {
	Time  time.Time `json:"time"`
	Path  string    `json:"path"`
	Argv  []string  `json:"argv"`
	Ret   int64     `json:"ret"`
	Errno string    `json:"errno,omitempty"`
}

// Use is a file or network peer and what the container did with it.
type Use struct {
	Name   string         `json:"name"`
	Ops    map[string]int `json:"ops"` // syscall name -> count
	Errors int            `json:"errors,omitempty"`
	First  time.Time      `json:"first"`
	count  int
}

// RecordedVerdict is a verdict as the log holds it.
type RecordedVerdict struct {
	Index   uint64           `json:"index"`
	Verdict detector.Verdict `json:"verdict"`
}

// OtherRecord is a record that is neither an event, a verdict nor a
// sample: an action, lifecycle event, gap, loss, policy change, ...
type OtherRecord struct {
	Index uint64          `json:"index"`
	Time  time.Time       `json:"time"`
	Kind  audit.Kind      `json:"kind"`
	Body  json.RawMessage `json:"body"`
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

// Build reads the records of the log in dir that flt selects and rebuilds
// their timeline. With eng (see NewEngine) it also runs the events and
// samples through the detector again, in order, and compares the verdicts
// it reaches with the recorded ones (Timeline.Detect).
func Build(dir string, flt audit.Filter, eng *detector.Engine) (*Timeline, error) {
	tl := &Timeline{Syscalls: map[string]int{}, procs: map[uint32]*Process{}, files: map[string]*Use{}, peers: map[string]*Use{},
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
			tl.Verdicts = append(tl.Verdicts, RecordedVerdict{Index: r.Index, Verdict: v})
		case audit.KindSample:
			if eng != nil {
				var s detector.Sample
				if err := json.Unmarshal(r.Body, &s); err != nil {
					return fmt.Errorf("record %d: sample body: %w", r.Index, err)
				}
				replayed = append(replayed, eng.Sample(s)...)
			}
		default:
			tl.Other = append(tl.Other, OtherRecord{Index: r.Index, Time: r.Time, Kind: r.Kind, Body: r.Body})
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

func (tl *Timeline) event(ev *event.Event) {
	tl.Events++
	if ev.Container != nil && tl.Container == nil {
		tl.Container = ev.Container
	}
	name := ev.Name()
	tl.Syscalls[name]++
	p := tl.procs[ev.PID]
	if p == nil {
		p = &Process{PID: ev.PID, PPID: tl.forks[ev.PID], First: ev.Time}
		tl.procs[ev.PID] = p
	}
	p.Comm, p.Last = ev.Comm, ev.Time
	p.Events++
	failed := ev.Flags&event.NoReturn == 0 && ev.Errno() != 0
	switch {
	case forkNrs[ev.Nr] && ev.Ret > 0 && !failed:
		tl.forks[uint32(ev.Ret)] = ev.PID
	case execNrs[ev.Nr]:
		x := Exec{Time: ev.Time, Path: ev.Path, Argv: ev.Argv, Ret: ev.Ret}
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

func (tl *Timeline) touch(m map[string]*Use, key, op string, failed bool, t time.Time) {
	u := m[key]
	if u == nil {
		u = &Use{Name: key, Ops: map[string]int{}, First: t}
		m[key] = u
	}
	u.Ops[op]++
	u.count++
	if failed {
		u.Errors++
	}
}

// finish builds the process tree and sorts files and peers by use.
func (tl *Timeline) finish() {
	var all []*Process
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

func sortUses(m map[string]*Use) []*Use {
	out := make([]*Use, 0, len(m))
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
