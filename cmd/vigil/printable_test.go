package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// forgedComm would start a fake event line if printed raw.
const forgedComm = "x\n12:00:00.000000 init[1/1] fake"

// TestTraceTextIsOneLinePerRecord: a traced program's comm, socket
// address, paths and argv, and verdicts and actions that quote them, are
// escaped in 'vigil trace' text output.
func TestTraceTextIsOneLinePerRecord(t *testing.T) {
	connect, _ := event.SyscallNr("connect")
	execve, _ := event.SyscallNr("execve")
	var b bytes.Buffer
	w := newEventWriter(&b, false, false)
	w.Event(&event.Event{Time: time.Unix(0, 0), PID: 1, TID: 1, Comm: forgedComm, Nr: int32(execve), Path: "/bin/\x1b[2J", Argv: []string{"a\nb"}})
	w.Event(&event.Event{Time: time.Unix(0, 0), PID: 1, TID: 1, Comm: forgedComm, Nr: int32(connect), Ret: -111,
		Addr: event.Addr{Family: event.AFUnix, Path: "/run/\x1b[2Jx.sock"}})
	w.Verdict(&detector.Verdict{Severity: detector.High, Class: detector.ClassNetwork, Rule: "r", PID: 1, Comm: forgedComm,
		Message: forgedComm + " connects to unix:/run/\x1b[2Jx.sock", Actions: []string{"kill"}, Mode: "enforce"})
	w.Action(control.Record{Action: "kill", Detail: "pid 1 " + forgedComm, Error: "no such process\x1b[2J"})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if n := strings.Count(out, "\n"); n != 4 {
		t.Fatalf("%d lines for 4 records:\n%s", n, out)
	}
	for _, raw := range []string{"\x1b", "\n12:00:00"} {
		if strings.Contains(out, raw) {
			t.Errorf("trace output holds %q raw:\n%q", raw, out)
		}
	}
	for _, want := range []string{
		`x\n12:00:00.000000 init[1/1] fake[1/1] connect(`,
		` addr=unix:/run/\x1b[2Jx.sock`,
		`path="/bin/\x1b[2J" argv=["a\nb"]`,
		`comm=x\n12:00:00.000000 init[1/1] fake: x\n12:00:00`,
		`failed: no such process\x1b[2J (pid 1 x\n12:00:00`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("trace output lacks %q:\n%s", want, out)
		}
	}
}

// TestStatusIsOneLinePerRow: container names come from the pod's
// annotations; a newline, tab or escape in them cannot forge rows or
// columns of 'vigil status'.
func TestStatusIsOneLinePerRow(t *testing.T) {
	st := &agentctl.Status{
		Containers: []agentctl.ContainerStatus{{Container: event.Container{ID: "c1", Name: "app\nshop  web  fake  running", Pod: "web\tx", Namespace: "\x1b[2Jshop"}, State: "running"}},
		InForce:    []agentctl.InForce{{Action: "throttle", ContainerID: "c1", Detail: "for " + forgedComm}},
		Rejected:   []string{"id\x1b[2J"},
		Outputs:    []agentctl.OutputStatus{{Name: "events", Path: "/var/log/vigil/events.jsonl", LostLines: 7, Error: "no space left on device"}},
		AuditLost:  3, AuditFull: true,
	}
	var b bytes.Buffer
	printStatus(&b, st)
	out := b.String()
	for _, raw := range []string{"\x1b", "\n12:00:00", "\nshop  web", "\t"} {
		if strings.Contains(out, raw) {
			t.Errorf("status holds %q raw:\n%q", raw, out)
		}
	}
	for _, want := range []string{`\x1b[2Jshop`, `web\tx`, `app\nshop`, `for x\n12:00:00`, `refused): id\x1b[2J`,
		"output events /var/log/vigil/events.jsonl: 0 bytes written, 0 rotations, 7 lines lost; CANNOT WRITE: no space left on device",
		"audit log: 0 bytes written, 3 records lost; DISK FULL"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}
