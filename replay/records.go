package replay

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

var errStop = errors.New("stop")

// Show writes the records of the log in dir that sel selects to w, one
// text line each (see formatRecord), and stops after limit records (0: no
// limit). Signatures are checked as sel.Read says: at a frame that does
// not verify it stops with an error naming the segment.
func Show(dir string, sel *Selection, w io.Writer, limit int) error {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	n := 0
	err := audit.ScanWith(dir, &sel.Filter, sel.Read, func(r *audit.Record) error {
		if !sel.Match(r) {
			return nil
		}
		bw.WriteString(formatRecord(r))
		bw.WriteByte('\n')
		n++
		if limit > 0 && n >= limit {
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return err
	}
	return nil
}

// formatRecord is the text line of a record: time, index, container,
// per-container sequence number, kind and what happened. What the
// container controlled is escaped (event.Printable): one record, one line.
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
	return event.Printable(b.String())
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

// Export writes the records of the log in dir that sel selects to w as
// JSON lines, one object per record (see appendExport) with node in each,
// and stops after limit records (0 or less: no limit); signatures are
// checked as sel.Read says (see Show). It returns how many
// it wrote and the index of the last record the filter passed: a later
// pass resumes after it.
func Export(dir string, sel *Selection, w io.Writer, limit int, node string) (n int, last uint64, err error) {
	bw := bufio.NewWriterSize(w, 1<<16)
	var line []byte
	err = audit.ScanWith(dir, &sel.Filter, sel.Read, func(r *audit.Record) error {
		last = r.Index
		if !sel.Match(r) {
			return nil
		}
		line = appendExport(line[:0], r, node)
		line = append(line, '\n')
		if _, err := bw.Write(line); err != nil {
			return err
		}
		n++
		if limit > 0 && n >= limit {
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		bw.Flush()
		return n, last, err
	}
	if err := bw.Flush(); err != nil {
		return n, last, fmt.Errorf("write: %w", err)
	}
	return n, last, nil
}

// Follow exports what the log holds (as Export), then looks for new
// records every interval, from the index after the last one seen, until
// limit records are written (0: until an error). It changes
// sel.Filter.FromIndex.
func Follow(dir string, sel *Selection, w io.Writer, limit int, node string, every time.Duration) error {
	total := 0
	for {
		n, last, err := Export(dir, sel, w, limit-total, node)
		if err != nil {
			return err
		}
		total += n
		if limit > 0 && total >= limit {
			return nil
		}
		if last > 0 {
			sel.Filter.FromIndex = last + 1
		}
		time.Sleep(every)
	}
}

// appendExport appends the export JSON object of r: time, node, index,
// kind, cgroup, container, cseq, segment, and the event or the body.
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
