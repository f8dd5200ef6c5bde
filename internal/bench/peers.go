package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"vigil.dev/vigil/bpf"
)

// auditUID is the login uid the auditd mode gives the workload: its rule
// audits every syscall of that uid (audit has no cgroup filter; the login
// uid is inherited by every child).
const auditUID = "4242"

const auditKey = "vigil-bench"

// peers are the peer tracers of the pipeline benchmark: bpftrace (a
// per-syscall printing script and a per-cgroup counting script), the Linux
// audit subsystem (auditd, a rule for every syscall of the workload) and
// strace -f.
type peers struct {
	dir string
	log io.Writer
	why map[string]string // mode → why it cannot run
	// auditd is the daemon this benchmark started (nil: none).
	auditd     *exec.Cmd
	auditLog   string
	enabledWas string // audit's enabled flag before the benchmark
}

// debianPackage is the package of each peer tool.
var debianPackage = map[string]string{"bpftrace": "bpftrace", "auditctl": "auditd", "auditd": "auditd", "strace": "strace"}

// startPeers checks (and with install, apt-get installs) the peer tools
// and starts an auditd of the benchmark's own when the auditd mode runs and
// none runs. It returns the modes that can run.
func startPeers(modes []string, install bool, dir string, log io.Writer) (*peers, []string, error) {
	p := &peers{dir: dir, log: log, why: map[string]string{}}
	needs := map[string][]string{ModeBpftracePrint: {"bpftrace"}, ModeBpftraceCount: {"bpftrace"}, ModeAuditd: {"auditctl", "auditd"}, ModeStrace: {"strace"}}
	var missing []string
	for _, m := range modes {
		for _, tool := range needs[m] {
			if _, err := exec.LookPath(tool); err != nil && !contains(missing, debianPackage[tool]) {
				missing = append(missing, debianPackage[tool])
			}
		}
	}
	if len(missing) > 0 && install {
		fmt.Fprintf(log, "installing %s (apt-get)\n", strings.Join(missing, " "))
		cmd := exec.Command("apt-get", append([]string{"install", "-y", "--no-install-recommends"}, missing...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(log, "apt-get install %s: %v: %s\n", strings.Join(missing, " "), err, lastLines(string(out), 5))
		}
	}
	var usable []string
	for _, m := range modes {
		ok := true
		for _, tool := range needs[m] {
			if _, err := exec.LookPath(tool); err != nil {
				p.why[m] = fmt.Sprintf("%s not installed (Debian package %s; --install-peers installs it)", tool, debianPackage[tool])
				ok = false
			}
		}
		if ok && m == ModeAuditd {
			if err := p.startAuditd(); err != nil {
				p.why[m] = err.Error()
				ok = false
			}
		}
		if ok {
			usable = append(usable, m)
		}
	}
	return p, usable, nil
}

// startAuditd starts an auditd of the benchmark's own (its configuration
// and log in the work directory), unless one runs: then the system's is
// used and its log read.
func (p *peers) startAuditd() error {
	st, err := auditStatus()
	if err != nil {
		return err
	}
	p.enabledWas = st["enabled"]
	if pid := st["pid"]; pid != "" && pid != "0" {
		p.auditLog = "/var/log/audit/audit.log"
		fmt.Fprintf(p.log, "auditd runs (pid %s): using it, its log %s\n", pid, p.auditLog)
		return nil
	}
	conf := filepath.Join(p.dir, "auditd")
	if err := os.MkdirAll(conf, 0o750); err != nil {
		return err
	}
	p.auditLog = filepath.Join(conf, "audit.log")
	// No rotation: the benchmark counts the records of each run in the log
	// and empties it between runs.
	cfg := fmt.Sprintf("log_file = %s\nlog_format = RAW\nflush = INCREMENTAL_ASYNC\nfreq = 50\nmax_log_file = 0\nmax_log_file_action = IGNORE\n"+
		"space_left = 2\nspace_left_action = IGNORE\nadmin_space_left = 1\nadmin_space_left_action = IGNORE\ndisk_full_action = IGNORE\ndisk_error_action = IGNORE\n", p.auditLog)
	if err := os.WriteFile(filepath.Join(conf, "auditd.conf"), []byte(cfg), 0o640); err != nil {
		return err
	}
	cmd := exec.Command("auditd", "-n", "-c", conf)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start auditd: %w", err)
	}
	p.auditd = cmd
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if st, err := auditStatus(); err == nil && st["pid"] == strconv.Itoa(cmd.Process.Pid) {
			fmt.Fprintf(p.log, "started auditd (pid %d, log %s); stopped at the end\n", cmd.Process.Pid, p.auditLog)
			return nil
		}
	}
	state := "still running"
	if cmd.ProcessState != nil {
		state = cmd.ProcessState.String()
	}
	p.stopAuditd()
	return fmt.Errorf("auditd -n -c %s did not register with the kernel (%s; its messages are in the system log): %s", conf, state, lastLines(errOut.String(), 3))
}

func (p *peers) stopAuditd() {
	if p.auditd == nil {
		return
	}
	p.auditd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.auditd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.auditd.Process.Kill()
		<-done
	}
	p.auditd = nil
	if p.enabledWas != "" {
		exec.Command("auditctl", "-e", p.enabledWas).Run()
	}
}

// close stops what the benchmark started and removes its audit rule.
func (p *peers) close() {
	if p.auditLog != "" {
		exec.Command("auditctl", auditRule("-d")...).Run() // gone already unless a run failed
	}
	p.stopAuditd()
}

func auditRule(op string) []string {
	return []string{op, "always,exit", "-F", "arch=b64", "-S", "all", "-F", "auid=" + auditUID, "-k", auditKey}
}

// auditStatus is `auditctl -s` as a map (enabled, pid, lost, backlog...).
func auditStatus() (map[string]string, error) {
	out, err := exec.Command("auditctl", "-s").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("auditctl -s: %v: %s", err, out)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			m[f[0]] = f[1]
		}
	}
	return m, nil
}

// start starts a peer tracer on cg; stop stops it and fills the run's
// events, losses and the tracer's CPU.
func (p *peers) start(mode string, cg *bpf.Cgroup) (func(*run) error, error) {
	switch mode {
	case ModeAuditd:
		return p.startAudit()
	case ModeBpftracePrint:
		return p.startBpftrace(mode, fmt.Sprintf(`tracepoint:raw_syscalls:sys_exit /cgroup == cgroupid("%s")/ { printf("%%d %%d %%d %%d\n", pid, tid, args->id, args->ret); }`, cg.Path), cg)
	case ModeBpftraceCount:
		return p.startBpftrace(mode, `tracepoint:raw_syscalls:sys_exit { @[cgroup] = count(); }`, cg)
	}
	return nil, fmt.Errorf("mode %q is not a peer tracer", mode)
}

var lostRe = regexp.MustCompile(`Lost (\d+) events`)

func (p *peers) startBpftrace(mode, script string, cg *bpf.Cgroup) (func(*run) error, error) {
	out := filepath.Join(p.dir, "bpftrace.out")
	cmd := exec.Command("bpftrace", "-o", out, "-e", script)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// Attached once it says so (start-up is not part of the run).
	attached := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !attached; time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(out); err == nil && bytes.Contains(b, []byte("Attaching")) {
			attached = true
		}
		if cmd.ProcessState != nil {
			break
		}
	}
	if !attached {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("bpftrace did not attach: %s", lastLines(errOut.String(), 3))
	}
	// Its start-up (compiling the script) is not the run's.
	startCPU := procCPU(strconv.Itoa(cmd.Process.Pid))
	return func(r *run) error {
		err := stopProcess(cmd)
		defer os.Remove(out)
		if err != nil && cmd.ProcessState == nil {
			return fmt.Errorf("bpftrace: %v: %s", err, lastLines(errOut.String(), 3))
		}
		// Ended by a signal after SIGINT did not end it: what it wrote is
		// counted (the counting script's map may be missing: 0 events).
		r.trCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime() - startCPU
		f, err := os.Open(out)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		key := fmt.Sprintf("@[%d]: ", cg.ID)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "Attaching"):
			case mode == ModeBpftraceCount:
				if v, ok := strings.CutPrefix(line, key); ok {
					n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
					r.events += n
				}
			case lostRe.MatchString(line):
				n, _ := strconv.ParseUint(lostRe.FindStringSubmatch(line)[1], 10, 64)
				r.lost += n
			default:
				r.events++
			}
		}
		for _, m := range lostRe.FindAllStringSubmatch(errOut.String(), -1) {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			r.lost += n
		}
		r.seen = r.events + r.lost
		return sc.Err()
	}, nil
}

func (p *peers) startAudit() (func(*run) error, error) {
	if p.auditd != nil {
		if err := os.Truncate(p.auditLog, 0); err != nil {
			return nil, err
		}
	}
	off := fileSize(p.auditLog)
	st0, err := auditStatus()
	if err != nil {
		return nil, err
	}
	cpu0 := auditCPU(st0["pid"])
	if out, err := exec.Command("auditctl", auditRule("-a")...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("auditctl -a: %v: %s", err, out)
	}
	return func(r *run) error {
		if out, err := exec.Command("auditctl", auditRule("-d")...).CombinedOutput(); err != nil {
			return fmt.Errorf("auditctl -d: %v: %s", err, out)
		}
		// auditd writes what the kernel queued: wait until the log is still.
		for last := int64(-1); ; time.Sleep(300 * time.Millisecond) {
			n := fileSize(p.auditLog)
			if n == last {
				break
			}
			last = n
		}
		st1, err := auditStatus()
		if err != nil {
			return err
		}
		r.trCPU += auditCPU(st1["pid"]) - cpu0
		l0, _ := strconv.ParseUint(st0["lost"], 10, 64)
		l1, _ := strconv.ParseUint(st1["lost"], 10, 64)
		r.lost = l1 - l0
		n, err := countAuditSyscalls(p.auditLog, off)
		r.events = n
		r.seen = n + r.lost
		return err
	}, nil
}

// countAuditSyscalls counts the SYSCALL records of the workload's login
// uid in the log from offset off.
func countAuditSyscalls(path string, off int64) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	var n uint64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prefix, uid := []byte("type=SYSCALL "), []byte(" auid="+auditUID+" ")
	for sc.Scan() {
		if line := sc.Bytes(); bytes.HasPrefix(line, prefix) && bytes.Contains(line, uid) {
			n++
		}
	}
	return n, sc.Err()
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// auditCPU is the CPU time of auditd (pid) and of the kernel's kauditd
// thread, which sends it the records.
func auditCPU(pid string) time.Duration {
	total := procCPU(pid)
	if k := kauditd(); k != "" {
		total += procCPU(k)
	}
	return total
}

func kauditd() string {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.TrimSpace(string(b)) == "kauditd" {
			return e.Name()
		}
	}
	return ""
}

// procCPU is a process's user and system time from /proc/PID/stat.
func procCPU(pid string) time.Duration {
	if pid == "" || pid == "0" {
		return 0
	}
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0
	}
	const hz = 100 // USER_HZ
	return time.Duration(ut+st) * time.Second / hz
}

// stopProcess stops a peer tracer: SIGINT (bpftrace prints its maps), then,
// if it is still there after 20 s, SIGTERM (bpftrace 0.17 sometimes sits in
// epoll_wait after SIGINT on a loaded machine), then SIGKILL.
func stopProcess(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	cmd.Process.Signal(syscall.SIGINT)
	go func() { done <- cmd.Wait() }()
	for _, next := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			cmd.Process.Signal(next)
		}
	}
	return <-done
}
