package pipeline

import (
	"bufio"
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"

	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// JSONLines writes what the pipeline sees as JSON lines: each event as its
// JSON form (unless Verdicts only), each verdict as {"verdict":{...}},
// each action as {"action":{...}} and each gap as {"gap":{...}}. It is
// the agent's --events stream and `vigil trace --json`'s.
type JSONLines struct {
	out     io.Writer
	w       *bufio.Writer
	buf     []byte
	events  bool
	filter  *EventFilter
	written atomic.Uint64 // event lines
	mu      sync.Mutex    // err, read by Stats from other goroutines
	err     error
}

// NewJSONLines writes to w; with events false only verdicts, actions and
// gaps are written.
func NewJSONLines(w io.Writer, events bool) *JSONLines {
	return &JSONLines{out: w, w: bufio.NewWriterSize(w, 256<<10), events: events, buf: make([]byte, 0, 1024)}
}

// Filter makes the stream write only the events f matches (verdicts,
// actions and gaps all the same); call it before the pipeline runs.
func (j *JSONLines) Filter(f *EventFilter) *JSONLines {
	j.filter = f
	return j
}

func (j *JSONLines) failed() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err != nil
}

func (j *JSONLines) setErr(err error) {
	if err == nil {
		return
	}
	j.mu.Lock()
	if j.err == nil {
		j.err = err
	}
	j.mu.Unlock()
}

func (j *JSONLines) line(b []byte) {
	if _, err := j.w.Write(append(b, '\n')); err != nil {
		j.setErr(err)
	}
}

// Event writes one event line.
func (j *JSONLines) Event(ev *event.Event) {
	if !j.events || !j.filter.Match(ev) {
		return
	}
	j.written.Add(1)
	if j.err != nil {
		return
	}
	j.buf = ev.AppendJSON(j.buf[:0])
	j.line(j.buf)
}

func (j *JSONLines) object(key string, v any) {
	if j.failed() {
		return
	}
	b, err := json.Marshal(map[string]any{key: v})
	if err != nil {
		j.setErr(err)
		return
	}
	j.line(b)
}

// Verdict writes {"verdict":{...}}.
func (j *JSONLines) Verdict(v *detector.Verdict) { j.object("verdict", v) }

// Action writes {"action":{...}}.
func (j *JSONLines) Action(r control.Record) { j.object("action", r) }

// Gap writes {"gap":{...}}.
func (j *JSONLines) Gap(g Gap) { j.object("gap", g) }

// Flush writes what is buffered. A writer beneath with a Flush of its own
// (a rotating file, which counts and reports what it cannot write rather
// than failing) gets the chance to retry a failed file.
func (j *JSONLines) Flush() error {
	if j.failed() {
		return j.Err()
	}
	j.setErr(j.w.Flush())
	if f, ok := j.out.(flusher); ok {
		f.Flush()
	}
	return j.Err()
}

// flusher is a writer that holds or retries what it is given.
type flusher interface{ Flush() error }

// Written is the number of event lines (attempted), Err the first error.
func (j *JSONLines) Written() uint64 { return j.written.Load() }

// Err is the first write error, if any.
func (j *JSONLines) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}
