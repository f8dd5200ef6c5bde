package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/rotate"
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

// logSink logs verdicts, actions and gaps (not events). Fields are quoted
// by the formatter; messages are not (a terminal's coloured format prints
// them raw), so what a container controls in them is made printable.
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
	l.log.WithFields(fields).Warn(event.Printable(v.Message))
}

func (l logSink) Action(r control.Record) {
	fields := logrus.Fields{"cgroup": r.CgroupID, "action": r.Action, "verdict": r.Verdict, "undo": r.Undo, "latency": r.Latency}
	if r.ContainerID != "" {
		fields["id"] = short(r.ContainerID)
	}
	if r.Error != "" {
		l.log.WithFields(fields).Error("action failed: " + event.Printable(r.Error))
		return
	}
	l.log.WithFields(fields).Info("action in force: " + event.Printable(r.Detail))
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
	out     io.Writer
	w       *bufio.Writer
	buf     []byte
	written uint64
	err     error
}

func newJSONLines(w io.Writer) *jsonLines {
	if w == nil {
		return &jsonLines{}
	}
	return &jsonLines{out: w, w: bufio.NewWriterSize(w, 64<<10)}
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
	if r, ok := j.out.(rotating); ok {
		r.Flush() // a failed file is tried again; it reports itself (Stats)
	}
}

// rotating is an output file that rotates and outlives a full disk
// (*rotate.Writer): it never fails a write, it counts what it cannot write.
type rotating interface {
	io.Writer
	Flush() error
	Reopen() error
	Stats() rotate.Stats
}

type namedOutput struct {
	name string
	w    rotating
}

// outputs are the agent's rotating output files.
func (a *Agent) outputs() []namedOutput {
	var out []namedOutput
	if r, ok := a.cfg.Events.(rotating); ok {
		out = append(out, namedOutput{"events", r})
	}
	if r, ok := a.cfg.Decisions.(rotating); ok {
		out = append(out, namedOutput{"decisions", r})
	}
	return out
}

// reopenOutputs reopens the output files (after logrotate moved them; on
// SIGHUP and 'vigil reload').
func (a *Agent) reopenOutputs() {
	for _, o := range a.outputs() {
		if err := o.w.Reopen(); err != nil {
			a.log.WithError(err).WithField("output", o.name).Error("reopen output file")
		}
	}
}

// outputStatus adds the outputs' and the audit log's counters to st.
func (a *Agent) outputStatus(st *agentctl.Status) {
	for _, o := range a.outputs() {
		s := o.w.Stats()
		st.Outputs = append(st.Outputs, agentctl.OutputStatus{Name: o.name, Path: s.Path, Bytes: s.Bytes,
			LostLines: s.LostLines, Rotations: s.Rotations, Error: errorString(s.Err)})
	}
	if a.webhook != nil {
		w := a.webhook.Stats()
		st.Webhook = &agentctl.WebhookStatus{Sent: w.Sent, Retries: w.Retries, Dropped: w.Dropped, Failed: w.Failed, LastError: w.LastError}
	}
	if a.aud != nil {
		s := a.aud.Stats()
		st.AuditLost, st.AuditFull, st.AuditBytes, st.AuditStalls = s.Lost, s.Full, s.Bytes, s.Stalls
		if h := a.aud.Head(); h.Index > 0 {
			st.AuditHead = &agentctl.AuditHead{Segment: h.Segment, Index: h.Index, Hash: h.HashHex(), Time: h.Time}
		}
	}
}

// outputsHealthy is nil while every output can write.
func (a *Agent) outputsHealthy() error {
	var errs []error
	if a.events != nil {
		if err := a.events.Err(); err != nil {
			errs = append(errs, fmt.Errorf("event output: %w", err))
		}
	}
	for _, o := range a.outputs() {
		if err := o.w.Stats().Err; err != nil {
			errs = append(errs, fmt.Errorf("%s output %s: %w", o.name, o.w.Stats().Path, err))
		}
	}
	if a.aud != nil && a.aud.Stats().Full {
		errs = append(errs, fmt.Errorf("audit log %s: disk full", a.cfg.AuditDir))
	}
	return errors.Join(errs...)
}
