package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/internal/privtest"
)

func TestTraceNeedsCommand(t *testing.T) {
	if got := runTrace(nil); got != 2 {
		t.Fatalf("vigil trace with no command: status %d, want 2", got)
	}
	if got := runTrace([]string{"--no-such-flag"}); got != 2 {
		t.Fatalf("vigil trace with a bad flag: status %d, want 2", got)
	}
}

// TestTraceJSON runs a real command under vigil trace --json --audit and
// checks the stream: events, a verdict, the summary, the exit status and an
// audit log that verifies.
func TestTraceJSON(t *testing.T) {
	privtest.Require(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "run.jsonl")
	auditDir := filepath.Join(dir, "audit")
	o := traceOpts{json: true, out: out, ringSize: 1 << 20, auditDir: auditDir}
	status, err := trace(o, []string{"/bin/sh", "-c", "cat /proc/1/root/etc/hostname >/dev/null 2>&1; exit 3"})
	if err != nil {
		t.Fatal(err)
	}
	if status != 3 {
		t.Fatalf("status %d, want the command's 3", status)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var events, verdicts int
	var sawExec, sawProcRoot bool
	var summary struct{ Seen, Emitted, Dropped, Received, PreExec uint64 }
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("not JSON: %s", sc.Bytes())
		}
		switch {
		case line["verdict"] != nil:
			var v struct {
				Class, Rule string
			}
			json.Unmarshal(line["verdict"], &v)
			if v.Class == "fs-escape" {
				verdicts++
			}
		case line["summary"] != nil:
			var s map[string]uint64
			json.Unmarshal(line["summary"], &s)
			summary.Seen, summary.Emitted, summary.Dropped, summary.Received, summary.PreExec = s["seen"], s["emitted"], s["dropped"], s["received"], s["pre_exec"]
		default:
			events++
			var e struct {
				Syscall, Path string
				Argv          []string
			}
			json.Unmarshal(sc.Bytes(), &e)
			if e.Syscall == "execve" && e.Path == "/bin/sh" && len(e.Argv) == 3 {
				sawExec = true
			}
			if e.Path == "/proc/1/root/etc/hostname" {
				sawProcRoot = true
			}
		}
	}
	if !sawExec || !sawProcRoot {
		t.Errorf("events: exec of /bin/sh %v, open of /proc/1/root/etc/hostname %v", sawExec, sawProcRoot)
	}
	if verdicts == 0 {
		t.Error("no fs-escape verdict for the read through /proc/1/root")
	}
	if summary.Seen == 0 || summary.Seen != summary.Emitted+summary.Dropped || summary.Received != summary.Emitted ||
		uint64(events)+summary.PreExec != summary.Received {
		t.Errorf("summary %+v with %d event lines", summary, events)
	}
	rep, err := audit.Verify(auditDir, "")
	if err != nil {
		t.Fatalf("audit log of the run does not verify: %v (%+v)", err, rep)
	}
}

// TestTraceNotRoot runs vigil trace as an unprivileged user: one line that
// says what to do, status 1, and the command never runs.
func TestTraceNotRoot(t *testing.T) {
	privtest.Require(t) // to switch to another user
	marker := filepath.Join(t.TempDir(), "ran")
	os.Chmod(filepath.Dir(marker), 0o777)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", self, "trace", "--", "/usr/bin/touch", marker)
	cmd.Env = append(os.Environ(), "VIGIL_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("status: %v, output %q; want exit status 1", err, out)
	}
	msg := strings.TrimSpace(string(out))
	if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "needs root") || !strings.Contains(msg, "sudo") {
		t.Errorf("message %q: want one line saying it needs root and how", msg)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran without tracing")
	}
}

func TestTraceUnknownCommand(t *testing.T) {
	privtest.Require(t)
	status, err := trace(traceOpts{}, []string{"/nonexistent/vigil-no-such-command"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/vigil-no-such-command") {
		t.Fatalf("status %d, err %v: want an error naming the command", status, err)
	}
}

// TestTraceProfiles checks that --cpuprofile and --memprofile write
// profiles pprof reads (gzip-compressed protobuf) and that a profile that
// cannot be created names its flag.
func TestTraceProfiles(t *testing.T) {
	dir := t.TempDir()
	cpu, mem := filepath.Join(dir, "cpu.prof"), filepath.Join(dir, "mem.prof")
	stop, err := startProfiles(cpu, mem)
	if err != nil {
		t.Fatal(err)
	}
	var keep [][]byte
	for i := 0; i < 1000; i++ {
		keep = append(keep, make([]byte, 64))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{cpu, mem} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			t.Errorf("%s: not a gzip-compressed profile (%d bytes)", f, len(b))
		}
	}
	_ = keep
	if _, err := startProfiles(filepath.Join(dir, "no/such/dir/cpu.prof"), ""); err == nil || !strings.Contains(err.Error(), "--cpuprofile") {
		t.Errorf("profile in a missing directory: error %v, want one naming --cpuprofile", err)
	}
}
