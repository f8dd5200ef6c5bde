package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/rotate"
)

// TestOutputLossesSurface: an event file that cannot be written (/dev/full
// answers every write with ENOSPC) does not stop the agent; its lost lines
// show in the status, the agent is unhealthy, and 'vigil reload' reopens
// the files (after logrotate).
func TestOutputLossesSurface(t *testing.T) {
	cfg := testAgentConfig(t)
	full, err := rotate.Open("/dev/full", rotate.Options{Logf: t.Logf})
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	decPath := filepath.Join(t.TempDir(), "decisions.jsonl")
	dec, err := rotate.Open(decPath, rotate.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	cfg.Events, cfg.Decisions = full, dec
	openat, _ := event.SyscallNr("openat")
	mon := &eventsMonitor{fakeTracer: fakeTracer{tracked: map[uint64]bpf.Counters{}}, evs: []event.Event{
		{Seq: 1, CgroupID: 9, PID: 5, TID: 5, Comm: "cat", Nr: int32(openat), Ret: 3, Path: "/etc/hosts", Time: time.Unix(1, 0)},
		{Seq: 2, CgroupID: 9, PID: 5, TID: 5, Comm: "cat", Nr: int32(openat), Ret: 3, Path: "/etc/passwd", Time: time.Unix(2, 0)},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, mon, quietLog()) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	outputs := func(st *agentctl.Status) map[string]agentctl.OutputStatus {
		m := map[string]agentctl.OutputStatus{}
		for _, o := range st.Outputs {
			m[o.Name] = o
		}
		return m
	}
	var st *agentctl.Status
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := agentctl.Call(cfg.ControlSocket, agentctl.Request{Op: agentctl.OpStatus})
		if err == nil && outputs(resp.Status)["events"].LostLines > 0 {
			st = resp.Status
			break
		}
	}
	if st == nil {
		t.Fatal("the status never counted the event lines /dev/full refused")
	}
	ev, dc := outputs(st)["events"], outputs(st)["decisions"]
	if ev.Path != "/dev/full" || !strings.Contains(ev.Error, "no space left") || ev.LostLines < 2 {
		t.Errorf("events output %+v: want 2 or more lost lines and the error", ev)
	}
	if dc.Path != decPath || dc.Error != "" || dc.LostLines != 0 {
		t.Errorf("decisions output %+v: want writable, nothing lost", dc)
	}
	if st.EventsError != "" {
		t.Errorf("events error %q: the event sink itself never fails on a rotating file", st.EventsError)
	}

	// logrotate moved the decisions file away; a reload reopens it.
	if err := os.Rename(decPath, decPath+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := agentctl.Call(cfg.ControlSocket, agentctl.Request{Op: agentctl.OpReload}); err != nil {
		t.Logf("reload: %v (what matters here is the reopen)", err)
	}
	if _, err := os.Stat(decPath); err != nil {
		t.Errorf("after reload: %v, want the decisions file opened again", err)
	}
}

func TestOutputsHealthy(t *testing.T) {
	full, err := rotate.Open("/dev/full", rotate.Options{Logf: t.Logf})
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	a := &Agent{cfg: Config{Events: full}, log: quietLog()}
	if err := a.outputsHealthy(); err != nil {
		t.Fatalf("before any write: %v", err)
	}
	full.Write([]byte("{}\n"))
	if err := a.outputsHealthy(); err == nil || !strings.Contains(err.Error(), "events output /dev/full") {
		t.Fatalf("outputsHealthy = %v, want the event output's error", err)
	}
}

// TestLogSinkPrintable: a container's strings in a verdict or action
// cannot forge log lines or reach the terminal, even in the coloured
// format, which prints the message raw.
func TestLogSinkPrintable(t *testing.T) {
	var b bytes.Buffer
	l := logrus.New()
	l.SetOutput(&b)
	l.SetFormatter(&logrus.TextFormatter{ForceColors: true, DisableTimestamp: true})
	forged := "x\n12:00:00.000000 init[1/1] fake"
	s := logSink{l}
	s.Verdict(&detector.Verdict{Rule: "r", Comm: forged, Message: "read by " + forged + " at unix:/run/\x1b[2J",
		Container: &event.Container{Name: "n\x1b]0;t\x07", Pod: "p"}})
	s.Action(control.Record{Action: "kill", Detail: "pid of " + forged})
	s.Action(control.Record{Action: "kill", Error: "failed for " + forged})
	out := b.String()
	if n := strings.Count(out, "\n"); n != 3 {
		t.Fatalf("%d lines for 3 records:\n%s", n, out)
	}
	for _, bad := range []string{"\x1b[2J", "\x1b]0;", "\n12:00"} {
		if strings.Contains(out, bad) {
			t.Errorf("log holds %q raw:\n%q", bad, out)
		}
	}
	if !strings.Contains(out, `x\n12:00:00.000000 init[1/1] fake`) || !strings.Contains(out, `unix:/run/\x1b[2J`) {
		t.Errorf("log lacks the escaped strings:\n%s", out)
	}
}
