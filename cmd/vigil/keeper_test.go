package main

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/seccomp"
)

// TestKeeperStarterWaits: with --notify-keeper-wait, an agent whose keeper
// (a sidecar container) comes up after it uses that keeper instead of
// starting its own; when none comes, it starts one after the wait.
func TestKeeperStarterWaits(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	path := filepath.Join(t.TempDir(), "keeper.sock")
	started := 0
	start := func(string) error { started++; return nil }

	// Nobody comes: the agent starts its own after the wait.
	t0 := time.Now()
	if err := keeperStarter(log, 150*time.Millisecond, start)(path); err != nil || started != 1 {
		t.Fatalf("no keeper: err %v, started %d, want nil and 1", err, started)
	}
	if d := time.Since(t0); d < 150*time.Millisecond {
		t.Errorf("started its own keeper after %v, before the wait of 150ms", d)
	}
	// No wait: at once.
	if err := keeperStarter(log, 0, start)(path); err != nil || started != 2 {
		t.Fatalf("no wait: err %v, started %d, want nil and 2", err, started)
	}

	// The sidecar's keeper comes up 300 ms after the agent looked.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		done <- seccomp.RunKeeper(ctx, path)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("keeper: %v", err)
		}
	}()
	if err := keeperStarter(log, 10*time.Second, start)(path); err != nil || started != 2 {
		t.Fatalf("sidecar keeper: err %v, started %d, want nil and still 2 (none of its own)", err, started)
	}
	if !seccomp.KeeperRunning(path) {
		t.Error("the keeper the agent waited for does not answer")
	}
}
