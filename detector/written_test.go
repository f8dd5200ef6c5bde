package detector

import (
	"fmt"
	"testing"
)

// writtenPaths are n distinct absolute paths, as a tar of n files
// creates them.
func writtenPaths(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("/dev/shm/h14/x/d%d/f%d.txt", i%7, i)
	}
	return out
}

// TestWrittenFilesNoAllocation: once the table is full, a new written
// path takes the memory of the one it evicts (a tar of thousands of files
// made two allocations per created file).
func TestWrittenFilesNoAllocation(t *testing.T) {
	paths := writtenPaths(3 * maxWritten)
	var w writtenFiles
	for _, p := range paths[:maxWritten+writtenFree] {
		w.put(p, "/usr/bin/tar")
	}
	i := maxWritten + writtenFree
	allocs := testing.AllocsPerRun(1000, func() {
		w.put(paths[i%len(paths)], "/usr/bin/tar")
		i++
	})
	if allocs != 0 {
		t.Errorf("put of a new path into a full table: %.1f allocations, want 0", allocs)
	}
}

// TestWrittenFilesAfterEvictions: paths whose memory was reused many
// times still name their own entries: the last maxWritten paths are
// found with their writers, the older ones are gone, and a rename moves
// an entry.
func TestWrittenFilesAfterEvictions(t *testing.T) {
	paths := writtenPaths(5 * maxWritten)
	// Short and long paths mixed: memory of one length serves another.
	for i := range paths {
		if i%3 == 0 {
			paths[i] += "/a/much/longer/tail/than/the/others/have"
		}
	}
	var w writtenFiles
	for i, p := range paths {
		w.put(p, fmt.Sprintf("/bin/w%d", i))
	}
	if n := w.l.len(); n != maxWritten {
		t.Fatalf("%d paths kept, want %d", n, maxWritten)
	}
	first := len(paths) - maxWritten
	for i, p := range paths {
		exe, ok := w.writer(p)
		switch {
		case i < first && ok:
			t.Fatalf("evicted path %d %s still found (writer %q)", i, p, exe)
		case i >= first && (!ok || exe != fmt.Sprintf("/bin/w%d", i)):
			t.Fatalf("path %d %s: writer %q, %v; want /bin/w%d", i, p, exe, ok, i)
		}
	}
	seen := 0
	w.l.each(func(k string, v *writtenFile) {
		if k != string(v.key) {
			t.Errorf("key %q beside memory %q", k, v.key)
		}
		seen++
	})
	if seen != maxWritten {
		t.Errorf("%d entries listed, want %d", seen, maxWritten)
	}

	// A rename: the old name's memory goes to the new one.
	old, moved := paths[len(paths)-1], "/dev/shm/h14/x/renamed.so"
	exe, _ := w.writer(old)
	w.remove(old)
	w.put(moved, exe)
	if _, ok := w.writer(old); ok {
		t.Errorf("%s still found after its rename", old)
	}
	if got, ok := w.writer(moved); !ok || got != exe {
		t.Errorf("renamed %s: writer %q, %v; want %q", moved, got, ok, exe)
	}
	if got, ok := w.writer(paths[len(paths)-2]); !ok || got != fmt.Sprintf("/bin/w%d", len(paths)-2) {
		t.Errorf("%s after the rename: writer %q, %v", paths[len(paths)-2], got, ok)
	}
}

// BenchmarkWrittenPut is a written-file table under a tar of 5,000
// files: every created file is a new path and evicts the oldest.
func BenchmarkWrittenPut(b *testing.B) {
	paths := writtenPaths(5000)
	var w writtenFiles
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		w.put(paths[i%len(paths)], "/usr/bin/tar")
	}
}
