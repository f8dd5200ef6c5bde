package detector

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"vigil.dev/vigil/event"
)

// Input formats of ReadUnits.
const (
	FormatAuto   = "auto"
	FormatEvents = "events" // vigil event JSON lines (vigil trace --json, audit export)
	FormatSeq    = "seq"    // a trace per file: whitespace-separated syscall numbers or names
	FormatPidSeq = "pidseq" // a trace per file: lines of "PID SYSCALL", a sequence per pid (read as seq)
	FormatCounts = "counts" // CSV: time in ms, then one column per syscall name
)

// Formats lists the input formats, for help and errors.
var Formats = []string{FormatAuto, FormatEvents, FormatSeq, FormatPidSeq, FormatCounts}

// ReadOptions says how to read training or scoring inputs.
type ReadOptions struct {
	Format string    // one of Formats; "" is auto
	ABI    event.ABI // for numeric sequence traces; "" is x86_64
	Window int       // events per window for event files; 0 is DefaultWindowEvents
}

// ExpandPaths turns files and directories (walked, sorted, hidden entries
// skipped) into a sorted list of files.
func ExpandPaths(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("input: %w", err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		var files []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("input: %w", err)
		}
		sort.Strings(files)
		out = append(out, files...)
	}
	return out, nil
}

// ReadUnits reads one input file into units.
func ReadUnits(path string, opt ReadOptions) ([]Unit, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("input: %w", err)
	}
	format := opt.Format
	if format == "" || format == FormatAuto {
		format = sniff(data)
	}
	var units []Unit
	switch format {
	case FormatEvents:
		units, err = eventUnits(path, bytes.NewReader(data), opt.Window)
	case FormatSeq:
		units, err = seqUnits(path, data, opt.ABI)
	case FormatPidSeq:
		units, err = pidSeqUnits(path, data, opt.ABI)
		format = FormatSeq
	case FormatCounts:
		units, err = countUnits(path, data)
	default:
		return nil, "", fmt.Errorf("format %q: unknown, use one of %s", format, strings.Join(Formats, ", "))
	}
	return units, format, err
}

// sniff guesses the format: JSON lines are events; a first line with commas
// whose first field is not a number is a counts CSV header; else a trace.
func sniff(data []byte) string {
	s := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(s) > 0 && s[0] == '{' {
		return FormatEvents
	}
	line := s
	if i := bytes.IndexByte(s, '\n'); i >= 0 {
		line = s[:i]
	}
	if bytes.Count(line, []byte(",")) >= 1 {
		// A counts CSV starts with a header of names; a line of numbers
		// only is a comma-separated sequence trace.
		for _, f := range strings.Split(string(line), ",")[1:] {
			f = strings.TrimSpace(f)
			if _, err := strconv.ParseFloat(f, 64); err != nil && f != "" {
				return FormatCounts
			}
		}
	}
	return FormatSeq
}

func eventUnits(source string, r io.Reader, window int) ([]Unit, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	wins := map[uint64]*windower{}
	var order []uint64
	var units []Unit
	line := 0
	var ev event.Event
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 || b[0] != '{' || bytes.HasPrefix(b, []byte(`{"verdict"`)) {
			continue
		}
		if err := ev.UnmarshalJSON(b); err != nil {
			if !bytes.Contains(b, []byte(`"syscall"`)) && !bytes.Contains(b, []byte(`"nr"`)) {
				continue // another kind of record (summary, counters)
			}
			return nil, fmt.Errorf("%s:%d: %w", source, line, err)
		}
		if ev.Flags&event.Lost != 0 {
			continue
		}
		w := wins[ev.CgroupID]
		if w == nil {
			w = newWindower(window)
			wins[ev.CgroupID] = w
			order = append(order, ev.CgroupID)
		}
		if w.add(&ev) {
			units = append(units, w.unit(source, len(units)))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	for _, id := range order {
		if w := wins[id]; w.count > 0 {
			units = append(units, w.unit(source, len(units)))
		}
	}
	return units, nil
}

func seqUnits(source string, data []byte, abi event.ABI) ([]Unit, error) {
	if abi == "" {
		abi = event.X8664
	}
	if seqs, changes, err := pidSeqs(data, abi); err == nil && lineCount(seqs) >= 2 && changes*4 <= lineCount(seqs) {
		// Every line is two numbers and the first one changes at most
		// every fourth line on average: pids (a process runs for a while
		// before another), not syscalls written two to a line.
		return []Unit{{Source: source, Index: 0, Seqs: seqs}}, nil
	}
	fields := strings.FieldsFunc(string(data), func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	seq := make([]string, 0, len(fields))
	for i, f := range fields {
		if (f[0] >= '0' && f[0] <= '9') || f[0] == '-' {
			nr, err := strconv.Atoi(f)
			if err != nil || nr < 0 {
				return nil, fmt.Errorf("%s: token %d %q: want a syscall number or name", source, i+1, f)
			}
			seq = append(seq, abi.Name(nr))
			continue
		}
		seq = append(seq, f)
	}
	// An empty trace is still a trace: it gets a score line (of 0).
	return []Unit{{Source: source, Index: 0, Seqs: [][]string{seq}}}, nil
}

// pidSeqUnits reads a trace of lines "PID SYSCALL" (the layout of the
// classic UNM traces, where the processes of one run interleave): one
// sequence per pid, in the order the pids first appear, so that no n-gram
// spans two processes.
func pidSeqUnits(source string, data []byte, abi event.ABI) ([]Unit, error) {
	if abi == "" {
		abi = event.X8664
	}
	seqs, _, err := pidSeqs(data, abi)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return []Unit{{Source: source, Index: 0, Seqs: seqs}}, nil
}

// pidSeqs splits lines of "PID SYSCALL" into a sequence per pid, and
// counts the lines whose pid differs from the line before's.
func pidSeqs(data []byte, abi event.ABI) (seqs [][]string, changes int, err error) {
	index := map[int]int{}
	last := -1
	for n, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, 0, fmt.Errorf("line %d: %d fields, want PID SYSCALL", n+1, len(f))
		}
		pid, err1 := strconv.Atoi(f[0])
		nr, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil || pid < 0 || nr < 0 {
			return nil, 0, fmt.Errorf("line %d: %q: want PID SYSCALL, two numbers", n+1, strings.TrimSpace(line))
		}
		i, seen := index[pid]
		if !seen {
			i = len(seqs)
			index[pid] = i
			seqs = append(seqs, nil)
		}
		if last >= 0 && pid != last {
			changes++
		}
		last = pid
		seqs[i] = append(seqs[i], abi.Name(nr))
	}
	return seqs, changes, nil
}

func lineCount(seqs [][]string) int {
	n := 0
	for _, s := range seqs {
		n += len(s)
	}
	return n
}

func countUnits(source string, data []byte) ([]Unit, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", source, err)
	}
	if len(head) < 2 {
		return nil, fmt.Errorf("%s:1: header: want a time column then one column per syscall, got %d columns", source, len(head))
	}
	names := make([]string, len(head))
	for i, h := range head {
		names[i] = countColumnName(h)
	}
	var units []Unit
	line := 1
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		line++
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", source, line, err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if len(rec) != len(names) {
			return nil, fmt.Errorf("%s:%d: %d fields, the header has %d", source, line, len(rec), len(names))
		}
		counts := make(map[string]float64, len(rec))
		for i := 1; i < len(rec); i++ {
			v := strings.TrimSpace(rec[i])
			if v == "" {
				continue
			}
			c, err := strconv.ParseFloat(v, 64)
			if err != nil || !(c >= 0) || math.IsInf(c, 1) { // NaN and Inf parse as floats
				return nil, fmt.Errorf("%s:%d: column %q: %q is not a count", source, line, names[i], v)
			}
			if c > 0 {
				counts[names[i]] += c
			}
		}
		units = append(units, Unit{Source: source, Index: len(units), Counts: counts})
	}
	return units, nil
}

// countColumnName is the syscall a counts CSV column names: the header
// cell without what follows a '[' (some recorders write "read[node1]:42").
func countColumnName(h string) string {
	h = strings.TrimSpace(h)
	if i := strings.IndexByte(h, '['); i > 0 {
		h = h[:i]
	}
	return h
}

// ReplayEvents reads vigil event JSON lines from r and calls fn for each
// event (the *Event is reused between calls). Verdict and summary lines are
// skipped.
func ReplayEvents(r io.Reader, source string, fn func(*event.Event) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var ev event.Event
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 || b[0] != '{' || bytes.HasPrefix(b, []byte(`{"verdict"`)) {
			continue
		}
		if err := ev.UnmarshalJSON(b); err != nil {
			if !bytes.Contains(b, []byte(`"syscall"`)) && !bytes.Contains(b, []byte(`"nr"`)) {
				continue
			}
			return fmt.Errorf("%s:%d: %w", source, line, err)
		}
		if err := fn(&ev); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	return nil
}

// SystemResolvers reads the nameserver addresses of a resolv.conf file
// ("" is /etc/resolv.conf), for the allowed_resolvers list. A missing file
// gives none.
func SystemResolvers(path string) []string {
	if path == "" {
		path = "/etc/resolv.conf"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			out = append(out, f[1])
		}
	}
	return out
}
