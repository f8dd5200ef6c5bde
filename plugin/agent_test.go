package plugin

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/event"
)

// failingMonitor is a tracer whose reader fails at once.
type failingMonitor struct{ fakeTracer }

func (failingMonitor) Run(context.Context, func(*event.Event)) error { return errors.New("ring gone") }

// idleMonitor is a tracer with no events.
type idleMonitor struct{ fakeTracer }

func (idleMonitor) Run(ctx context.Context, _ func(*event.Event)) error { <-ctx.Done(); return nil }

func testAgentConfig(t *testing.T) AgentConfig {
	dir := t.TempDir()
	return AgentConfig{NRISocket: filepath.Join(dir, "no-runtime.sock"), ControlSocket: filepath.Join(dir, "vigil.sock"),
		ListenerPath: filepath.Join(dir, "seccomp.sock"), CgroupRoot: dir, Reconnect: 20 * time.Millisecond}
}

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func TestAgentStopsWhenTracerFails(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		done <- RunAgent(context.Background(), testAgentConfig(t), &failingMonitor{fakeTracer{tracked: map[uint64]bpf.Counters{}}}, quietLog())
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "tracer: ring gone") {
			t.Fatalf("RunAgent = %v, want the tracer's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the agent kept running without its tracer")
	}
}

func TestAgentStatusWithoutRuntime(t *testing.T) {
	cfg := testAgentConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RunAgent(ctx, cfg, &idleMonitor{fakeTracer{tracked: map[uint64]bpf.Counters{}}}, quietLog())
	}()
	var resp *Response
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = Call(cfg.ControlSocket, Request{Op: "status"}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, sock := range []string{cfg.ControlSocket, cfg.ListenerPath} {
		if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", sock, fi.Mode().Perm(), err)
		}
	}
	if resp.Status.Connected || resp.Status.Connections != 0 {
		t.Errorf("status %+v: want not connected (no runtime)", resp.Status)
	}
	if _, err := Call(cfg.ControlSocket, Request{Op: "bogus"}); err == nil || !strings.Contains(err.Error(), `unknown op "bogus"`) {
		t.Errorf("bogus op: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunAgent after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the agent did not stop")
	}
}
