package replay

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// Print writes the timeline as text: a header, the process tree with its
// execs, files and network peers (at most top of each; 0: all), the
// recorded verdicts and other records, and the detector comparison. What
// the container controlled (names, comms, paths, addresses, messages) is
// printed with event.Printable: one record, one line.
func (tl *Timeline) Print(w io.Writer, top int) {
	p := event.Printable
	if c := tl.Container; c != nil {
		fmt.Fprintf(w, "container %s", p(c.ID))
		if c.Name != "" || c.Pod != "" {
			fmt.Fprintf(w, " (%s, pod %s/%s, image %s)", p(c.Name), p(c.Namespace), p(c.Pod), p(c.Image))
		}
	} else if len(tl.Containers) == 1 {
		fmt.Fprintf(w, "container %s", p(tl.Containers[0]))
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
		printProcess(w, p, "  ")
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
			fmt.Fprintf(w, "  %s #%d %s %s\n", stamp(o.Time), o.Index, o.Kind, p(string(o.Body)))
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

// stamp is a time as text: UTC, microseconds; "-" for none.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000Z")
}

func printProcess(w io.Writer, p *Process, indent string) {
	fmt.Fprintf(w, "%s%d %s  [%s .. %s, %d events", indent, p.PID, event.Printable(p.Comm), stamp(p.First), stamp(p.Last), p.Events)
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
		fmt.Fprintf(w, "%s  exec %s [%s] %s (%s)\n", indent, event.Printable(x.Path), strings.Join(q, " "), stamp(x.Time), event.Printable(res))
	}
	for _, c := range p.Children {
		printProcess(w, c, indent+"  ")
	}
}

func printUses(w io.Writer, title string, us []*Use, top int) {
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
		fmt.Fprintf(w, "  %s  %s", event.Printable(u.Name), event.Printable(strings.Join(ops, " ")))
		if u.Errors > 0 {
			fmt.Fprintf(w, " (%d failed)", u.Errors)
		}
		fmt.Fprintln(w)
	}
}

func printVerdict(w io.Writer, prefix string, v *detector.Verdict) {
	fmt.Fprintf(w, "%s%s\n", prefix, event.Printable(fmt.Sprintf("%s %s %s %s pid %d %s: %s [%s]", stamp(v.Time), v.Severity, v.Class, v.Rule, v.PID, v.Comm, v.Message, v.ID)))
}

// ListContainers writes a table of the containers (and bare cgroups, as
// 'vigil trace' records them) of the log in dir: id, cgroup, pod, event
// and verdict counts, first and last record. It fails when the log holds
// none.
func ListContainers(dir string, out io.Writer) error {
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
		fmt.Fprintf(out, "%-14s %-10d %-24s %9d %8d  %s .. %s\n", event.Printable(shortID(r.id, r.cg)), r.cg, event.Printable(pod), r.events, r.verdicts, stamp(r.first), stamp(r.last))
	}
	if len(keys) == 0 {
		return errors.New("the log holds no container records")
	}
	return nil
}

// shortID is a container id cut to 12 characters, or cgroup:N without one.
func shortID(id string, cg uint64) string {
	if id == "" {
		return "cgroup:" + strconv.FormatUint(cg, 10)
	}
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
