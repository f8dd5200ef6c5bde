package pipeline

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// Alert is a verdict, or an action taken for one, in the shape Falco writes
// its alerts: what falcosidekick and log pipelines built for Falco read.
// Fields Falco does not have are prefixed "vigil.".
type Alert struct {
	Time     time.Time `json:"time"`
	Rule     string    `json:"rule"`
	Priority string    `json:"priority"`
	// Source is "vigil" (Falco's is the event source, e.g. "syscall").
	Source string `json:"source"`
	// Output is one line of text: control characters and invalid UTF-8
	// are escaped, so a path or comm cannot forge a line.
	Output string `json:"output"`
	// OutputFields uses Falco's field names: container.id, container.name,
	// container.image, k8s.pod.name, k8s.ns.name, k8s.pod.uid,
	// k8s.pod.labels (an object), k8s.node.name, proc.pid, proc.name,
	// thread.tid, proc.cmdline, evt.time, evt.type (the syscall), fd.name
	// (a path or unix socket), fd.sip and fd.sport (an IP address), each
	// only when known.
	OutputFields map[string]any `json:"output_fields"`
	// Tags are the verdict's class, the rule's tags, "maturity_M", "mode:M",
	// "would_act:A" and "action:A".
	Tags      []string `json:"tags"`
	Hostname  string   `json:"hostname"`
	VerdictID string   `json:"vigil.verdict_id,omitempty"`
	// Actions are the action records for the verdict so far: empty on the
	// verdict's own line, then one more on each action's line.
	Actions []control.Record `json:"vigil.actions"`
}

// Falco's priorities, highest first.
const (
	PriorityEmergency     = "Emergency"
	PriorityAlert         = "Alert"
	PriorityCritical      = "Critical"
	PriorityError         = "Error"
	PriorityWarning       = "Warning"
	PriorityNotice        = "Notice"
	PriorityInformational = "Informational"
	PriorityDebug         = "Debug"
)

// FalcoPriority maps a vigil severity to Falco's priority: critical →
// Critical, high → Error, medium → Warning, low → Notice (Falco's own
// rules use these four); anything else is Debug.
func FalcoPriority(s detector.Severity) string {
	switch s {
	case detector.Critical:
		return PriorityCritical
	case detector.High:
		return PriorityError
	case detector.Medium:
		return PriorityWarning
	case detector.Low:
		return PriorityNotice
	}
	return PriorityDebug
}

// RuleActionUndone is the rule of the line written for an action undone
// by request or timer (it has no verdict).
const RuleActionUndone = "vigil action undone"

// alerter turns verdicts and action records into alerts. It remembers the
// recent verdicts that take or would take actions, so that each action's
// line carries its verdict's rule, fields and the actions so far. For one
// goroutine (the pipeline's worker).
type alerter struct {
	hostname string
	recent   map[string]*Alert
	order    []string // ids in recent, oldest first (a ring of maxRecent)
	next     int
}

// maxRecent bounds the verdicts remembered for their action lines.
const maxRecent = 4096

func newAlerter(hostname string) *alerter {
	return &alerter{hostname: hostname, recent: map[string]*Alert{}}
}

// verdict is the alert of v.
func (a *alerter) verdict(v *detector.Verdict) *Alert {
	al := &Alert{
		Time: v.Time.UTC(), Rule: v.Rule, Priority: FalcoPriority(v.Severity), Source: "vigil",
		OutputFields: outputFields(v), Tags: verdictTags(v), Hostname: a.hostname,
		VerdictID: v.ID, Actions: []control.Record{},
	}
	al.Output = verdictOutput(al.Time, al.Priority, v, al.OutputFields)
	if len(v.Actions) > 0 && v.ID != "" {
		a.remember(al)
	}
	return al
}

func (a *alerter) remember(al *Alert) {
	if _, ok := a.recent[al.VerdictID]; ok {
		return
	}
	if len(a.order) < maxRecent {
		a.order = append(a.order, al.VerdictID)
	} else {
		delete(a.recent, a.order[a.next])
		a.order[a.next] = al.VerdictID
		a.next = (a.next + 1) % maxRecent
	}
	a.recent[al.VerdictID] = al
}

// action is the alert of an action record: its verdict's alert with the
// records so far, or, for an undo or a verdict no longer remembered, an
// Informational line of its own.
func (a *alerter) action(r control.Record) *Alert {
	when := r.Effective.UTC()
	status := "done"
	if r.Undo {
		status = "undone"
	}
	if r.Error != "" {
		status = "failed: " + r.Error
	}
	what := string(r.Action) + " " + status
	if r.Detail != "" {
		what += " (" + r.Detail + ")"
	}
	if v, ok := a.recent[r.Verdict]; ok && r.Verdict != "" {
		v.Actions = append(v.Actions, r)
		al := *v
		al.Time = when
		al.Actions = append([]control.Record(nil), v.Actions...)
		al.Output = fmt.Sprintf("%s: %s vigil action %s for verdict %s (rule %s)", falcoClock(when), al.Priority,
			oneLine(what), r.Verdict, oneLine(v.Rule))
		return &al
	}
	fields := map[string]any{}
	if r.ContainerID != "" {
		fields["container.id"] = r.ContainerID
	}
	rule, prio, tags := "vigil action", PriorityWarning, []string{"action:" + string(r.Action)}
	if r.Verdict == "" {
		rule, prio = RuleActionUndone, PriorityInformational
	}
	if r.Error != "" {
		prio = PriorityError
	}
	out := fmt.Sprintf("%s: %s vigil action %s", falcoClock(when), prio, oneLine(what))
	if r.Verdict != "" {
		out += " for verdict " + r.Verdict
	}
	if r.ContainerID != "" {
		out += " (container.id=" + oneLine(r.ContainerID) + ")"
	}
	return &Alert{Time: when, Rule: rule, Priority: prio, Source: "vigil", Output: out, OutputFields: fields,
		Tags: tags, Hostname: a.hostname, VerdictID: r.Verdict, Actions: []control.Record{r}}
}

// falcoClock is the time as Falco's output starts: 15:04:05.000000000.
func falcoClock(t time.Time) string { return t.Format("15:04:05.000000000") }

// trigger is the verdict's evidence event with a syscall, if any.
func trigger(v *detector.Verdict) *detector.Evidence {
	for i := range v.Evidence {
		if v.Evidence[i].Syscall != "" {
			return &v.Evidence[i]
		}
	}
	return nil
}

func outputFields(v *detector.Verdict) map[string]any {
	f := map[string]any{"evt.time": v.Time.UnixNano()}
	if c := v.Container; c != nil {
		setString(f, "container.id", c.ID)
		setString(f, "container.name", c.Name)
		setString(f, "container.image", c.Image)
		setString(f, "k8s.pod.name", c.Pod)
		setString(f, "k8s.ns.name", c.Namespace)
		setString(f, "k8s.pod.uid", c.PodUID)
		setString(f, "k8s.node.name", c.Node)
		setString(f, "k8s.owner.kind", c.OwnerKind)
		setString(f, "k8s.owner.name", c.OwnerName)
		if len(c.PodLabels) > 0 {
			labels := make(map[string]string, len(c.PodLabels))
			for k, v := range c.PodLabels {
				labels[k] = v
			}
			f["k8s.pod.labels"] = labels
		}
	}
	pid, tid, comm := v.PID, v.TID, v.Comm
	if e := trigger(v); e != nil {
		if pid == 0 {
			pid, tid = e.PID, e.TID
		}
		if comm == "" {
			comm = e.Comm
		}
		f["evt.type"] = e.Syscall
		if len(e.Argv) > 0 {
			f["proc.cmdline"] = strings.Join(e.Argv, " ")
		}
		if e.Path != "" {
			f["fd.name"] = e.Path
		}
		setAddr(f, e.Addr)
	}
	if pid != 0 {
		f["proc.pid"] = pid
	}
	if tid != 0 {
		f["thread.tid"] = tid
	}
	setString(f, "proc.name", comm)
	return f
}

func setString(f map[string]any, k, v string) {
	if v != "" {
		f[k] = v
	}
}

// setAddr sets fd.sip and fd.sport for an IP address ("127.0.0.1:53",
// "[::1]:53"), fd.name for a unix one ("unix:/run/x.sock", "unix:@name").
func setAddr(f map[string]any, addr string) {
	if addr == "" {
		return
	}
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		if _, has := f["fd.name"]; !has {
			f["fd.name"] = p
		}
		return
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		f["fd.sip"] = ap.Addr().Unmap().String()
		f["fd.sport"] = ap.Port()
	}
}

func verdictTags(v *detector.Verdict) []string {
	tags := []string{string(v.Class)}
	tags = append(tags, v.Tags...) // the rule's: MITRE ATT&CK ids, topics
	if v.Maturity != "" {
		tags = append(tags, "maturity_"+v.Maturity)
	}
	if v.Mode != "" {
		tags = append(tags, "mode:"+v.Mode)
	}
	for _, a := range v.WouldAct {
		tags = append(tags, "would_act:"+a)
	}
	for _, a := range v.Actions {
		tags = append(tags, "action:"+a)
	}
	return tags
}

// outputOrder is the order of the fields in the output text.
var outputOrder = []struct{ key, name string }{
	{"k8s.ns.name", "ns"}, {"k8s.pod.name", "pod"}, {"container.name", "container"},
	{"container.id", "container_id"}, {"container.image", "image"}, {"proc.name", "proc"},
	{"proc.pid", "pid"}, {"evt.type", "syscall"}, {"fd.name", "path"}, {"fd.sip", "ip"},
	{"fd.sport", "port"}, {"proc.cmdline", "cmdline"},
}

func verdictOutput(t time.Time, prio string, v *detector.Verdict, f map[string]any) string {
	var b strings.Builder
	b.WriteString(falcoClock(t))
	b.WriteString(": ")
	b.WriteString(prio)
	b.WriteByte(' ')
	msg := v.Message
	if msg == "" {
		msg = v.Rule
	}
	b.WriteString(oneLine(msg))
	b.WriteString(" (")
	n := 0
	for _, o := range outputOrder {
		val, ok := f[o.key]
		if !ok {
			continue
		}
		if n > 0 {
			b.WriteByte(' ')
		}
		n++
		b.WriteString(o.name)
		b.WriteByte('=')
		b.WriteString(oneLine(fmt.Sprint(val)))
	}
	if n > 0 {
		b.WriteByte(' ')
	}
	b.WriteString("class=" + string(v.Class))
	if v.Mode != "" {
		b.WriteString(" mode=" + v.Mode)
	}
	if len(v.WouldAct) > 0 {
		b.WriteString(" would_act=" + oneLine(strings.Join(v.WouldAct, ",")))
	}
	if len(v.Actions) > 0 {
		b.WriteString(" actions=" + oneLine(strings.Join(v.Actions, ",")))
	}
	b.WriteString(" verdict=" + v.ID + ")")
	return b.String()
}

// oneLine escapes what would break a line of text or fool a terminal: C0
// and C1 control characters, DEL, the Unicode line and paragraph
// separators and invalid UTF-8, as Go escapes (\n, \x1b, \u2028); a
// backslash is doubled so the escapes are unambiguous.
func oneLine(s string) string {
	clean := true
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\\' || (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029 || r == utf8.RuneError {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029:
			q := strconv.QuoteRune(r) // '\n', '\x1b', '\u2028'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// marshalAlert is the alert as one JSON line (with its newline), HTML
// characters unescaped.
func marshalAlert(al *Alert, buf *bytes.Buffer) ([]byte, error) {
	buf.Reset()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(al); err != nil {
		return nil, fmt.Errorf("encode alert: %w", err)
	}
	return buf.Bytes(), nil
}

// Alerts is a Sink that writes each verdict, and each action taken for
// one as it comes, as one JSON line in Falco's alert shape (see Alert):
// the stream for falcosidekick and log pipelines. Events and gaps are not
// written.
type Alerts struct {
	a   *alerter
	w   *bufio.Writer
	buf bytes.Buffer
	n   uint64
	mu  sync.Mutex // err, read by Err from other goroutines
	err error
}

// NewAlerts writes alerts to w; hostname is each alert's "hostname" (the
// node's name).
func NewAlerts(w io.Writer, hostname string) *Alerts {
	return &Alerts{a: newAlerter(hostname), w: bufio.NewWriterSize(w, 64<<10)}
}

func (s *Alerts) write(al *Alert) {
	if s.Err() != nil {
		return
	}
	b, err := marshalAlert(al, &s.buf)
	if err == nil {
		_, err = s.w.Write(b)
	}
	s.setErr(err)
	if err == nil {
		s.n++
	}
}

func (s *Alerts) setErr(err error) {
	if err == nil {
		return
	}
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// Event writes nothing: alerts are verdicts.
func (s *Alerts) Event(*event.Event) {}

// Verdict writes the verdict's alert.
func (s *Alerts) Verdict(v *detector.Verdict) { s.write(s.a.verdict(v)) }

// Action writes the action's alert: its verdict's, with the actions so far.
func (s *Alerts) Action(r control.Record) { s.write(s.a.action(r)) }

// Gap writes nothing.
func (s *Alerts) Gap(Gap) {}

// Flush writes what is buffered.
func (s *Alerts) Flush() error {
	if err := s.Err(); err != nil {
		return err
	}
	s.setErr(s.w.Flush())
	return s.Err()
}

// Written is the number of alert lines written (buffered included); for
// the worker's goroutine.
func (s *Alerts) Written() uint64 { return s.n }

// Err is the first write error, if any.
func (s *Alerts) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
