package agent

import (
	"bufio"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/pipeline"
	"vigil.dev/vigil/seccomp"
)

// Decision is the JSON record of one seccomp notify decision.
type Decision struct {
	Time      time.Time        `json:"time"`
	Container *event.Container `json:"container,omitempty"`
	PID       uint32           `json:"pid"`
	Syscall   string           `json:"syscall"`
	Nr        int32            `json:"nr"`
	Args      [6]uint64        `json:"args"`
	Action    string           `json:"action"` // "allow" or "deny"
	Errno     string           `json:"errno,omitempty"`
	// Dynamic says the answer came from the response ladder's deny-syscall,
	// not from the container's profile.
	Dynamic bool   `json:"dynamic,omitempty"`
	Error   string `json:"error,omitempty"`
}

// onDecision is the notify server's report (made after the answer, off
// the answering goroutine): audited through the pipeline, then written or
// logged.
func (a *Agent) onDecision(n seccomp.Notification) {
	d := Decision{Time: n.Time, PID: n.PID, Nr: n.Nr, Syscall: event.SyscallName(int(n.Nr)), Args: n.Args, Action: "allow", Dynamic: n.Dynamic}
	if !n.Decision.Allow {
		d.Action, d.Errno = "deny", event.ErrnoName(int(n.Decision.Errno))
	}
	if n.Err != nil {
		d.Error = n.Err.Error()
	}
	var cgroupID uint64
	if info, err := a.reg.Find(n.Container); err == nil && n.Container != "" {
		d.Container, cgroupID = info.Meta, info.CgroupID
	} else if n.Container != "" {
		d.Container = &event.Container{ID: n.Container}
	}
	a.pl.Note(audit.KindAction, cgroupID, n.Container, d)
	if a.cfg.Decisions == nil {
		fields := logrus.Fields{"syscall": d.Syscall, "pid": d.PID, "action": d.Action, "errno": d.Errno}
		if d.Container != nil {
			fields["container"], fields["pod"] = d.Container.Name, d.Container.Namespace+"/"+d.Container.Pod
		}
		a.log.WithFields(fields).Info("seccomp notify decision")
		return
	}
	a.decided.write(func(b []byte) []byte {
		out, _ := json.Marshal(d)
		return append(b, out...)
	})
}

// logSink logs verdicts, actions and gaps (not events).
type logSink struct{ log *logrus.Logger }

func (logSink) Event(*event.Event) {}

func (l logSink) Verdict(v *detector.Verdict) {
	fields := logrus.Fields{"cgroup": v.CgroupID, "class": v.Class, "severity": v.Severity, "rule": v.Rule, "pid": v.PID, "mode": v.Mode}
	if v.Container != nil {
		fields["container"], fields["pod"] = v.Container.Name, v.Container.Pod
	}
	if len(v.Actions) > 0 {
		fields["actions"] = v.Actions
	}
	if len(v.WouldAct) > 0 {
		fields["would_act"] = v.WouldAct
	}
	l.log.WithFields(fields).Warn(v.Message)
}

func (l logSink) Action(r control.Record) {
	fields := logrus.Fields{"cgroup": r.CgroupID, "action": r.Action, "verdict": r.Verdict, "undo": r.Undo, "latency": r.Latency}
	if r.ContainerID != "" {
		fields["id"] = short(r.ContainerID)
	}
	if r.Error != "" {
		l.log.WithFields(fields).Error("action failed: " + r.Error)
		return
	}
	l.log.WithFields(fields).Info("action in force: " + r.Detail)
}

func (l logSink) Gap(g pipeline.Gap) {
	l.log.WithFields(logrus.Fields{"cgroup": g.CgroupID, "from_seq": g.FromSeq, "count": g.Count}).Warn("records lost (ring or queue full): recorded as a gap")
}

func (logSink) Flush() error { return nil }

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// jsonLines is a buffered writer of JSON lines shared by goroutines.
type jsonLines struct {
	mu      sync.Mutex
	w       *bufio.Writer
	buf     []byte
	written uint64
	err     error
}

func newJSONLines(w io.Writer) *jsonLines {
	if w == nil {
		return &jsonLines{}
	}
	return &jsonLines{w: bufio.NewWriterSize(w, 64<<10)}
}

func (j *jsonLines) write(appendJSON func([]byte) []byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.written++
	if j.w == nil || j.err != nil {
		return
	}
	j.buf = append(appendJSON(j.buf[:0]), '\n')
	if _, err := j.w.Write(j.buf); err != nil {
		j.err = err
	}
}

func (j *jsonLines) flush() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.w != nil && j.err == nil {
		j.err = j.w.Flush()
	}
}
