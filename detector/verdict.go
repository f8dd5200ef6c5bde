package detector

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"vigil.dev/vigil/event"
)

// Class is the threat class of a verdict.
type Class string

// The threat classes.
const (
	ClassCPU      Class = "cpu-abuse"
	ClassNetwork  Class = "network"
	ClassFSEscape Class = "fs-escape"
	ClassPrivesc  Class = "privesc"
	ClassAnomaly  Class = "anomaly"
)

// Classes lists the classes, for help texts and errors.
var Classes = []Class{ClassCPU, ClassNetwork, ClassFSEscape, ClassPrivesc, ClassAnomaly}

func parseClass(s string) (Class, error) {
	for _, c := range Classes {
		if string(c) == s {
			return c, nil
		}
	}
	return "", fmt.Errorf("class %q: unknown, use one of %s", s, joinClasses())
}

func joinClasses() string {
	var s []string
	for _, c := range Classes {
		s = append(s, string(c))
	}
	return strings.Join(s, ", ")
}

// Severity orders verdicts for the control ladder.
type Severity uint8

// The severities, lowest first.
const (
	Low Severity = iota + 1
	Medium
	High
	Critical
)

var severityNames = []string{"", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if int(s) < len(severityNames) && s > 0 {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", s)
}

// ParseSeverity reads "low", "medium", "high" or "critical".
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if i > 0 && n == s {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("severity %q: unknown, use one of low, medium, high, critical", s)
}

// MarshalText writes the name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Evidence is one event that made a rule fire, copied out of the (reused)
// event, or a sequence of syscall names for model verdicts.
type Evidence struct {
	Seq     uint64    `json:"seq,omitempty"`
	Time    time.Time `json:"time,omitzero"`
	PID     uint32    `json:"pid,omitempty"`
	TID     uint32    `json:"tid,omitempty"`
	Comm    string    `json:"comm,omitempty"`
	Syscall string    `json:"syscall,omitempty"`
	Args    []uint64  `json:"args,omitempty"`
	Ret     int64     `json:"ret"`
	Errno   string    `json:"errno,omitempty"`
	Path    string    `json:"path,omitempty"`
	Path2   string    `json:"path2,omitempty"`
	Argv    []string  `json:"argv,omitempty"`
	Addr    string    `json:"addr,omitempty"`
	// Env is an exec's loader variables (LD_PRELOAD, LD_AUDIT,
	// LD_LIBRARY_PATH); CloneFlags clone3's flags.
	Env        []string `json:"env,omitempty"`
	CloneFlags uint64   `json:"clone_flags,omitempty"`
	// UserPath, UserPath2 and UserAddr are the strings as the process gave
	// them, when the detector normalised them into Path, Path2 and Addr.
	UserPath  string   `json:"user_path,omitempty"`
	UserPath2 string   `json:"user_path2,omitempty"`
	UserAddr  string   `json:"user_addr,omitempty"`
	Sequence  []string `json:"sequence,omitempty"` // model verdicts: the syscalls of the anomalous window
	Note      string   `json:"note,omitempty"`     // resource verdicts: the measured values
}

func evidenceOf(ev *event.Event) Evidence {
	e := Evidence{
		Seq: ev.Seq, Time: ev.Time, PID: ev.PID, TID: ev.TID, Comm: ev.Comm,
		Syscall: ev.Name(), Args: append([]uint64(nil), ev.Args[:]...), Ret: ev.Ret,
		Path: strings.Clone(ev.Path), Path2: strings.Clone(ev.Path2), Addr: ev.Addr.String(),
	}
	if n := ev.Errno(); n != 0 {
		e.Errno = event.ErrnoName(n)
	}
	for _, a := range ev.Argv {
		e.Argv = append(e.Argv, strings.Clone(a))
	}
	for _, a := range ev.Env {
		e.Env = append(e.Env, strings.Clone(a))
	}
	e.CloneFlags = ev.CloneFlags
	return e
}

// given records the strings of orig that normalisation changed.
func (e *Evidence) given(orig *event.Event) {
	if orig.Path != e.Path {
		e.UserPath = strings.Clone(orig.Path)
	}
	if orig.Path2 != e.Path2 {
		e.UserPath2 = strings.Clone(orig.Path2)
	}
	if a := orig.Addr.String(); a != e.Addr {
		e.UserAddr = a
	}
}

// Verdict is one detection: what fired, on which container and process,
// why (the evidence), and how bad it is. Its ID depends only on the input,
// so replaying the same events gives the same ids.
type Verdict struct {
	ID        string           `json:"id"`
	Time      time.Time        `json:"time"`
	CgroupID  uint64           `json:"cgroup"`
	Container *event.Container `json:"container,omitempty"`
	PID       uint32           `json:"pid,omitempty"`
	TID       uint32           `json:"tid,omitempty"`
	Comm      string           `json:"comm,omitempty"`
	Class     Class            `json:"class"`
	Severity  Severity         `json:"severity"`
	Rule      string           `json:"rule"`
	Score     float64          `json:"score"`
	Message   string           `json:"message"`
	// Tags are the rule's tags (MITRE ATT&CK technique ids like T1611,
	// topics); Maturity its maturity (stable, incubating, sandbox).
	Tags     []string   `json:"tags,omitempty"`
	Maturity string     `json:"maturity,omitempty"`
	Evidence []Evidence `json:"evidence,omitempty"`
	// Mode is the container's mode when the verdict was made (learn,
	// detect, enforce), set by the response ladder (package control).
	Mode string `json:"mode,omitempty"`
	// WouldAct lists the actions the container's policy would have taken
	// (mode detect); Actions those it takes (mode enforce).
	WouldAct []string `json:"would_act,omitempty"`
	Actions  []string `json:"actions,omitempty"`
}

// verdictID hashes what identifies a verdict: the rule, the cgroup, the
// process and the triggering event's sequence number and time.
func verdictID(rule string, cgroup uint64, pid, tid uint32, seq uint64, t int64) string {
	h := fnv.New128a()
	h.Write([]byte(rule))
	var b [8 * 4]byte
	binary.LittleEndian.PutUint64(b[0:], cgroup)
	binary.LittleEndian.PutUint64(b[8:], uint64(pid)<<32|uint64(tid))
	binary.LittleEndian.PutUint64(b[16:], seq)
	binary.LittleEndian.PutUint64(b[24:], uint64(t))
	h.Write(b[:])
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// MarshalJSONLine is the line `vigil trace` prints: {"verdict":{...}}.
func (v *Verdict) MarshalJSONLine() ([]byte, error) {
	return json.Marshal(struct {
		Verdict *Verdict `json:"verdict"`
	}{v})
}
