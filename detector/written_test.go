package detector

import (
	"fmt"
	"math/rand/v2"
	"slices"
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
	for _, p := range paths[:maxWritten+16] {
		w.put(p, "/usr/bin/tar")
	}
	i := maxWritten + 16
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
	if n := w.len(); n != maxWritten {
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
	w.each(func(p, exe string) {
		if want := paths[first+seen]; p != want || exe != fmt.Sprintf("/bin/w%d", first+seen) {
			t.Errorf("entry %d: %q written by %q, want %q by /bin/w%d", seen, p, exe, want, first+seen)
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

// TestWrittenFilesAgainstReference drives the table with random puts,
// rewrites, renames and look-ups over few paths (long probe chains,
// removals from their middle, evictions) and checks every answer, the
// count and the order of eviction against a plain map and list: a path
// keeps its place when it is written again, the first put leaves first.
func TestWrittenFilesAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	paths := writtenPaths(4 * maxWritten)
	var w writtenFiles
	ref := map[string]string{}
	var order []string // put order of the paths held
	drop := func(p string) {
		delete(ref, p)
		order = slices.DeleteFunc(order, func(q string) bool { return q == p })
	}
	for step := 0; step < 200_000; step++ {
		// a window of paths that slides, so the table fills, evicts and
		// empties again
		lo := (step / 50) % (2 * maxWritten)
		p := paths[lo+rng.IntN(maxWritten+maxWritten/4)]
		switch op := rng.IntN(10); {
		case op < 7:
			exe := fmt.Sprintf("/bin/w%d", step)
			w.put(p, exe)
			if _, ok := ref[p]; !ok {
				if len(order) == maxWritten {
					drop(order[0])
				}
				order = append(order, p)
			}
			ref[p] = exe
		case op < 8:
			w.remove(p)
			drop(p)
		default:
			exe, ok := w.writer(p)
			if want, wantOK := ref[p]; exe != want || ok != wantOK {
				t.Fatalf("step %d: writer(%s) = %q, %v; want %q, %v", step, p, exe, ok, want, wantOK)
			}
		}
		if w.len() != len(ref) {
			t.Fatalf("step %d: %d paths held, want %d", step, w.len(), len(ref))
		}
		if step%1000 == 0 {
			var got []string
			w.each(func(p, _ string) { got = append(got, p) })
			if !slices.Equal(got, order) {
				t.Fatalf("step %d: put order %d paths, differs from the reference's %d", step, len(got), len(order))
			}
			for q, want := range ref {
				if exe, ok := w.writer(q); !ok || exe != want {
					t.Fatalf("step %d: writer(%s) = %q, %v; want %q", step, q, exe, ok, want)
				}
			}
		}
	}
}
