// Package rotate owns the agent's JSON-lines output files (--events,
// --decisions): it bounds the disk they take and outlives a full disk. A
// Writer rotates its file at a size (FILE becomes FILE.1, FILE.1 FILE.2 and
// so on), keeps a bounded number of rotated files, gzip-compressed in the
// background if asked, and reopens its file on demand (SIGHUP, 'vigil
// reload') and by itself when the file was renamed, removed or truncated
// (logrotate, with or without copytruncate). A write that fails (ENOSPC,
// EIO) does not end it: the lines it could not write are counted, the file
// is tried again after a pause, and once the disk has room writing goes on,
// after a line that says how many were lost (Options.LossLine). It writes
// whole lines only: a failed write is cut back to the last whole line.
package rotate

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("rotate: writer closed")

// Options configures a Writer; the zero value writes one file that never
// rotates.
type Options struct {
	// MaxBytes rotates the file before a write would take it past this
	// size (a single longer line gets a file of its own); 0: never rotate.
	MaxBytes int64
	// MaxFiles is how many rotated files are kept beside the file (FILE.1
	// the newest); older ones are deleted. With MaxBytes set, the file and
	// its rotated files take at most (MaxFiles+1)*MaxBytes.
	MaxFiles int
	// Compress gzips rotated files (FILE.1.gz, ...), off the writer's path.
	Compress bool
	// Mode is the permission of a new file; default 0600.
	Mode os.FileMode
	// RetryEvery is how long a failed file waits before it is tried again;
	// the lines written meanwhile are counted as lost. Default 1s.
	RetryEvery time.Duration
	// CheckEvery is how often the file open is compared with the one at
	// the path (renamed, removed, truncated); default 1s.
	CheckEvery time.Duration
	// LossLine, if set, is the line (without its newline) written before
	// the first line after a loss; JSONLossLine fits a JSON-lines file.
	LossLine func(Loss) []byte
	// Logf receives alerts (cannot write, writing again, compression
	// failed); default log.Printf.
	Logf func(format string, args ...any)
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Loss is a run of lines a Writer could not write.
type Loss struct {
	Lines uint64    `json:"lines"`
	Bytes uint64    `json:"bytes"`
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	Error string    `json:"error"`
}

// JSONLossLine is {"output_lost":{"lines":N,"bytes":N,"since":…,"until":…,"error":…}}.
func JSONLossLine(l Loss) []byte {
	b, _ := json.Marshal(map[string]Loss{"output_lost": l})
	return b
}

// Stats are a Writer's counters since Open.
type Stats struct {
	Path      string
	Bytes     uint64 // written
	LostLines uint64 // lines it could not write
	LostBytes uint64
	Rotations uint64
	// CompressErrors counts rotated files left uncompressed.
	CompressErrors uint64
	// Err is why the file cannot be written now; nil once a write works
	// again.
	Err error
	// FailingSince is when the current failure began.
	FailingSince time.Time
}

// Writer is a rotating, self-healing writer of lines. Its methods are safe
// for concurrent use.
type Writer struct {
	path string
	opts Options

	mu        sync.Mutex
	f         *os.File
	size      int64
	tail      []byte // a line without its newline yet
	torn      bool   // the file ends in part of a line: start with a newline
	err       error  // the last failure, nil while writing works
	failedAt  time.Time
	nextCheck time.Time
	loss      Loss // lost since the last line written
	closed    bool

	bytes, lostLines, lostBytes, rotations uint64

	compressing  sync.WaitGroup
	compressErrs atomic.Uint64 // counted off the lock: rotate waits for the compression
}

// Open opens (or creates) the file at path for appending.
func Open(path string, opts Options) (*Writer, error) {
	if opts.MaxBytes < 0 || opts.MaxFiles < 0 {
		return nil, fmt.Errorf("rotate %s: max size %d, max files %d: want 0 or more", path, opts.MaxBytes, opts.MaxFiles)
	}
	if opts.Mode == 0 {
		opts.Mode = 0o600
	}
	if opts.RetryEvery <= 0 {
		opts.RetryEvery = time.Second
	}
	if opts.CheckEvery <= 0 {
		opts.CheckEvery = time.Second
	}
	if opts.Logf == nil {
		opts.Logf = log.Printf
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	w := &Writer{path: path, opts: opts}
	if err := w.open(); err != nil {
		return nil, err
	}
	w.nextCheck = opts.Now().Add(opts.CheckEvery)
	return w, nil
}

// Write takes p, which may end in the middle of a line, and writes the
// whole lines it completes. It never fails but after Close: what it cannot
// write it counts (Stats, Err), so a caller's buffer stays usable.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	i := bytes.LastIndexByte(p, '\n')
	if i < 0 {
		w.tail = append(w.tail, p...)
		return len(p), nil
	}
	lines := p[:i+1]
	if len(w.tail) > 0 {
		w.tail = append(w.tail, lines...)
		lines = w.tail
	}
	w.writeLines(lines)
	w.tail = append(w.tail[:0], p[i+1:]...)
	return len(p), nil
}

// Flush tries a failed file again when its pause is over, writing the
// loss line, so a quiet output does not stay failed; it returns Err.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil && !w.closed && w.due() {
		w.writeLines(nil)
	}
	return w.err
}

// Reopen closes the file and opens the one at the path again: after
// logrotate moved it away, or when an operator asks. The next write tries
// a failed file at once.
func (w *Writer) Reopen() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	w.failedAt = time.Time{}
	if err := w.open(); err != nil {
		w.fail(err)
		return err
	}
	return nil
}

// Err is why the file cannot be written now; nil while writing works.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := Stats{Path: w.path, Bytes: w.bytes, LostLines: w.lostLines, LostBytes: w.lostBytes,
		Rotations: w.rotations, CompressErrors: w.compressErrs.Load(), Err: w.err}
	if w.err != nil {
		st.FailingSince = w.loss.Since
	}
	return st
}

// Close writes what is held (a last line without a newline gets one),
// closes the file and waits for a compression under way.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	if len(w.tail) > 0 {
		w.tail = append(w.tail, '\n')
		w.writeLines(w.tail)
		w.tail = w.tail[:0]
	}
	w.closed = true
	var err error
	if w.f != nil {
		err = w.f.Close()
		w.f = nil
	}
	w.mu.Unlock()
	w.compressing.Wait()
	return err
}

// due reports whether a failed file may be tried again.
func (w *Writer) due() bool {
	return w.opts.Now().Sub(w.failedAt) >= w.opts.RetryEvery
}

// writeLines writes lines (whole lines, or none to only retry), rotating
// on the way; what it cannot write is counted.
func (w *Writer) writeLines(lines []byte) {
	if w.err != nil && !w.due() {
		w.lose(lines)
		return
	}
	if err := w.check(); err != nil {
		w.fail(err)
		w.lose(lines)
		return
	}
	if w.loss.Lines > 0 && w.opts.LossLine != nil {
		l := w.loss
		l.Until = w.opts.Now()
		if !w.put(append(w.opts.LossLine(l), '\n')) {
			w.lose(lines)
			return
		}
	}
	w.loss = Loss{}
	max := w.opts.MaxBytes
	for len(lines) > 0 {
		part := lines
		if max > 0 && w.size+int64(len(part)) > max {
			k := -1
			if room := max - w.size; room > 0 {
				k = bytes.LastIndexByte(lines[:room], '\n')
			}
			if k < 0 && w.size > 0 {
				if err := w.rotate(); err != nil {
					w.fail(fmt.Errorf("rotate: %w", err))
					w.lose(lines)
					return
				}
				continue
			}
			if k < 0 { // a line longer than max, alone in its file
				k = bytes.IndexByte(lines, '\n')
			}
			part = lines[:k+1]
		}
		if !w.put(part) {
			w.lose(lines)
			return
		}
		lines = lines[len(part):]
	}
}

// put writes b; a failed write is cut back so the file ends in a whole
// line, and the writer is marked failed. b is not counted as lost here.
func (w *Writer) put(b []byte) bool {
	if w.torn {
		if _, err := w.f.Write([]byte{'\n'}); err != nil {
			w.fail(err)
			return false
		}
		w.size++
		w.torn = false
	}
	n, err := w.f.Write(b)
	if err == nil {
		w.size += int64(n)
		w.bytes += uint64(n)
		if w.err != nil {
			w.opts.Logf("rotate: %s writable again; %d lines could not be written so far", w.path, w.lostLines)
			w.err = nil
		}
		return true
	}
	if n > 0 {
		if terr := w.f.Truncate(w.size); terr != nil {
			w.size += int64(n)
			w.torn = true
		}
	}
	w.fail(err)
	return false
}

// fail marks the writer failed from now.
func (w *Writer) fail(err error) {
	if w.err == nil {
		w.opts.Logf("rotate: ALERT cannot write %s: %v; counting the lines lost and trying again every %s", w.path, err, w.opts.RetryEvery)
	}
	w.err = err
	w.failedAt = w.opts.Now()
}

// lose counts lines that were not written.
func (w *Writer) lose(lines []byte) {
	if len(lines) == 0 {
		return
	}
	n := uint64(bytes.Count(lines, []byte{'\n'}))
	w.lostLines += n
	w.lostBytes += uint64(len(lines))
	if w.loss.Lines == 0 {
		w.loss.Since = w.opts.Now()
	}
	w.loss.Lines += n
	w.loss.Bytes += uint64(len(lines))
	if w.err != nil {
		w.loss.Error = w.err.Error()
	}
}

// check reopens the file when none is open or a write failed, and, at
// most every CheckEvery, when the path no longer names the open file; it
// also takes the file's size again (copytruncate).
func (w *Writer) check() error {
	now := w.opts.Now()
	if w.f != nil && w.err == nil && now.Before(w.nextCheck) {
		return nil
	}
	w.nextCheck = now.Add(w.opts.CheckEvery)
	if w.f != nil && w.err == nil {
		open, err1 := w.f.Stat()
		named, err2 := os.Stat(w.path)
		if err1 == nil && err2 == nil && os.SameFile(open, named) {
			w.size = open.Size()
			return nil
		}
	}
	return w.open()
}

// open (re)opens the file at the path.
func (w *Writer) open() error {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, w.opts.Mode)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	w.f, w.size, w.torn = f, st.Size(), false
	return nil
}

// name is the path of rotated file i (1 the newest).
func (w *Writer) name(i int, gz bool) string {
	n := w.path + "." + strconv.Itoa(i)
	if gz {
		n += ".gz"
	}
	return n
}

// rotate moves the file to FILE.1 (shifting the others, deleting the
// oldest) and opens a new one.
func (w *Writer) rotate() error {
	w.compressing.Wait() // FILE.1 is not being compressed while it moves
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	if w.opts.MaxFiles == 0 {
		if err := os.Remove(w.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else {
		for _, gz := range []bool{false, true} {
			if err := os.Remove(w.name(w.opts.MaxFiles, gz)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		for i := w.opts.MaxFiles - 1; i >= 1; i-- {
			for _, gz := range []bool{false, true} {
				if err := os.Rename(w.name(i, gz), w.name(i+1, gz)); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
		}
		if err := os.Rename(w.path, w.name(1, false)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	w.rotations++
	if err := w.open(); err != nil {
		return err
	}
	if w.opts.Compress && w.opts.MaxFiles > 0 {
		w.compressing.Add(1)
		go func(name string) {
			defer w.compressing.Done()
			if err := compress(name); err != nil {
				w.compressErrs.Add(1)
				w.opts.Logf("rotate: %s left uncompressed: %v", name, err)
			}
		}(w.name(1, false))
	}
	return nil
}

// compress gzips name into name.gz and removes name; on failure name stays
// and no partial name.gz does.
func compress(name string) (err error) {
	in, err := os.Open(name)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	tmp := name + ".gz.tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(tmp)
		}
	}()
	zw := gzip.NewWriter(out)
	zw.Name = strings.TrimSuffix(st.Name(), ".1")
	zw.ModTime = st.ModTime()
	if _, err = io.Copy(zw, in); err != nil {
		return err
	}
	if err = zw.Close(); err != nil {
		return err
	}
	if err = out.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, name+".gz"); err != nil {
		return err
	}
	return os.Remove(name)
}

// ParseSize reads a size in bytes: a number with an optional unit, B, K,
// KiB, M, MiB, G, GiB, T, TiB (powers of 1024) or KB, MB, GB, TB (powers of
// 1000); "0" is no limit.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional unit (KiB, MiB, GiB, KB, MB, GB), e.g. 100MiB", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	var unit int64
	switch strings.TrimSpace(t[i:]) {
	case "", "B":
		unit = 1
	case "K", "k", "KiB":
		unit = 1 << 10
	case "M", "MiB":
		unit = 1 << 20
	case "G", "GiB":
		unit = 1 << 30
	case "T", "TiB":
		unit = 1 << 40
	case "KB", "kB":
		unit = 1e3
	case "MB":
		unit = 1e6
	case "GB":
		unit = 1e9
	case "TB":
		unit = 1e12
	default:
		return 0, fmt.Errorf("size %q: unknown unit %q, want B, KiB, MiB, GiB, TiB, KB, MB, GB or TB", s, t[i:])
	}
	if n > (1<<63-1)/unit {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * unit, nil
}
