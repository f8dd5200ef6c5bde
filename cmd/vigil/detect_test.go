package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// detectRun runs `vigil detect ARGS` in-process and returns its exit
// status, standard output and standard error.
func detectRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	oldOut, oldErr := os.Stdout, os.Stderr
	ro, wo, _ := os.Pipe()
	re, we, _ := os.Pipe()
	os.Stdout, os.Stderr = wo, we
	outc, errc := make(chan string), make(chan string)
	go func() { b, _ := io.ReadAll(ro); outc <- string(b) }()
	go func() { b, _ := io.ReadAll(re); errc <- string(b) }()
	status := runDetect(args)
	wo.Close()
	we.Close()
	os.Stdout, os.Stderr = oldOut, oldErr
	return status, <-outc, <-errc
}

// writeTraces writes n sequence traces of a looping server, plus
// attack traces, and returns the two directories.
func writeTraces(t *testing.T) (normal, attack string) {
	dir := t.TempDir()
	normal, attack = filepath.Join(dir, "normal"), filepath.Join(dir, "attack")
	os.Mkdir(normal, 0o755)
	os.Mkdir(attack, 0o755)
	// x86_64 numbers: read 0, write 1, close 3, fstat 5, mmap 9, brk 12,
	// openat 257, epoll_wait 232, accept4 288, execve 59, exit_group 231.
	for i := 0; i < 40; i++ {
		var b strings.Builder
		b.WriteString("59 12 9 257 5 9 3 ")
		for j := 0; j < 5+i%7; j++ {
			b.WriteString("232 288 0 257 5 0 3 1 3 ")
		}
		b.WriteString("231\n")
		os.WriteFile(filepath.Join(normal, fmt.Sprintf("n%02d.txt", i)), []byte(b.String()), 0o644)
	}
	// mount 165, setns 308, ptrace 101, unshare 272
	os.WriteFile(filepath.Join(attack, "a1.txt"), []byte("59 12 9 257 5 9 3 232 288 0 272 165 308 101 101 101 1 3 231"), 0o644)
	return normal, attack
}

func TestDetectTrainScoreInspectProfile(t *testing.T) {
	normal, attack := writeTraces(t)
	model := filepath.Join(t.TempDir(), "m.model")
	if st, _, errs := detectRun(t, "train", "--in", normal, "--out", model, "--name", "svc"); st != 0 {
		t.Fatalf("train: status %d: %s", st, errs)
	}
	st, out, errs := detectRun(t, "score", "--model", model, attack, filepath.Join(normal, "n00.txt"))
	if st != 0 {
		t.Fatalf("score: status %d: %s", st, errs)
	}
	var lines []scoreLine
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l scoreLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("score line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 2 {
		t.Fatalf("%d score lines, want 2:\n%s", len(lines), out)
	}
	if !strings.HasSuffix(lines[0].Source, "a1.txt") || lines[0].Verdict != "anomaly" || !lines[0].Anomaly {
		t.Errorf("attack trace: %+v", lines[0])
	}
	if lines[1].Verdict != "normal" || lines[1].Score >= lines[0].Score {
		t.Errorf("normal trace: %+v (attack %+v)", lines[1], lines[0])
	}
	// --threshold overrides the calibrated one
	if _, out, _ := detectRun(t, "score", "--model", model, "--threshold", "1e9", attack); !strings.Contains(out, `"verdict":"normal"`) {
		t.Errorf("--threshold 1e9 still reports an anomaly: %s", out)
	}
	if st, out, _ := detectRun(t, "inspect", model); st != 0 || !strings.Contains(out, `model "svc"`) || !strings.Contains(out, "threshold") {
		t.Errorf("inspect: %d %s", st, out)
	}
	prof := filepath.Join(t.TempDir(), "p.json")
	if st, _, errs := detectRun(t, "profile", "--model", model, "--out", prof); st != 0 {
		t.Fatalf("profile: %d %s", st, errs)
	}
	b, _ := os.ReadFile(prof)
	var p struct {
		DefaultAction string `json:"defaultAction"`
		Syscalls      []struct {
			Names  []string `json:"names"`
			Action string   `json:"action"`
		} `json:"syscalls"`
	}
	if err := json.Unmarshal(b, &p); err != nil || p.DefaultAction != "SCMP_ACT_ERRNO" || len(p.Syscalls) != 1 {
		t.Fatalf("profile %s: %v", b, err)
	}
	names := strings.Join(p.Syscalls[0].Names, " ")
	for _, want := range []string{"accept4", "epoll_wait", "openat", "execve"} {
		if !strings.Contains(names, want) {
			t.Errorf("profile lacks %s: %s", want, names)
		}
	}
	if strings.Contains(names, "mount") {
		t.Errorf("profile allows mount, never seen: %s", names)
	}
}

func TestDetectUserErrors(t *testing.T) {
	normal, _ := writeTraces(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown subcommand", []string{"frobnicate"}, `unknown subcommand "frobnicate"`},
		{"train without input", []string{"train", "--out", "/tmp/x"}, "no input"},
		{"train without out", []string{"train", "--in", normal}, "no --out"},
		{"bad abi", []string{"train", "--in", normal, "--out", "/tmp/x", "--abi", "sparc"}, `abi "sparc": unknown, use one of x86_64, i386, arm64`},
		{"bad format", []string{"train", "--in", normal, "--out", "/tmp/x", "--format", "xml"}, `--format "xml": unknown, use one of auto, events, seq, pidseq, counts`},
		{"missing input", []string{"train", "--in", "/nonexistent", "--out", "/tmp/x"}, "no such file"},
		{"bad context", []string{"train", "--in", normal, "--out", "/tmp/x", "--context", "101"}, "--context 101: want 1..100 windows"},
		{"score without model", []string{"score", normal}, "no --model"},
		{"bad model", []string{"score", "--model", filepath.Join(normal, "n00.txt"), normal}, "not a vigil model file"},
		{"inspect args", []string{"inspect"}, "exactly one MODEL"},
		{"bad policy", []string{"rules", "--policy", "/nonexistent.yaml"}, "read rule file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _, errs := detectRun(t, tc.args...)
			if st == 0 {
				t.Fatalf("status 0 for %v", tc.args)
			}
			if !strings.Contains(errs, tc.want) {
				t.Errorf("stderr %q does not contain %q", errs, tc.want)
			}
		})
	}
}

// TestDetectScoreCountSeries trains on count windows and scores a CSV
// whose rows are consecutive windows: one odd row alone stays normal (a
// deviation must last two windows, the default context), two in a row
// raise an anomaly at the second.
func TestDetectScoreCountSeries(t *testing.T) {
	dir := t.TempDir()
	row := func(b *strings.Builder, i, read int) {
		fmt.Fprintf(b, "%d,%d,%d\n", 1000+100*i, read, 50+i%5)
	}
	var tr strings.Builder
	tr.WriteString("timestamp,read,write\n")
	for i := 0; i < 300; i++ {
		row(&tr, i, 100+10*(i%5))
	}
	train := filepath.Join(dir, "normal.csv")
	if err := os.WriteFile(train, []byte(tr.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var te strings.Builder
	te.WriteString("timestamp,read,write\n")
	for i, r := range []int{100, 110, 90000, 120, 90000, 90000, 100} {
		row(&te, i, r)
	}
	test := filepath.Join(dir, "test.csv")
	if err := os.WriteFile(test, []byte(te.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(dir, "m.model")
	if st, _, errs := detectRun(t, "train", "--in", train, "--out", model); st != 0 {
		t.Fatalf("train: %s", errs)
	}
	st, out, errs := detectRun(t, "score", "--model", model, test)
	if st != 0 {
		t.Fatalf("score: %s", errs)
	}
	var got []bool
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var s struct{ Anomaly bool }
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		got = append(got, s.Anomaly)
	}
	want := []bool{false, false, false, false, false, true, false}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("anomalies %v, want %v (only the second of two odd rows in a row)", got, want)
	}
}

func TestDetectRulesAndReplay(t *testing.T) {
	st, out, _ := detectRun(t, "rules")
	if st != 0 || !strings.Contains(out, "reverse-shell") || !strings.Contains(out, "cpu-spin-few-syscalls") {
		t.Fatalf("rules: %d %s", st, out)
	}
	if st, out, _ := detectRun(t, "rules", "--print"); st != 0 || !strings.Contains(out, "rules:") {
		t.Errorf("rules --print: %d", st)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("rules:\n  - rule: x\n    class: privesc\n    severity: high\n    syscalls: [nosuchcall]\n"), 0o644)
	if st, _, errs := detectRun(t, "rules", "--policy", bad); st == 0 || !strings.Contains(errs, "bad.yaml:5") {
		t.Errorf("bad policy: %d %s", st, errs)
	}
	events := filepath.Join(dir, "run.jsonl")
	os.WriteFile(events, []byte(`{"seq":1,"time":"2026-01-01T00:00:00Z","cgroup":5,"pid":10,"tid":10,"comm":"x","syscall":"read","ret":0}
{"seq":2,"time":"2026-01-01T00:00:01Z","cgroup":5,"pid":10,"tid":10,"comm":"x","syscall":"bpf","ret":-1}
{"summary":{"seen":2}}
`), 0o644)
	st, out1, errs := detectRun(t, "replay", events)
	if st != 0 {
		t.Fatalf("replay: %d %s", st, errs)
	}
	_, out2, _ := detectRun(t, "replay", events)
	var v struct {
		Verdict struct {
			ID   string `json:"id"`
			Rule string `json:"rule"`
		} `json:"verdict"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out1)), &v); err != nil || v.Verdict.Rule != "bpf-syscall" || out1 != out2 {
		t.Errorf("replay output %q then %q (%v)", out1, out2, err)
	}
}
