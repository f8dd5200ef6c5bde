package rotate

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/internal/privtest"
)

// clock is a test clock that moves only when told.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

// line is a 30-byte numbered line.
func line(i int) string { return fmt.Sprintf("{\"n\":%04d,\"pad\":\"xxxxxxxxx\"}\n", i) }

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readGzip(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(b)
}

func exists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

func TestRotation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		compress bool
	}{{"plain", false}, {"gzip", true}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			w, err := Open(path, Options{MaxBytes: 100, MaxFiles: 2, Compress: tc.compress, Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			var all []string
			for i := range 20 {
				all = append(all, line(i))
				if _, err := io.WriteString(w, line(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if st := w.Stats(); st.Rotations != 6 || st.LostLines != 0 || st.CompressErrors != 0 {
				t.Fatalf("stats %+v: want 6 rotations (3 lines of 30 bytes per 100-byte file), nothing lost", st)
			}
			read := readFile
			suffix := ""
			if tc.compress {
				read, suffix = readGzip, ".gz"
			}
			// The file holds the last 2 lines, FILE.1 the 3 before, FILE.2 the
			// 3 before those; nothing older is kept.
			want := map[string]string{
				path:                 strings.Join(all[18:], ""),
				path + ".1" + suffix: strings.Join(all[15:18], ""),
				path + ".2" + suffix: strings.Join(all[12:15], ""),
			}
			for name, content := range want {
				r := read
				if name == path {
					r = readFile
				}
				if got := r(t, name); got != content {
					t.Errorf("%s = %q, want %q", name, got, content)
				}
			}
			for _, name := range []string{path + ".3", path + ".3.gz", path + ".1.gz.tmp"} {
				if exists(name) {
					t.Errorf("%s exists: at most 2 rotated files are kept", name)
				}
			}
			if tc.compress && (exists(path+".1") || exists(path+".2")) {
				t.Errorf("uncompressed rotated files left beside the compressed ones")
			}
		})
	}
}

func TestLongLineAndNoRotatedFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	w, err := Open(path, Options{MaxBytes: 40, MaxFiles: 0})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("z", 60) + "\n"
	io.WriteString(w, line(1))
	io.WriteString(w, long) // longer than the limit: a file of its own
	io.WriteString(w, line(2))
	w.Close()
	if got := readFile(t, path); got != line(2) {
		t.Fatalf("file = %q, want only the last line", got)
	}
	if exists(path + ".1") {
		t.Fatal("a rotated file is kept with MaxFiles 0")
	}
}

func TestPartialWritesAreJoined(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	w, err := Open(path, Options{MaxBytes: 64, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	// A caller's buffer cuts lines anywhere; rotation still falls between
	// whole lines.
	var all string
	for i := range 10 {
		all += line(i)
	}
	for chunk := range slices(all, 7) {
		io.WriteString(w, chunk)
	}
	w.Close()
	got := readFile(t, path+".3") + readFile(t, path+".2") + readFile(t, path+".1") + readFile(t, path)
	if !strings.HasSuffix(all, got) || len(got) < 4*30 {
		t.Fatalf("files hold %q, want whole lines ending the input", got)
	}
	for _, name := range []string{path, path + ".1", path + ".2", path + ".3"} {
		if b := readFile(t, name); len(b) > 64 || !strings.HasSuffix(b, "\n") {
			t.Errorf("%s = %q: want whole lines, at most 64 bytes", name, b)
		}
	}
}

// slices cuts s into pieces of n bytes.
func slices(s string, n int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}

func TestReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	clk := newClock()
	w, err := Open(path, Options{CheckEvery: time.Second, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	// logrotate with a postrotate that signals the agent: Reopen.
	io.WriteString(w, line(1))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, line(2)) // still the renamed file: not checked yet
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, line(3))

	// logrotate without a signal: the writer sees the rename itself.
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	clk.advance(2 * time.Second)
	io.WriteString(w, line(4))

	// copytruncate: the file is emptied in place; writing goes on at its end.
	os.WriteFile(path+".3", []byte(readFile(t, path)), 0o600)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	clk.advance(2 * time.Second)
	io.WriteString(w, line(5))

	for name, want := range map[string]string{path + ".1": line(1) + line(2), path + ".2": line(3), path + ".3": line(4), path: line(5)} {
		if got := readFile(t, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if st := w.Stats(); st.LostLines != 0 || st.Err != nil {
		t.Fatalf("stats %+v: nothing lost", st)
	}
}

// TestDiskFull fills a small tmpfs: the lines that do not fit are counted,
// the file keeps whole lines only, and once space is freed writing resumes
// after a line that says what was lost.
func TestDiskFull(t *testing.T) {
	privtest.Require(t)
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 512<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	path := filepath.Join(mnt, "events.jsonl")
	w, err := Open(path, Options{RetryEvery: time.Second, LossLine: JSONLossLine, Logf: t.Logf, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// A caller's buffer in front, as the agent has: it must never die.
	bw := bufio.NewWriterSize(w, 4096)
	rec := strings.Repeat("x", 200)
	n := 0
	emit := func() {
		fmt.Fprintf(bw, "{\"n\":%d,\"rec\":%q}\n", n, rec)
		n++
	}
	for w.Err() == nil && n < 100000 {
		emit()
	}
	if err := bw.Flush(); err != nil {
		t.Fatalf("the caller's buffer died: %v", err)
	}
	if !errors.Is(w.Err(), syscall.ENOSPC) {
		t.Fatalf("Err = %v after %d lines, want ENOSPC", w.Err(), n)
	}
	// While full, and before the retry is due: counted, not tried.
	for range 50 {
		emit()
	}
	bw.Flush()
	st := w.Stats()
	if st.LostLines == 0 || st.FailingSince.IsZero() {
		t.Fatalf("stats %+v: want lost lines counted", st)
	}
	lostBefore := st.LostLines

	// Space returns; the next write after the pause goes through.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	clk.advance(2 * time.Second)
	emit()
	last := n - 1
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := w.Err(); err != nil {
		t.Fatalf("Err = %v after space returned", err)
	}
	if st := w.Stats(); st.LostLines != lostBefore {
		t.Fatalf("lost %d after recovery, want %d", st.LostLines, lostBefore)
	}

	// Every line of the file is whole JSON; the loss line counts what is
	// missing; the numbers written plus those lost are all of them.
	data := readFile(t, path)
	var seen, lossLines int
	var lost uint64
	for i, l := range strings.Split(strings.TrimSuffix(data, "\n"), "\n") {
		var v struct {
			N    *int  `json:"n"`
			Lost *Loss `json:"output_lost"`
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("line %d %.60q is not whole JSON: %v", i+1, l, err)
		}
		switch {
		case v.Lost != nil:
			lossLines++
			lost += v.Lost.Lines
			if v.Lost.Error == "" || v.Lost.Since.IsZero() || v.Lost.Until.Before(v.Lost.Since) {
				t.Errorf("loss line %+v: want the error and the times", *v.Lost)
			}
		case v.N != nil:
			seen++
		}
	}
	if lossLines != 1 || lost != lostBefore {
		t.Fatalf("%d loss lines counting %d, want one counting %d", lossLines, lost, lostBefore)
	}
	if uint64(seen)+lost != uint64(n) {
		t.Fatalf("%d lines written + %d lost != %d emitted", seen, lost, n)
	}
	if !strings.Contains(data, fmt.Sprintf("{\"n\":%d,", last)) {
		t.Fatal("the line written after recovery is missing")
	}
}

// TestFlushRecovers: a quiet output does not stay failed once the disk is
// writable again (Flush retries and writes the loss line).
func TestFlushRecovers(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "out")
	w, err := Open(path, Options{LossLine: JSONLossLine, Logf: t.Logf, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// A file that cannot be written: a read-only descriptor stands in for a
	// full disk.
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	w.f.Close()
	w.f = ro
	w.nextCheck = clk.now().Add(time.Hour)
	w.mu.Unlock()
	io.WriteString(w, line(1)+line(2))
	if w.Err() == nil || w.Stats().LostLines != 2 {
		t.Fatalf("stats %+v: want 2 lost lines and an error", w.Stats())
	}
	if err := w.Flush(); err == nil {
		t.Fatal("Flush before the pause is over: want the error still")
	}
	clk.advance(2 * time.Second) // the retry reopens the file for writing
	if err := w.Flush(); err != nil {
		t.Fatalf("Flush after the pause: %v", err)
	}
	var v struct {
		Lost Loss `json:"output_lost"`
	}
	if err := json.Unmarshal(bytes.TrimSpace([]byte(readFile(t, path))), &v); err != nil || v.Lost.Lines != 2 {
		t.Fatalf("file %q: want one loss line of 2 lines (%v)", readFile(t, path), err)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"0", 0, false},
		{"4096", 4096, false},
		{"100MiB", 100 << 20, false},
		{"100M", 100 << 20, false},
		{"1GiB", 1 << 30, false},
		{"5MB", 5e6, false},
		{"2 KiB", 2048, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"10XB", 0, true},
		{"-1", 0, true},
		{"99999999999TiB", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("ParseSize(%q) = %d, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}
