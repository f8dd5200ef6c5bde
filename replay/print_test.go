package replay

import (
	"bytes"
	"strings"
	"testing"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// forgedComm would start a fake event line if printed raw.
const forgedComm = "x\n12:00:00.000000 init[1/1] fake"

// TestTextIsOneLinePerRecord: a container's strings (its name from the
// pod, a comm, a socket path with a terminal escape, a rule message that
// quotes them) are escaped in 'vigil audit show', 'vigil audit replay'
// and the container list: each record stays one line.
func TestTextIsOneLinePerRecord(t *testing.T) {
	c := &event.Container{ID: "c0ffee0000000001", Name: "web\x1b]0;owned\x07", Pod: "p\nq", Namespace: "ns"}
	evs := events(t, 700, c, []call{
		{pid: 10, comm: forgedComm, name: "execve", path: "/bin/sh", argv: []string{"sh", "-c", "a\nb"}},
		{pid: 10, comm: forgedComm, name: "openat", path: "/tmp/\x1b[2J", ret: 3},
	})
	connect, _ := event.SyscallNr("connect")
	unixEv := evs[1]
	unixEv.Seq, unixEv.Nr, unixEv.Path = 3, int32(connect), ""
	unixEv.Addr = event.Addr{Family: event.AFUnix, Path: "/run/\x1b[2Jx.sock"}
	evs = append(evs, unixEv)
	verdict := detector.Verdict{ID: "v1", CgroupID: 700, Container: c, PID: 10, Comm: forgedComm, Class: "network",
		Severity: detector.High, Rule: "r", Message: forgedComm + " connects to unix:/run/\x1b[2Jx.sock\u009b2J", Time: recordTime}
	dir := writeLog(t, func(w *audit.Writer) {
		for i := range evs {
			mustAppendEvent(t, w, &evs[i])
		}
		mustAppend(t, w, audit.KindVerdict, 700, c.ID, verdict)
		mustAppend(t, w, audit.KindLifecycle, 700, c.ID, audit.Lifecycle{Event: "stop", ID: c.ID, Name: c.Name + "\u202e", Pod: c.Pod})
	})
	const records = 5
	check := func(what, out string, lines int) {
		t.Helper()
		if n := strings.Count(out, "\n"); n != lines {
			t.Errorf("%s: %d lines, want %d:\n%s", what, n, lines, out)
		}
		for _, raw := range []string{"\x1b", "\u009b", "\u202e", "\n12:00:00", "\x07"} {
			if strings.Contains(out, raw) {
				t.Errorf("%s holds %q raw:\n%q", what, raw, out)
			}
		}
	}

	sel, err := Spec{}.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Show(dir, sel, &out, 0); err != nil {
		t.Fatal(err)
	}
	check("show", out.String(), records)
	for _, want := range []string{`x\n12:00:00.000000 init[1/1] fake`, `unix:/run/\x1b[2Jx.sock`, `\u009b2J`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show lacks %q:\n%s", want, out.String())
		}
	}

	tl, err := Build(dir, audit.Filter{ContainerID: c.ID}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	tl.Print(&out, 0)
	check("timeline", out.String(), strings.Count(out.String(), "\n"))
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "12:00:00") {
			t.Errorf("timeline has a forged line %q", l)
		}
	}
	if !strings.Contains(out.String(), `web\x1b]0;owned\x07`) {
		t.Errorf("timeline lacks the escaped container name:\n%s", out.String())
	}

	out.Reset()
	if err := ListContainers(dir, &out); err != nil {
		t.Fatal(err)
	}
	check("containers", out.String(), 2)
}
