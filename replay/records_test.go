package replay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/event"
)

func TestFormatEvent(t *testing.T) {
	nr := func(name string) int32 {
		n, ok := event.SyscallNr(name)
		if !ok {
			t.Fatalf("no syscall %s", name)
		}
		return int32(n)
	}
	cases := []struct {
		name string
		ev   event.Event
		want string
	}{
		{"a path", event.Event{PID: 7, TID: 7, Comm: "cat", Nr: nr("openat"), Path: "/etc/passwd", Ret: 3, Seq: 1},
			`pid 7 cat openat("/etc/passwd") = 3 seq 1`},
		{"a thread, a failure", event.Event{PID: 7, TID: 9, Comm: "cat", Nr: nr("openat"), Path: "/root/x", Ret: -13, Seq: 2},
			`pid 7/9 cat openat("/root/x") = -13 EACCES seq 2`},
		{"two paths", event.Event{PID: 7, TID: 7, Comm: "mv", Nr: nr("renameat2"), Path: "/tmp/a", Path2: "/tmp/b", Seq: 3},
			`pid 7 mv renameat2("/tmp/a", "/tmp/b") = 0 seq 3`},
		{"argv, no return", event.Event{PID: 7, TID: 7, Comm: "sh", Nr: nr("execve"), Path: "/usr/bin/nc", Argv: []string{"nc", "-l", "a b"}, Flags: event.NoReturn, Seq: 4},
			`pid 7 sh execve("/usr/bin/nc", ["nc" "-l" "a b"]) (no return) seq 4`},
		{"an address", event.Event{PID: 7, TID: 7, Comm: "curl", Nr: nr("connect"), Ret: -111, Seq: 5,
			Addr: event.Addr{Family: event.AFInet, IP: netip.MustParseAddr("10.0.0.1"), Port: 80}},
			`pid 7 curl connect(10.0.0.1:80) = -111 ECONNREFUSED seq 5`},
		{"small and large arguments", event.Event{PID: 7, TID: 7, Comm: "app", Nr: nr("read"), Args: [6]uint64{3, 0x5600000, 4096}, Ret: 100, Seq: 6},
			`pid 7 app read(3, 0x5600000, 4096) = 100 seq 6`},
		{"more than three arguments", event.Event{PID: 7, TID: 7, Comm: "app", Nr: nr("futex"), Args: [6]uint64{0x7f0000001000, 0x80, 0, 0, 0, 7}, Ret: -11, Seq: 7},
			`pid 7 app futex(0x7f0000001000, 128, 0, ...) = -11 EAGAIN seq 7`},
		{"no arguments", event.Event{PID: 7, TID: 7, Comm: "app", Nr: nr("getppid"), Ret: 1, Seq: 8},
			`pid 7 app getppid() = 1 seq 8`},
		{"lost", event.Event{PID: 7, TID: 7, Comm: "app", Nr: nr("getppid"), Flags: event.Lost, Count: 12, Seq: 9},
			`pid 7 app getppid() = 0 [lost 12] seq 9`},
		{"truncated", event.Event{PID: 7, TID: 7, Comm: "app", Nr: nr("openat"), Path: "/very/long", Flags: event.Truncated, Seq: 10},
			`pid 7 app openat("/very/long") = 0 [truncated] seq 10`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatEvent(&tc.ev); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestShow(t *testing.T) {
	dir := scene(t, ruleFile(t, "rules:"+metadataRule))
	cases := []struct {
		name  string
		spec  Spec
		limit int
	}{
		{"show", Spec{}, 0},
		{"show-pod", Spec{Pod: "db-0"}, 0},
		{"show-verdicts", Spec{Verdicts: true, Syscalls: "execve"}, 0},
		{"show-limit", Spec{Syscalls: "openat,connect", Kinds: "event,gap"}, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := tc.spec.Parse(base)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := Show(dir, sel, &out, tc.limit); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".golden", out.Bytes())
		})
	}
}

// exportLine is what a consumer reads of an export line.
type exportLine struct {
	Time      time.Time
	Node      *string
	Index     uint64
	Kind      string
	Cgroup    uint64
	Container string
	CSeq      uint64
	Segment   uint64
	Event     *event.Event
	Body      json.RawMessage
}

func readExport(t *testing.T, r io.Reader) []exportLine {
	t.Helper()
	var out []exportLine
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var l exportLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func TestExport(t *testing.T) {
	dir := scene(t, ruleFile(t, "rules:"+metadataRule))
	all, err := Spec{}.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	n, last, err := Export(dir, all, &out, 0, "n1")
	if err != nil {
		t.Fatal(err)
	}
	lines := readExport(t, &out)
	if n != len(lines) || last != uint64(n) {
		t.Fatalf("export: %d lines, says %d written and %d last", len(lines), n, last)
	}
	kinds := map[string]int{}
	for i, l := range lines {
		if l.Index != uint64(i+1) || l.Node == nil || *l.Node != "n1" || l.Time.IsZero() || (l.Kind == "event") != (l.Event != nil) || (l.Event == nil) == (l.Body == nil) {
			t.Fatalf("line %d: %+v", i+1, l)
		}
		kinds[l.Kind]++
	}
	want := map[string]int{"agent": 1, "lifecycle": 1, "event": 10, "verdict": 1, "gap": 1, "action": 1, "policy": 1}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}

	t.Run("limit, no node, the last index passed", func(t *testing.T) {
		sel, err := Spec{CgroupID: 5001}.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		n, last, err := Export(dir, sel, &out, 2, "")
		if err != nil {
			t.Fatal(err)
		}
		lines := readExport(t, &out)
		if n != 2 || len(lines) != 2 || last != lines[1].Index || lines[0].Node != nil || lines[0].Cgroup != 5001 || lines[0].Kind != "lifecycle" {
			t.Fatalf("%d written, last %d: %+v", n, last, lines)
		}
	})
	t.Run("a pod", func(t *testing.T) {
		sel, err := Spec{Pod: "prod/shop-1", Kinds: "verdict,action"}.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if _, _, err := Export(dir, sel, &out, 0, ""); err != nil {
			t.Fatal(err)
		}
		lines := readExport(t, &out)
		if len(lines) != 2 || lines[0].Kind != "verdict" || lines[1].Kind != "action" || !strings.HasPrefix(lines[1].Container, "3f2a") {
			t.Fatalf("%+v", lines)
		}
	})
}

func TestFollow(t *testing.T) {
	d := t.TempDir()
	w, err := audit.Open(audit.Options{Dir: d + "/audit", KeyFile: audit.DefaultKeyFile(d + "/audit"), Fsync: audit.FsyncNever, FlushInterval: 10 * time.Millisecond,
		Logf: func(format string, args ...any) { t.Logf(format, args...) }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < 3; i++ {
		mustAppend(t, w, audit.KindPolicy, 0, "", map[string]int{"i": i})
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	sel, err := Spec{Kinds: "policy"}.Parse(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Follow(d+"/audit", sel, pw, 6, "n", 10*time.Millisecond); pw.Close() }()
	go func() {
		time.Sleep(50 * time.Millisecond)
		if err := w.Append(audit.KindAgent, 0, "", audit.Agent{Event: "stop"}); err != nil { // not selected
			t.Error(err)
		}
		for i := 3; i < 8; i++ {
			if err := w.Append(audit.KindPolicy, 0, "", map[string]int{"i": i}); err != nil {
				t.Error(err)
			}
		}
	}()
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(r); got <- b }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Follow did not write 6 records in 20s")
	}
	var idx []uint64
	for _, l := range readExport(t, bytes.NewReader(<-got)) {
		idx = append(idx, l.Index)
	}
	if fmt.Sprint(idx) != "[1 2 3 5 6 7]" {
		t.Fatalf("indexes %v, want the first 6 policy records, [1 2 3 5 6 7]", idx)
	}
}

func TestShowAndExportCheckSignatures(t *testing.T) {
	dir := scene(t, ruleFile(t, "rules:"+metadataRule))
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.vlog"))
	if len(segs) == 0 {
		t.Fatal("no segments")
	}
	// The last bytes of a sealed segment are its seal's signature: an
	// attacker who rewrites a segment cannot sign it again.
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	sel, err := Spec{}.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = Show(dir, sel, &out, 0)
	if err == nil || !strings.Contains(err.Error(), "segment 1 ") || !strings.Contains(err.Error(), "signature does not verify") {
		t.Fatalf("show of a segment with a forged signature: %v, want an error naming segment 1 and the signature", err)
	}
	if _, _, err := Export(dir, sel, io.Discard, 0, "n"); err == nil || !strings.Contains(err.Error(), "signature does not verify") {
		t.Fatalf("export of a segment with a forged signature: %v", err)
	}
	sel.Read.Unverified = true
	out.Reset()
	if err := Show(dir, sel, &out, 0); err != nil || out.Len() == 0 {
		t.Fatalf("show, unverified: %v, %d bytes", err, out.Len())
	}
}
