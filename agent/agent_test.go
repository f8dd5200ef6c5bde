package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// fakeTracer tracks nothing for real; the real tracer is exercised by the
// end-to-end tests.
type fakeTracer struct{ tracked map[uint64]bpf.Counters }

func (f *fakeTracer) Track(id uint64) error { f.tracked[id] = bpf.Counters{}; return nil }
func (f *fakeTracer) Untrack(id uint64) (bpf.Counters, error) {
	c, ok := f.tracked[id]
	if !ok {
		return c, bpf.ErrNotTracked
	}
	delete(f.tracked, id)
	return c, nil
}
func (f *fakeTracer) Counters(id uint64) (bpf.Counters, error) {
	c, ok := f.tracked[id]
	if !ok {
		return c, bpf.ErrNotTracked
	}
	return c, nil
}
func (f *fakeTracer) Tracked() (map[uint64]bpf.Counters, error) { return maps.Clone(f.tracked), nil }

// failingMonitor is a tracer whose reader fails at once.
type failingMonitor struct{ fakeTracer }

func (failingMonitor) Consume(context.Context, bpf.Consumer) error {
	return errors.New("ring gone")
}

// idleMonitor is a tracer with no events.
type idleMonitor struct{ fakeTracer }

func (idleMonitor) Consume(ctx context.Context, _ bpf.Consumer) error {
	<-ctx.Done()
	return nil
}

func testAgentConfig(t *testing.T) Config {
	dir := t.TempDir()
	return Config{NRISocket: filepath.Join(dir, "no-runtime.sock"), ControlSocket: filepath.Join(dir, "vigil.sock"),
		ListenerPath: filepath.Join(dir, "seccomp.sock"), CgroupRoot: dir, Reconnect: 20 * time.Millisecond,
		StateFile: filepath.Join(dir, "control.json")}
}

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func TestAgentStopsWhenTracerFails(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), testAgentConfig(t), &failingMonitor{fakeTracer{tracked: map[uint64]bpf.Counters{}}}, quietLog())
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
		done <- Run(ctx, cfg, &idleMonitor{fakeTracer{tracked: map[uint64]bpf.Counters{}}}, quietLog())
	}()
	var resp *agentctl.Response
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = agentctl.Call(cfg.ControlSocket, agentctl.Request{Op: "status"}); err == nil {
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
	if h := resp.Status.Held; h == nil || h.Goroutines <= 0 || h.FDs <= 0 || h.Tracked != 0 || h.Detector != 0 || h.Audit != 0 {
		t.Errorf("status held %+v: want the agent's goroutines and fds, and no container state", h)
	}
	if _, err := agentctl.Call(cfg.ControlSocket, agentctl.Request{Op: "bogus"}); err == nil || !strings.Contains(err.Error(), `unknown op "bogus"`) {
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

// eventsMonitor is a tracer that delivers a fixed list of events, then idles.
type eventsMonitor struct {
	fakeTracer
	evs []event.Event
}

func (m *eventsMonitor) Consume(ctx context.Context, c bpf.Consumer) error {
	for i := range m.evs {
		ev := m.evs[i]
		c.Event(&ev)
	}
	c.EndBatch()
	<-ctx.Done()
	return nil
}

// TestAgentDetects: with a detector the agent turns events into verdicts,
// written into the event stream and counted in its status.
func TestAgentDetects(t *testing.T) {
	cfg := testAgentConfig(t)
	var out, alerts syncBuffer
	cfg.Events = &out
	cfg.Alerts = &alerts
	openat, _ := event.SyscallNr("openat")
	execve, _ := event.SyscallNr("execve")
	mon := &eventsMonitor{fakeTracer: fakeTracer{tracked: map[uint64]bpf.Counters{}}, evs: []event.Event{
		{Seq: 1, CgroupID: 9, PID: 5, TID: 5, Comm: "cat", Nr: int32(execve), Ret: 0, Path: "/bin/cat", Time: time.Unix(1, 0)},
		{Seq: 2, CgroupID: 9, PID: 5, TID: 5, Comm: "cat", Nr: int32(openat), Ret: 3, Path: "/proc/1/root/etc/shadow", Time: time.Unix(2, 0)},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, mon, quietLog()) }()
	var resp *agentctl.Response
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = agentctl.Call(cfg.ControlSocket, agentctl.Request{Op: "status"}); err == nil && resp.Status.Verdicts > 0 {
			break
		}
	}
	if err != nil || resp.Status.Verdicts == 0 {
		t.Fatalf("status %+v, %v: want a verdict for the read through /proc/1/root", resp, err)
	}
	if resp.Status.Events != 2 {
		t.Errorf("status events %d, want 2 (verdict lines are not events)", resp.Status.Events)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var verdicts int
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var l struct {
			Verdict *detector.Verdict `json:"verdict"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("not JSON: %s", line)
		}
		if l.Verdict != nil {
			verdicts++
			if l.Verdict.Class != "fs-escape" || l.Verdict.CgroupID != 9 {
				t.Errorf("verdict %+v", l.Verdict)
			}
		}
	}
	if verdicts != int(resp.Status.Verdicts) {
		t.Errorf("%d verdict lines, status says %d", verdicts, resp.Status.Verdicts)
	}
	// The alert stream holds each verdict as one falcosidekick-shaped line.
	var nalerts int
	for _, line := range strings.Split(strings.TrimSpace(alerts.String()), "\n") {
		var a struct {
			Rule, Priority, Output string
		}
		if err := json.Unmarshal([]byte(line), &a); err != nil || a.Rule == "" || a.Priority == "" || a.Output == "" {
			t.Fatalf("alert line %q: %v", line, err)
		}
		nalerts++
	}
	if nalerts != verdicts {
		t.Errorf("%d alert lines for %d verdicts", nalerts, verdicts)
	}
}

// syncBuffer is a bytes.Buffer safe for the agent's writer and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
