package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSettleWaitsOneStillLook(t *testing.T) {
	s := settle{seen: "a"}
	for i, c := range []struct {
		fp           string
		load, moving bool
	}{
		{"a", false, false}, // nothing changed
		{"b", false, true},  // changed: wait a look
		{"c", false, true},  // still changing
		{"c", true, false},  // held still: load it
		{"c", false, false}, // loaded already
		{"d", false, true},
		{"c", false, true}, // back to what was loaded: it changed all the same
		{"c", true, false},
	} {
		load, moving := s.look(c.fp)
		if load != c.load || moving != c.moving {
			t.Fatalf("look %d (%q): load %v moving %v, want %v %v", i, c.fp, load, moving, c.load, c.moving)
		}
	}
}

// fakeFile is a watched file the tests change between the watcher's
// looks: at looks, before the look with that number, the file's content
// (its fingerprint) becomes the value; during, when set, changes it while
// the first forced reload reads it. It returns what each reload read.
func fakeFile(t *testing.T, at map[int]string, hupAt int, during string) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup := make(chan os.Signal, 1)
	var mu sync.Mutex
	file, looks := "v1", 0
	var read []string
	fingerprint := func() string {
		mu.Lock()
		defer mu.Unlock()
		if v, ok := at[looks]; ok {
			file = v
		}
		if looks == hupAt {
			hup <- os.Interrupt
		}
		looks++
		return file
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchFiles(ctx, time.Millisecond, hup, fingerprint, func(forced bool) {
			mu.Lock()
			defer mu.Unlock()
			read = append(read, fmt.Sprintf("%s:%v", file, forced))
			if forced && during != "" {
				file, during = during, ""
			}
		})
	}()
	end := hupAt
	for i := range at {
		end = max(end, i)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		n := looks
		mu.Unlock()
		if n > end+10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher stopped looking")
		}
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return read
}

// A file rewritten back to the fingerprint that was loaded (the same size
// within the clock's granularity) is loaded all the same.
func TestWatchReloadsBackToSameFingerprint(t *testing.T) {
	got := fakeFile(t, map[int]string{3: "empty", 4: "v1"}, -1, "")
	if !slices.Equal(got, []string{"v1:false"}) {
		t.Fatalf("reloads read %v, want one of the rewritten file", got)
	}
}

// A signal's reload that reads a file while it is written: the finished
// file is loaded once it holds still.
func TestWatchSignalDuringWrite(t *testing.T) {
	got := fakeFile(t, map[int]string{3: "empty"}, 3, "v2")
	if len(got) == 0 || got[len(got)-1] != "v2:false" || !slices.Contains(got, "empty:true") {
		t.Fatalf("reloads read %v, want the signal's of the half-written file, then the finished file", got)
	}
}

// A writer that truncates the file, is seen by a look with the file empty,
// and only then writes: the watcher must load the written content, never
// the empty file.
func TestWatchNotLoadingHalfWrittenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte("rules: v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Each look announces itself and waits for the test's go before it
	// stats the file, so the test knows when the watcher has finished
	// acting on the previous look.
	ready, proceed, looks := make(chan struct{}), make(chan struct{}), make(chan string)
	last := ""
	fingerprint := func() string {
		select {
		case ready <- struct{}{}:
		case <-ctx.Done():
			return last
		}
		select {
		case <-proceed:
		case <-ctx.Done():
			return last
		}
		fp := "-"
		if st, err := os.Stat(path); err == nil {
			fp = fmt.Sprintf("%d:%d", st.Size(), st.ModTime().UnixNano())
		}
		last = fp
		select {
		case looks <- fp:
		case <-ctx.Done():
		}
		return fp
	}
	loaded := make(chan string, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchFiles(ctx, time.Millisecond, nil, fingerprint, func(bool) {
			b, _ := os.ReadFile(path)
			loaded <- string(b)
		})
	}()
	deadline := time.After(10 * time.Second)
	look := func() string {
		select {
		case <-ready:
		case <-deadline:
			t.Fatal("the watcher stopped looking")
		}
		proceed <- struct{}{}
		return <-looks
	}
	look() // the fingerprint of what is in force
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fp := look(); !strings.HasPrefix(fp, "0:") {
		t.Fatalf("the look after truncating saw %q, want an empty file", fp)
	}
	select {
	case <-ready: // it has acted on the empty look
	case <-deadline:
		t.Fatal("the watcher stopped looking")
	}
	select {
	case got := <-loaded:
		t.Fatalf("loaded the file while it was empty (%q)", got)
	default:
	}
	if _, err := f.WriteString("rules: v2, longer\n"); err != nil {
		t.Fatal(err)
	}
	proceed <- struct{}{}
	<-looks
	for {
		select {
		case got := <-loaded:
			if got != "rules: v2, longer\n" {
				t.Fatalf("loaded %q, want the written content", got)
			}
			cancel()
			<-done
			select {
			case again := <-loaded:
				t.Fatalf("loaded again (%q) with nothing changed", again)
			default:
			}
			return
		case <-ready:
			proceed <- struct{}{}
			<-looks
		case <-deadline:
			t.Fatal("the written content was never loaded")
		}
	}
}

func TestWatchReloadsOnSignal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup := make(chan os.Signal, 1)
	forcedCh := make(chan bool, 1)
	go watchFiles(ctx, time.Hour, hup, func() string { return "same" }, func(forced bool) { forcedCh <- forced })
	hup <- os.Interrupt
	select {
	case forced := <-forcedCh:
		if !forced {
			t.Fatal("a signal's reload is not marked as requested")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reload on the signal")
	}
}
