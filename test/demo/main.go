// Command demo is what `make demo` shows: vigil's agent on the local test
// node (install/node.sh), pods that opt in or not, benign ones and attacks
// (CPU abuse, a read through /proc/<pid>/root, DNS to a foreign resolver,
// privilege escalation), some in mode detect and some in enforce; live,
// per pod, the verdicts and the actions taken; then a summary table, the
// audit log verified, and a clean teardown. It exits non-zero when an
// attack was not detected or acted on as expected, or a benign pod was
// touched, so CI can run it.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// A scenario is one pod of the demo.
type scenario struct {
	pod, mode string // mode "" = not monitored
	what      string
	cmd       string
	// expect: "untouched", or the action the policy takes ("throttle",
	// "kill-process", "deny-connect", "deny-syscall"), or "would-act" (detect).
	expect string

	id       string
	verdicts []detector.Verdict
	actions  []control.Record
	events   int
}

const (
	busybox  = "localhost/vigil/busybox:1"
	resolver = "127.0.0.2" // the allowed resolver the demo runs
	// spin keeps a core busy with no syscalls for a while (the miners take
	// turns: on a small machine two at once would each get less than the
	// half core the rule looks for).
	spin = "sleep %d; timeout 10 sh -c 'while :; do :; done' & timeout 10 sh -c 'while :; do :; done' & wait; sleep 600"
)

func scenarios() []*scenario {
	return []*scenario{
		{pod: "web", what: "not annotated: not monitored", cmd: "while true; do cat /etc/hostname >/dev/null; sleep 1; done", expect: "untouched"},
		{pod: "shop", mode: "enforce", what: "a benign service, monitored in enforce", cmd: "while true; do ls /etc >/dev/null; cat /etc/hostname >/dev/null 2>&1; sleep 1; done", expect: "untouched"},
		{pod: "miner-detect", mode: "detect", what: "CPU abuse (two spinning threads, no syscalls), detect", cmd: fmt.Sprintf(spin, 1), expect: "would-act"},
		{pod: "miner", mode: "enforce", what: "CPU abuse, enforce (after the first)", cmd: fmt.Sprintf(spin, 12), expect: "throttle"},
		{pod: "escape", mode: "enforce", what: "reads another root through /proc/1/root", cmd: "sleep 2; exec tail -f /proc/1/root/dev/null", expect: "kill-process"},
		{pod: "dns", mode: "enforce", what: "DNS to a resolver that is not allowed", cmd: "sleep 2; while true; do nslookup vigil.demo 127.0.0.3 >/dev/null 2>&1; nslookup vigil.demo " + resolver + " >/dev/null 2>&1; sleep 1; done", expect: "deny-connect"},
		{pod: "privesc", mode: "enforce", what: "creates a user namespace (privilege escalation)", cmd: "sleep 2; unshare -U true; sleep 2; mkdir /tmp/after-deny 2>/dev/null && echo mkdir-ok || echo mkdir-refused; sleep 600", expect: "deny-syscall"},
		{pod: "privesc-detect", mode: "detect", what: "the same in detect", cmd: "sleep 2; unshare -U true; sleep 600", expect: "would-act"},
	}
}

var (
	color                     bool
	bold, red, green, yel, dm string
	reset                     string
)

func paint() {
	_, err := unix.IoctlGetTermios(int(os.Stdout.Fd()), unix.TCGETS)
	color = err == nil && os.Getenv("NO_COLOR") == ""
	if color {
		bold, red, green, yel, dm, reset = "\033[1m", "\033[31m", "\033[32m", "\033[33m", "\033[2m", "\033[0m"
	}
}

func main() {
	vigil := flag.String("vigil", "bin/vigil", "the vigil binary")
	keepNode := flag.Bool("keep-node", false, "leave the test node (containerd) running at the end")
	budget := flag.Duration("time", 40*time.Second, "how long to watch before the summary")
	flag.Parse()
	paint()
	os.Exit(run(*vigil, *keepNode, *budget))
}

func step(format string, args ...any) {
	fmt.Printf("%s==> %s%s\n", bold, fmt.Sprintf(format, args...), reset)
}

func run(vigil string, keepNode bool, budget time.Duration) int {
	vigil, _ = filepath.Abs(vigil)
	wd, err := os.MkdirTemp("", "vigil-demo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	d := &demo{vigil: vigil, wd: wd, pinDir: "/sys/fs/bpf/vigil-demo", keepWD: true}
	defer d.teardown(keepNode)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { <-sigs; d.teardown(keepNode); os.Exit(130) }()

	step("starting vigil agent (policies: built-in default; DNS allowed to %s)", resolver)
	if err := d.startAgent(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	stopDNS := dnsResponder(resolver)
	defer stopDNS()

	ss := scenarios()
	step("starting %d pods", len(ss))
	for _, s := range ss {
		if err := d.startPod(s); err != nil {
			fmt.Fprintf(os.Stderr, "demo: pod %s: %v\n", s.pod, err)
			return 1
		}
		mode := s.mode
		if mode == "" {
			mode = "not monitored"
		}
		fmt.Printf("   %-15s %s%-13s%s %s\n", s.pod, dm, mode, reset, s.what)
	}
	step("watching for %v: verdicts and actions, live", budget)
	d.watch(ss, budget)
	return d.summary(ss)
}

// demo holds the run's agent and files.
type demo struct {
	vigil, wd, pinDir string
	agent             *exec.Cmd
	agentDone         chan struct{}
	pods              []string
	once              sync.Once
	keepWD            bool // keep the work dir (agent log, events) for a failed run
}

func (d *demo) sock() string { return filepath.Join(d.wd, "vigil.sock") }

func (d *demo) startAgent() error {
	if err := os.WriteFile(filepath.Join(d.wd, "config.yaml"), []byte("defaultMode: detect\n"), 0o600); err != nil {
		return err
	}
	log, err := os.Create(filepath.Join(d.wd, "agent.log"))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	d.agent = exec.Command(d.vigil, "agent", "--config", filepath.Join(d.wd, "config.yaml"),
		"--control-socket", d.sock(), "--listener", filepath.Join(d.wd, "seccomp.sock"),
		"--events", filepath.Join(d.wd, "events.jsonl"), "--decisions", filepath.Join(d.wd, "decisions.jsonl"),
		"--pin-dir", d.pinDir, "--audit", filepath.Join(d.wd, "audit"), "--metrics-addr", addr,
		"--notify-keeper", filepath.Join(d.wd, "keeper.sock"), "--allowed-resolver", resolver,
		"--state", filepath.Join(d.wd, "control-state.json"), "--log-level", "warn")
	d.agent.Stdout, d.agent.Stderr = log, log
	if err := d.agent.Start(); err != nil {
		return err
	}
	d.agentDone = make(chan struct{})
	go func() { d.agent.Wait(); close(d.agentDone) }()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-d.agentDone:
			b, _ := os.ReadFile(log.Name())
			return fmt.Errorf("the agent exited:\n%s", b)
		default:
		}
		if r, err := agentctl.Call(d.sock(), agentctl.Request{Op: agentctl.OpStatus}); err == nil && r.Status.Connected {
			return nil
		}
	}
	return errors.New("the agent did not connect to containerd in 20 s (is the node up? install/node.sh up)")
}

func crictl(args ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("crictl", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("crictl %s: %v: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

func (d *demo) writeJSON(name string, v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	path := filepath.Join(d.wd, name)
	return path, os.WriteFile(path, data, 0o600)
}

func (d *demo) startPod(s *scenario) error {
	ann := map[string]string{}
	if s.mode != "" {
		ann["ebpf-monitor"] = "true"
		ann["vigil.dev/mode"] = s.mode
	}
	podCfg, err := d.writeJSON("pod-"+s.pod+".json", map[string]any{
		"metadata":      map[string]any{"name": s.pod, "namespace": "demo", "uid": fmt.Sprintf("%s-%d", s.pod, os.Getpid())},
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
		"log_directory": filepath.Join(d.wd, "logs", s.pod),
		"annotations":   ann,
	})
	if err != nil {
		return err
	}
	podID, err := crictl("runp", podCfg)
	if err != nil {
		return err
	}
	d.pods = append(d.pods, podID)
	ctrCfg, err := d.writeJSON("ctr-"+s.pod+".json", map[string]any{
		"metadata": map[string]any{"name": "app"}, "image": map[string]any{"image": busybox},
		"log_path": "app.log", "command": []string{"sh", "-c", s.cmd}, "linux": map[string]any{},
	})
	if err != nil {
		return err
	}
	if s.id, err = crictl("create", podID, ctrCfg, podCfg); err != nil {
		return err
	}
	_, err = crictl("start", s.id)
	return err
}

// watch prints verdicts and actions as they come, per pod, until every
// attack got its answer or the time is up.
func (d *demo) watch(ss []*scenario, budget time.Duration) {
	byID := map[string]*scenario{}
	for _, s := range ss {
		byID[s.id] = s
	}
	path := filepath.Join(d.wd, "events.jsonl")
	var off int64
	deadline := time.Now().Add(budget)
	for time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		f.Seek(off, 0)
		r := bufio.NewReaderSize(f, 1<<20)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				break // a partial line is read again next time
			}
			off += int64(len(line))
			d.line(line, byID)
		}
		f.Close()
		if done(ss) {
			time.Sleep(time.Second)
			break
		}
	}
}

func done(ss []*scenario) bool {
	for _, s := range ss {
		if s.expect != "untouched" && !s.met() {
			return false
		}
	}
	return true
}

func (d *demo) line(line []byte, byID map[string]*scenario) {
	switch {
	case bytes.HasPrefix(line, []byte(`{"verdict":`)):
		var l struct{ Verdict detector.Verdict }
		if json.Unmarshal(line, &l) != nil || l.Verdict.Container == nil {
			return
		}
		s := byID[l.Verdict.Container.ID]
		if s == nil {
			return
		}
		v := l.Verdict
		s.verdicts = append(s.verdicts, v)
		then := ""
		switch {
		case len(v.Actions) > 0:
			then = fmt.Sprintf("%s→ %s%s", red, strings.Join(v.Actions, ", "), reset)
		case len(v.WouldAct) > 0:
			then = fmt.Sprintf("%s(detect: would %s)%s", yel, strings.Join(v.WouldAct, ", "), reset)
		}
		fmt.Printf("   %-15s %sVERDICT%s %s %s [%s] %s %s\n", s.pod, bold, reset, v.Class, v.Rule, v.Severity, event.Printable(truncate(v.Message, 70)), then)
	case bytes.HasPrefix(line, []byte(`{"action":`)):
		var l struct{ Action control.Record }
		if json.Unmarshal(line, &l) != nil {
			return
		}
		s := byID[l.Action.ContainerID]
		if s == nil {
			return
		}
		a := l.Action
		s.actions = append(s.actions, a)
		switch {
		case a.Error != "":
			fmt.Printf("   %-15s %sACTION FAILED%s %s: %s\n", s.pod, red, reset, a.Action, event.Printable(a.Error))
		case a.Undo:
			fmt.Printf("   %-15s %sundone%s %s (%s)\n", s.pod, green, reset, a.Action, event.Printable(a.Detail))
		case strings.HasPrefix(a.Detail, "already in force"):
			// a repeated verdict only extends what is in force
		default:
			fmt.Printf("   %-15s %sACTION%s %s in force %v after the event (%s)\n", s.pod, red, reset, a.Action, a.Latency.Round(10*time.Microsecond), event.Printable(truncate(a.Detail, 60)))
		}
	case bytes.Contains(line, []byte(`"container":{"id":"`)):
		var ev struct {
			Container *event.Container `json:"container"`
		}
		if json.Unmarshal(line, &ev) == nil && ev.Container != nil {
			if s := byID[ev.Container.ID]; s != nil {
				s.events++
			}
		}
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// met says whether the scenario got what it expected.
func (s *scenario) met() bool {
	switch s.expect {
	case "untouched":
		return len(s.actions) == 0 && !slices.ContainsFunc(s.verdicts, func(v detector.Verdict) bool { return v.Severity >= detector.High })
	case "would-act":
		return slices.ContainsFunc(s.verdicts, func(v detector.Verdict) bool { return len(v.WouldAct) > 0 }) && len(s.actions) == 0
	}
	return slices.ContainsFunc(s.actions, func(a control.Record) bool {
		return string(a.Action) == s.expect && a.Error == "" && !a.Undo
	})
}

func (d *demo) summary(ss []*scenario) int {
	step("summary")
	fmt.Printf("   %-15s %-9s %7s %8s  %-32s %s\n", "POD", "MODE", "EVENTS", "VERDICTS", "ACTIONS", "RESULT")
	bad := 0
	for _, s := range ss {
		state, _ := crictl("inspect", "-o", "go-template", "--template", "{{.status.state}}", s.id)
		var acts []string
		for _, a := range s.actions {
			if a.Error == "" && !slices.Contains(acts, string(a.Action)) {
				acts = append(acts, string(a.Action))
			}
		}
		result := green + "ok" + reset
		if !s.met() {
			result = red + "NOT AS EXPECTED" + reset
			bad++
		}
		mode := s.mode
		if mode == "" {
			mode = "-"
		}
		want := s.expect
		if strings.HasPrefix(state, "CONTAINER_EXITED") {
			want += ", exited"
		}
		fmt.Printf("   %-15s %-9s %7d %8d  %-32s %s (%s)\n", s.pod, mode, s.events, len(s.verdicts), strings.Join(acts, ","), result, want)
	}
	if r, err := agentctl.Call(d.sock(), agentctl.Request{Op: agentctl.OpStatus}); err == nil {
		st := r.Status
		fmt.Printf("   agent: %d events, %d verdicts, %d actions, %d records lost", st.Events, st.Verdicts, st.Actions, st.Lost)
		for _, a := range st.ActionStats {
			fmt.Printf("; %s p99 %v", a.Action, a.P99)
		}
		fmt.Println()
	}
	// Verify against the public key the agent logged at start (as an
	// operator pins it), not the key file next to the log.
	args := []string{"audit", "verify"}
	if key := loggedKey(filepath.Join(d.wd, "agent.log")); key != "" {
		args = append(args, "--pubkey", key)
	}
	args = append(args, filepath.Join(d.wd, "audit"))
	step("vigil %s", strings.Join(args, " "))
	d.stopAgent() // the log is complete once the agent closed it
	out, err := exec.Command(d.vigil, args...).CombinedOutput()
	fmt.Print(indent(string(out)))
	if err != nil {
		fmt.Printf("   %saudit log does not verify: %v%s\n", red, err, reset)
		bad++
	}
	if bad > 0 {
		fmt.Printf("%s%d of the demo's expectations were not met%s (agent log: kept in %s)\n", red, bad, reset, d.wd)
		return 1
	}
	fmt.Printf("%severy attack was detected and acted on as its mode says; benign pods untouched%s\n", green, reset)
	d.keepWD = false
	return 0
}

// loggedKey is the audit public key the agent printed in its log.
func loggedKey(log string) string {
	data, _ := os.ReadFile(log)
	_, after, ok := strings.Cut(string(data), "--pubkey ")
	if !ok || len(after) < 64 {
		return ""
	}
	return after[:64]
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("   " + l + "\n")
	}
	return b.String()
}

func (d *demo) stopAgent() {
	if d.agent == nil || d.agent.Process == nil {
		return
	}
	select {
	case <-d.agentDone:
		return
	default:
	}
	d.agent.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.agentDone:
	case <-time.After(10 * time.Second):
		d.agent.Process.Kill()
		<-d.agentDone
	}
}

// teardown leaves nothing behind: pods, agent, keeper, pinned programs,
// and (unless keepNode) the node itself.
func (d *demo) teardown(keepNode bool) {
	d.once.Do(func() {
		step("teardown")
		for _, p := range d.pods {
			crictl("rmp", "-f", p)
		}
		d.stopAgent()
		if data, err := os.ReadFile(filepath.Join(d.wd, "keeper.sock.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
		bpf.Unpin(d.pinDir)
		bpf.UnpinGuard(d.pinDir + "-guard")
		if d.keepWD {
			fmt.Printf("   kept for a look: %s (agent.log, events.jsonl, audit/)\n", d.wd)
		} else {
			os.RemoveAll(d.wd)
		}
		if !keepNode {
			cmd := exec.Command("bash", "install/node.sh", "down")
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			cmd.Run()
		}
		fmt.Println("   pods, agent, notify keeper and pinned BPF programs removed")
	})
}

// dnsResponder answers DNS queries on ip:53 with NXDOMAIN.
func dnsResponder(ip string) func() {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip), Port: 53})
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: no DNS responder on %s:53: %v\n", ip, err)
		return func() {}
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if n >= 12 {
				buf[2] |= 0x80
				buf[3] = buf[3]&0xf0 | 3
				c.WriteToUDP(buf[:n], from)
			}
		}
	}()
	return func() { c.Close() }
}
