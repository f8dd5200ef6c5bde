package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSettleWaitsOneStillLook(t *testing.T) {
	s := newSettle("a")
	for i, c := range []struct {
		fp     string
		reload bool
	}{
		{"a", false}, // nothing changed
		{"b", false}, // changed: wait a look
		{"c", false}, // still changing
		{"c", true},  // held still: load it
		{"c", false}, // loaded already
		{"a", false}, // back to an earlier state: it changed again
		{"a", true},
	} {
		if got := s.look(c.fp); got != c.reload {
			t.Fatalf("look %d (%q): reload %v, want %v", i, c.fp, got, c.reload)
		}
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
	fingerprint := func() string {
		select {
		case ready <- struct{}{}:
		case <-ctx.Done():
			return "-"
		}
		select {
		case <-proceed:
		case <-ctx.Done():
			return "-"
		}
		fp := "-"
		if st, err := os.Stat(path); err == nil {
			fp = fmt.Sprintf("%d:%d", st.Size(), st.ModTime().UnixNano())
		}
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
	if _, err := f.WriteString("rules: v2\n"); err != nil {
		t.Fatal(err)
	}
	proceed <- struct{}{}
	<-looks
	for {
		select {
		case got := <-loaded:
			if got != "rules: v2\n" {
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
