package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
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
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/privtest"
	"vigil.dev/vigil/replay"
)

func nrOf(t *testing.T, name string) int32 {
	t.Helper()
	n, ok := event.SyscallNr(name)
	if !ok {
		t.Fatalf("no syscall %s", name)
	}
	return int32(n)
}

// scenario is a synthetic run of two containers: mostly benign syscalls,
// with a few that the default rules flag (a mount, a metadata-endpoint
// connect, a netcat exec, /proc/sysrq-trigger), each from a few processes.
func scenario(t *testing.T) []event.Event {
	t.Helper()
	conts := []*event.Container{
		{ID: "3f2a9c0d1e2f30415263748596a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f", Name: "web", Pod: "shop-1", Namespace: "prod", Image: "shop/web:1"},
		{ID: "77aa9c0d1e2f30415263748596a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f", Name: "db", Pod: "db-0", Namespace: "prod", Image: "pg:16"},
	}
	base := time.Date(2026, 11, 28, 21, 0, 0, 0, time.UTC)
	var evs []event.Event
	seq := map[uint64]uint64{}
	kt := uint64(1_000_000_000)
	add := func(c int, pid uint32, comm string, ev event.Event) {
		cg := uint64(5000 + c)
		seq[cg]++
		kt += 20_000
		ev.Seq, ev.KTime, ev.Time, ev.CgroupID, ev.Container = seq[cg], kt, base.Add(time.Duration(kt)), cg, conts[c]
		ev.PID, ev.TID, ev.Comm = pid, pid, comm
		evs = append(evs, ev)
	}
	for round := 0; round < 3; round++ {
		for c := range conts {
			pid := uint32(100 + round*10 + c)
			// the process is forked by pid 1, then execs
			add(c, 1, "init", event.Event{Nr: nrOf(t, "clone"), Ret: int64(pid)})
			add(c, pid, "init", event.Event{Nr: nrOf(t, "execve"), Path: "/bin/app", Argv: []string{"app", "--round", string(rune('0' + round))}})
			for i := 0; i < 40; i++ {
				add(c, pid, "app", event.Event{Nr: nrOf(t, "openat"), Path: "/etc/passwd", Ret: 3, Args: [6]uint64{0xffffff9c, 0x7ffd0000, 0}})
				add(c, pid, "app", event.Event{Nr: nrOf(t, "read"), Ret: 100, Args: [6]uint64{3, 0x5600000, 4096}})
				add(c, pid, "app", event.Event{Nr: nrOf(t, "getppid"), Ret: 1})
			}
			add(c, pid, "app", event.Event{Nr: nrOf(t, "connect"), Ret: 0, Addr: event.Addr{Family: event.AFInet, IP: netip.MustParseAddr("169.254.169.254"), Port: 80}})
			add(c, pid, "app", event.Event{Nr: nrOf(t, "mount"), Ret: -1, Path: "/dev/sda1", Path2: "/mnt"})
			add(c, pid, "app", event.Event{Nr: nrOf(t, "openat"), Path: "/proc/sysrq-trigger", Ret: -13, Args: [6]uint64{0xffffff9c, 0x7ffd0000, 1}})
			add(c, pid, "app", event.Event{Nr: nrOf(t, "execve"), Path: "/usr/bin/nc", Argv: []string{"nc", "10.0.0.9", "4444"}, Flags: event.NoReturn})
			add(c, pid, "nc", event.Event{Nr: nrOf(t, "exit_group"), Args: [6]uint64{1}, Flags: event.NoReturn})
		}
	}
	return evs
}

// recordLive runs the scenario through the detector as vigil trace or the
// agent do (audit the event first, then the verdicts it causes) and
// returns the log dir and the live verdicts.
func recordLive(t *testing.T) (string, []detector.Verdict) {
	t.Helper()
	d := t.TempDir()
	dir := filepath.Join(d, "audit")
	w, err := audit.Open(audit.Options{Dir: dir, Fsync: audit.FsyncNever, BatchRecords: 64, SegmentBytes: 8 << 10, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := detector.New(detector.Config{Shards: 1, Lists: map[string][]string{"allowed_resolvers": detector.SystemResolvers("")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(audit.KindAgent, 0, "", audit.Agent{Event: "start", Version: "test"}); err != nil {
		t.Fatal(err)
	}
	var live []detector.Verdict
	evs := scenario(t)
	for i := range evs {
		ev := evs[i] // the tracer reuses its event: so do we
		if err := w.AppendEvent(&ev); err != nil {
			t.Fatal(err)
		}
		for _, v := range eng.Observe(&ev) {
			live = append(live, v)
			if err := w.Append(audit.KindVerdict, ev.CgroupID, ev.Container.ID, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, v := range eng.Flush() {
		live = append(live, v)
		w.Append(audit.KindVerdict, v.CgroupID, v.Container.ID, v)
	}
	if err := w.Append(audit.KindAction, 5000, evs[0].Container.ID, map[string]any{"action": "throttle", "cpu_shares": 2}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, live
}

func TestReplayReproducesLiveVerdicts(t *testing.T) {
	dir, live := recordLive(t)
	want := 0
	for _, v := range live {
		if v.CgroupID == 5000 {
			want++
		}
	}
	if want < 4 {
		t.Fatalf("the scenario made %d verdicts for the web container; want several to compare", want)
	}
	policy := filepath.Join(t.TempDir(), "other.yaml")
	os.WriteFile(policy, []byte(`rules:
  - rule: reads-passwd
    class: fs-escape
    severity: low
    desc: test rule
    message: "{comm} opens {path}"
    syscalls: [openat]
    when: {path: /etc/passwd}
`), 0o644)

	cases := []struct {
		name       string
		args       []string
		status     int
		same       bool
		reproduced int
		newRules   []string
	}{
		{"same rules", []string{"--container", "3f2a", "--detect", "--json", "--audit", dir}, 0, true, want, nil},
		{"other rules", []string{"--container", "3f2a", "--detect", "--no-default", "--policy", policy, "--json", dir}, 3, false, 0, []string{"reads-passwd"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if st := replayMain(tc.args, &out); st != tc.status {
				t.Fatalf("exit status %d, want %d\n%s", st, tc.status, out.String())
			}
			var tl timeline
			if err := json.Unmarshal(out.Bytes(), &tl); err != nil {
				t.Fatalf("replay --json: %v\n%s", err, out.String())
			}
			d := tl.Detect
			if d == nil || d.Same != tc.same || d.Recorded != want || d.Reproduced != tc.reproduced {
				t.Fatalf("detect result %+v, want same=%v, %d recorded, %d reproduced", d, tc.same, want, tc.reproduced)
			}
			if tc.same && (len(d.Missing) != 0 || len(d.New) != 0) {
				t.Fatalf("same rules: %d missing, %d new", len(d.Missing), len(d.New))
			}
			for _, r := range tc.newRules {
				found := false
				for _, v := range d.New {
					found = found || v.Rule == r
				}
				if !found || len(d.Missing) != want {
					t.Fatalf("other rules: want new %s verdicts and all %d recorded missing, got %d new, %d missing", r, want, len(d.New), len(d.Missing))
				}
			}
			// the timeline: 3 processes forked by pid 1, each exec'ing app then nc
			if len(tl.Processes) != 1 || tl.Processes[0].PID != 1 || len(tl.Processes[0].Children) != 3 {
				t.Fatalf("process tree: %d roots, want pid 1 with 3 children", len(tl.Processes))
			}
			child := tl.Processes[0].Children[0]
			if len(child.Execs) != 2 || child.Execs[1].Path != "/usr/bin/nc" || strings.Join(child.Execs[1].Argv, " ") != "nc 10.0.0.9 4444" || child.Exit == nil || *child.Exit != 1 {
				t.Fatalf("first child %+v: want execs of /bin/app and nc with argv, exit 1", child)
			}
			if len(tl.Files) == 0 || tl.Files[0].Name != "/etc/passwd" || tl.Files[0].Ops["openat"] != 120 {
				t.Fatalf("files: %+v, want /etc/passwd opened 120 times first", tl.Files[0])
			}
			if len(tl.Peers) != 1 || tl.Peers[0].Name != "169.254.169.254:80" {
				t.Fatalf("peers: %+v", tl.Peers)
			}
			if len(tl.Other) != 1 || tl.Other[0].Kind != audit.KindAction {
				t.Fatalf("other records: %+v, want the action", tl.Other)
			}
		})
	}
	// the text form names the sections
	var out bytes.Buffer
	if st := replayMain([]string{"--container", "3f2a", "--detect", "--audit", dir}, &out); st != 0 {
		t.Fatalf("text replay: status %d", st)
	}
	t.Logf("replay output:\n%s", out.String())
	for _, s := range []string{"log verified: records 1..", "processes (4)", "exec /usr/bin/nc", "network peers (1)", "verdicts (", "result: the same verdicts"} {
		if !strings.Contains(out.String(), s) {
			t.Fatalf("replay text lacks %q:\n%s", s, out.String())
		}
	}
}

func TestAuditCommands(t *testing.T) {
	dir, _ := recordLive(t)
	key := audit.DefaultKeyFile(dir)
	run := func(f func([]string, io.Writer) int, args ...string) (int, string) {
		var b bytes.Buffer
		return f(args, &b), b.String()
	}
	verify := func(args []string, w io.Writer) int { return auditVerify(args, w) }
	show := func(args []string, w io.Writer) int { return auditShow(args, w) }
	export := func(args []string, w io.Writer) int { return auditExport(args, w) }

	t.Run("verify intact", func(t *testing.T) {
		st, out := run(verify, "--key", key, dir)
		if st != 0 || !strings.Contains(out, ": OK") {
			t.Fatalf("status %d:\n%s", st, out)
		}
	})
	t.Run("show filters by syscall", func(t *testing.T) {
		st, out := run(show, "--syscall", "execve", "--kind", "event", dir)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if st != 0 || len(lines) != 12 {
			t.Fatalf("status %d, %d lines, want 12 execve events:\n%s", st, len(lines), out)
		}
		for _, l := range lines {
			if !strings.Contains(l, " execve(") {
				t.Fatalf("line %q is not an execve", l)
			}
		}
	})
	t.Run("show filters by pod and verdicts", func(t *testing.T) {
		st, out := run(show, dir, "--pod", "db-0", "--verdicts")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if st != 0 || len(lines) < 4 {
			t.Fatalf("status %d, %d lines:\n%s", st, len(lines), out)
		}
		for _, l := range lines {
			if !strings.Contains(l, " verdict ") || !strings.Contains(l, "77aa9c0d1e2f") {
				t.Fatalf("line %q is not a verdict of the db container", l)
			}
		}
	})
	t.Run("export is JSON lines with contiguous indexes", func(t *testing.T) {
		st, out := run(export, "--node", "n1", dir)
		if st != 0 {
			t.Fatalf("status %d", st)
		}
		sc := bufio.NewScanner(strings.NewReader(out))
		sc.Buffer(nil, 1<<20)
		idx := uint64(0)
		kinds := map[string]int{}
		for sc.Scan() {
			var l struct {
				Time  time.Time
				Node  string
				Index uint64
				Kind  string
				Event *event.Event
				Body  json.RawMessage
			}
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			idx++
			if l.Index != idx || l.Node != "n1" || l.Time.IsZero() || (l.Kind == "event") != (l.Event != nil) {
				t.Fatalf("line %d: %s", idx, sc.Text())
			}
			kinds[l.Kind]++
		}
		if kinds["agent"] != 1 || kinds["action"] != 1 || kinds["verdict"] == 0 || kinds["event"] != len(scenario(t)) {
			t.Fatalf("kinds %v", kinds)
		}
	})
	t.Run("replay refuses a log that does not verify", func(t *testing.T) {
		d := filepath.Join(t.TempDir(), "copy")
		os.MkdirAll(d, 0o700)
		segs, _ := filepath.Glob(filepath.Join(dir, "seg-*"))
		for _, s := range segs[1:] { // the first segment is gone
			b, _ := os.ReadFile(s)
			os.WriteFile(filepath.Join(d, filepath.Base(s)), b, 0o600)
		}
		var out bytes.Buffer
		if st := replayMain([]string{"--container", "3f2a", "--key", key, "--audit", d}, &out); st != 1 {
			t.Fatalf("replay of a log without its first segment: status %d, want 1", st)
		}
		if st := replayMain([]string{"--container", "3f2a", "--no-verify", "--audit", d}, &out); st != 0 {
			t.Fatalf("replay --no-verify: status %d, want 0", st)
		}
	})
	t.Run("verify names a modified segment", func(t *testing.T) {
		segs, _ := filepath.Glob(filepath.Join(dir, "seg-*"))
		b, _ := os.ReadFile(segs[0])
		b[len(b)/2] ^= 1
		os.WriteFile(segs[0], b, 0o600)
		st, out := run(verify, "--key", key, dir)
		if st != 1 || !strings.Contains(out, "NOT INTACT") || !strings.Contains(out, filepath.Base(segs[0])) {
			t.Fatalf("status %d:\n%s", st, out)
		}
	})
}

func TestExportFollow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	w, err := audit.Open(audit.Options{Dir: dir, Fsync: audit.FsyncNever, FlushInterval: 10 * time.Millisecond, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < 5; i++ {
		w.Append(audit.KindPolicy, 0, "", map[string]int{"i": i})
	}
	w.Flush()
	r, pw, _ := os.Pipe()
	go exportFollow(dir, &filterFlags{}, audit.ReadOptions{}, pw, 12, "n", 20*time.Millisecond)
	go func() {
		time.Sleep(100 * time.Millisecond)
		for i := 5; i < 12; i++ {
			w.Append(audit.KindPolicy, 0, "", map[string]int{"i": i})
		}
	}()
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for want := 1; want <= 12; want++ {
			if !sc.Scan() {
				done <- fmt.Errorf("export --follow ended after %d lines", want-1)
				return
			}
			var l struct{ Index int }
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Index != want {
				done <- fmt.Errorf("line %d: %s", want, sc.Text())
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("export --follow did not deliver 12 lines in 20s")
	}
}

// TestReplayOfATracedRun records a real run under vigil trace --audit (the
// kernel tracer, the detector with its CPU samples, the audit writer) and
// replays it: the verdicts must come back with the same ids.
func TestReplayOfATracedRun(t *testing.T) {
	privtest.Require(t)
	dir := filepath.Join(t.TempDir(), "audit")
	script := `cat /proc/sys/kernel/core_pattern >/dev/null; cat /proc/1/root/etc/hostname >/dev/null 2>&1;
		ls -la /etc >/dev/null; i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; exit 0`
	runTrace([]string{"--quiet", "--summary=false", "--audit", dir, "--", "/bin/sh", "-c", script})
	var cg uint64
	recorded := 0
	err := audit.Scan(dir, nil, func(r *audit.Record) error {
		if r.Kind == audit.KindEvent && cg == 0 {
			cg = r.CgroupID
		}
		if r.Kind == audit.KindVerdict {
			recorded++
		}
		return nil
	})
	if err != nil || cg == 0 {
		t.Fatalf("the traced run left no events in the audit log: %v", err)
	}
	if recorded < 2 {
		t.Fatalf("the traced run recorded %d verdicts, want at least 2 (core_pattern, /proc/1/root)", recorded)
	}
	var out bytes.Buffer
	st := replayMain([]string{"--cgroup", fmt.Sprint(cg), "--detect", "--json", "--audit", dir}, &out)
	var tl timeline
	if err := json.Unmarshal(out.Bytes(), &tl); err != nil {
		t.Fatalf("replay: status %d: %v\n%s", st, err, out.String())
	}
	if st != 0 || tl.Detect == nil || !tl.Detect.Same || tl.Detect.Reproduced != recorded || tl.Verified == nil {
		t.Fatalf("replay: status %d, detect %+v, verified %v", st, tl.Detect, tl.Verified != nil)
	}
	t.Logf("%d events, %d verdicts recorded and reproduced with the same ids", tl.Events, recorded)
}

// TestAuditKeysAndSignatures: verify against a pinned key (an attacker who
// replaces the log and the key beside it is caught; the key beside the log
// is warned about), and show/export refuse a segment that does not verify.
func TestAuditKeysAndSignatures(t *testing.T) {
	dir, _ := recordLive(t)
	pub, err := audit.LoadPublicKey(audit.DefaultKeyFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	pinned := hex.EncodeToString(pub)
	run := func(f func([]string, io.Writer) int, args ...string) (int, string) {
		var b bytes.Buffer
		return f(args, &b), b.String()
	}
	t.Run("verify with the pinned key", func(t *testing.T) {
		st, out := run(auditVerify, "--pubkey", pinned, dir)
		if st != 0 || !strings.Contains(out, "pinned key "+audit.Fingerprint(pub)) || strings.Contains(out, "WARNING") ||
			!strings.Contains(out, "signed head file: record") {
			t.Fatalf("status %d:\n%s", st, out)
		}
	})
	t.Run("verify with the key beside the log warns", func(t *testing.T) {
		st, out := run(auditVerify, dir)
		if st != 0 || !strings.Contains(out, "WARNING: verified with the key found next to the log") {
			t.Fatalf("status %d:\n%s", st, out)
		}
	})
	t.Run("a replaced log and key fail against the pinned key", func(t *testing.T) {
		forged, _ := recordLive(t) // another node key, beside another log
		if st, out := run(auditVerify, forged); st != 0 {
			t.Fatalf("the forged log with its own key: status %d:\n%s", st, out)
		}
		st, out := run(auditVerify, "--pubkey", pinned, forged)
		if st != 1 || !strings.Contains(out, "wrong-key") || !strings.Contains(out, audit.Fingerprint(pub)) {
			t.Fatalf("status %d:\n%s", st, out)
		}
	})
	t.Run("verify with a published head file", func(t *testing.T) {
		h, err := os.ReadFile(filepath.Join(dir, "head"))
		if err != nil {
			t.Fatal(err)
		}
		head, err := audit.ParseHead(h[:256])
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(head)
		f := filepath.Join(t.TempDir(), "head.json")
		os.WriteFile(f, b, 0o644)
		if st, out := run(auditVerify, "--pubkey", pinned, "--head", f, dir); st != 0 {
			t.Fatalf("status %d:\n%s", st, out)
		}
	})
	t.Run("show and export refuse a forged segment", func(t *testing.T) {
		d := filepath.Join(t.TempDir(), "copy")
		os.MkdirAll(d, 0o700)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			os.WriteFile(filepath.Join(d, e.Name()), b, 0o600)
		}
		segs, _ := filepath.Glob(filepath.Join(d, "seg-*"))
		b, _ := os.ReadFile(segs[1])
		b[len(b)-1] ^= 1 // the seal's signature
		os.WriteFile(segs[1], b, 0o600)
		for _, cmd := range []func([]string, io.Writer) int{auditShow, auditExport} {
			if st, _ := run(cmd, "--pubkey", pinned, d); st != 1 {
				t.Fatalf("status %d for a forged segment, want 1", st)
			}
			if st, out := run(cmd, "--unverified", d); st != 0 || out == "" {
				t.Fatalf("--unverified: status %d", st)
			}
		}
		if _, _, err := replay.Export(d, &replay.Selection{Read: audit.ReadOptions{PubKey: pub}}, io.Discard, 0, ""); err == nil ||
			!strings.Contains(err.Error(), "segment 2 ("+filepath.Base(segs[1])+")") {
			t.Fatalf("export error %v does not name segment 2", err)
		}
	})
}
