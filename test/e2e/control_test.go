package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
)

// The response ladder on a real node: pods in mode enforce are acted on
// (throttled, killed, denied in the kernel and by the notify server) and
// pods in mode detect only reported, each action audited.

func enforced(extra ...string) map[string]string {
	ann := map[string]string{"ebpf-monitor": "true", "vigil.dev/mode": "enforce"}
	for i := 0; i+1 < len(extra); i += 2 {
		ann[extra[i]] = extra[i+1]
	}
	return ann
}

// actionsOf reads the agent's action records about one container.
func actionsOf(t *testing.T, id string) []control.Record {
	t.Helper()
	b, err := os.ReadFile(agent.events)
	if err != nil {
		t.Fatal(err)
	}
	var out []control.Record
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte(`{"action":`)) || !bytes.Contains(line, []byte(`"container_id":"`+id+`"`)) {
			continue
		}
		var l struct{ Action control.Record }
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("bad action line %q: %v", line, err)
		}
		out = append(out, l.Action)
	}
	return out
}

func findAction(rs []control.Record, a control.Action, undo bool) (control.Record, bool) {
	for _, r := range rs {
		if r.Action == a && r.Undo == undo && r.Error == "" {
			return r, true
		}
	}
	return control.Record{}, false
}

// cgroupsPath is the container's cgroups path (cgroupfs driver).
func cgroupsPath(t *testing.T, id string) string {
	t.Helper()
	return runtimeSpec(t, id).Linux.CgroupsPath
}

// cpuUsage is the container's CPU time so far, from its cgroup v2.
func cpuUsage(t *testing.T, path string) time.Duration {
	t.Helper()
	root, err := bpf.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	ns, _, err := bpf.CgroupUsage(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(ns)
}

func cpuShares(t *testing.T, path string) (shares uint64, quota int64) {
	t.Helper()
	c, err := (&control.Cgroups{}).ReadCPU(control.Target{CgroupRel: strings.TrimPrefix(path, "/")})
	if err != nil {
		t.Fatal(err)
	}
	return c.Shares, c.QuotaUs
}

// rate is the CPU a container uses over d, in cores.
func rate(t *testing.T, path string, d time.Duration) float64 {
	t.Helper()
	a := cpuUsage(t, path)
	time.Sleep(d)
	return float64(cpuUsage(t, path)-a) / float64(d)
}

// spin is a workload that keeps two cores busy with no syscalls for secs
// seconds, then idles.
func spin(secs int) []string {
	loop := "while :; do :; done"
	return []string{"sh", "-c", fmt.Sprintf("timeout %d sh -c '%s' & timeout %d sh -c '%s' & wait; echo calm; sleep 600", secs, loop, secs, loop)}
}

// TestThrottleCPUAbuse: a pod in enforce spinning on every core is throttled
// within a second of its verdict (shares and quota written, its CPU drops
// while a spinning neighbour's does not) and restored once it calms down;
// the same workload in detect is only reported, with would_act.
func TestThrottleCPUAbuse(t *testing.T) {
	need(t)
	neighbour := runPod(t, "neighbour", "default", nil).run(t, "spin", busybox, []string{"sh", "-c", "while :; do :; done"}, nil)
	npath := cgroupsPath(t, neighbour)
	t.Cleanup(func() { crictl(nil, "stop", "-t", "0", neighbour) })

	t.Run("detect reports only", func(t *testing.T) {
		id := runPod(t, "spin-detect", "default", map[string]string{"ebpf-monitor": "true", "vigil.dev/mode": "detect"}).
			run(t, "app", busybox, spin(6), nil)
		t.Cleanup(func() { crictl(nil, "stop", "-t", "0", id) })
		path := cgroupsPath(t, id)
		shares0, _ := cpuShares(t, path)
		var v detector.Verdict
		eventually(t, "a cpu-abuse verdict", 15*time.Second, func() bool {
			for _, x := range verdictsOf(t, id) {
				if x.Class == detector.ClassCPU {
					v = x
					return true
				}
			}
			return false
		})
		if v.Mode != "detect" || !slices.Contains(v.WouldAct, "throttle") || len(v.Actions) != 0 {
			t.Errorf("detect verdict %+v: want would_act [throttle] and no actions", v)
		}
		time.Sleep(time.Second)
		if shares, quota := cpuShares(t, path); shares != shares0 || quota > 0 {
			t.Errorf("detect pod's cpu changed: shares %d→%d quota %d", shares0, shares, quota)
		}
		if rs := actionsOf(t, id); len(rs) != 0 {
			t.Errorf("actions on a detect pod: %+v", rs)
		}
	})

	t.Run("enforce throttles and restores", func(t *testing.T) {
		id := runPod(t, "spin-enforce", "default", enforced("vigil.dev/policy", "e2e-fast")).run(t, "app", busybox, spin(7), nil)
		t.Cleanup(func() { crictl(nil, "stop", "-t", "0", id) })
		path := cgroupsPath(t, id)
		var th control.Record
		eventually(t, "a throttle action", 15*time.Second, func() bool {
			var ok bool
			th, ok = findAction(actionsOf(t, id), control.ActThrottle, false)
			return ok
		})
		var v detector.Verdict
		for _, x := range verdictsOf(t, id) {
			if x.ID == th.Verdict {
				v = x
			}
		}
		if v.ID == "" || v.Mode != "enforce" || !slices.Contains(v.Actions, "throttle") {
			t.Fatalf("throttle %+v without its enforce verdict (%+v)", th, v)
		}
		if d := th.Effective.Sub(v.Time); d > time.Second || th.Latency > time.Second {
			t.Errorf("throttled %v after the verdict (latency from the event %v), want within 1s", d, th.Latency)
		}
		// What is in force, right after the action (the policy restores after 3 s
		// without a verdict).
		st, err := status()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(st.InForce, func(f agentctl.InForce) bool { return f.ContainerID == id && f.Action == "throttle" }) {
			t.Errorf("status does not show the throttle in force: %+v", st.InForce)
		}
		shares, quota := cpuShares(t, path)
		if shares != 2 || quota != 10000 {
			t.Errorf("throttled container's cpu: shares %d quota %d, want 2 and 10000", shares, quota)
		}
		spinning, busy := rate(t, path, time.Second), rate(t, npath, time.Second)
		t.Logf("throttled pod %.2f cores, neighbour %.2f cores", spinning, busy)
		if spinning > 0.2 || busy < 0.5 {
			t.Errorf("throttled pod uses %.2f cores (want ≤ 0.2), its spinning neighbour %.2f (want ≥ 0.5)", spinning, busy)
		}
		// Throttled, the workload no longer looks abusive; it stops spinning after
		// 7 s, and the policy restores 3 s after the last verdict.
		eventually(t, "the throttle restored after the pod calmed down", 30*time.Second, func() bool {
			_, ok := findAction(actionsOf(t, id), control.ActThrottle, true)
			return ok
		})
		eventually(t, "the pod unthrottled once calm", 30*time.Second, func() bool {
			shares, quota := cpuShares(t, path)
			return shares != 2 && quota <= 0
		})
		// The audit log holds the verdict and both actions.
		eventually(t, "verdict and actions in the audit log", 5*time.Second, func() bool {
			var kinds []audit.Kind
			audit.Scan(auditDir(), &audit.Filter{ContainerID: id, Kinds: []audit.Kind{audit.KindVerdict, audit.KindAction}}, func(r *audit.Record) error {
				if r.Kind == audit.KindVerdict || bytes.Contains(r.Body, []byte(`"action":"throttle"`)) {
					kinds = append(kinds, r.Kind)
				}
				return nil
			})
			return slices.Contains(kinds, audit.KindVerdict) && len(kinds) >= 3
		})
	})
}

// TestKillOnHostRootRead: a pod in enforce that opens another root through
// /proc/1/root (in this pod, pause's; on a host-PID pod, the host's) has
// that process killed (here its only process: the container exits);
// verdict and action are audited; a benign pod on the node is untouched.
func TestKillOnHostRootRead(t *testing.T) {
	need(t)
	benign := runPod(t, "benign", "default", monitored).run(t, "app", busybox, []string{"sh", "-c", "while true; do cat /etc/hostname >/dev/null; sleep 0.2; done"}, nil)
	t.Cleanup(func() { crictl(nil, "stop", "-t", "0", benign) })
	p := runPod(t, "escape", "default", enforced())
	id := p.run(t, "app", busybox, []string{"sh", "-c", "sleep 1; exec tail -f /proc/1/root/dev/null"}, nil)
	logs := waitExited(t, id)
	out, _ := crictl(t, "inspect", "-o", "go-template", "--template", "{{.status.exitCode}}", id)
	if out != "137" {
		t.Errorf("escaping container exit code %q (logs %q), want 137 (SIGKILL)", out, logs)
	}
	var kill control.Record
	eventually(t, "the kill-process action", 10*time.Second, func() bool {
		var ok bool
		kill, ok = findAction(actionsOf(t, id), control.ActKillProcess, false)
		return ok
	})
	t.Logf("killed %v after the triggering event", kill.Latency)
	eventually(t, "verdict and kill in the audit log", 5*time.Second, func() bool {
		var verdict, action bool
		audit.Scan(auditDir(), &audit.Filter{ContainerID: id}, func(r *audit.Record) error {
			verdict = verdict || r.Kind == audit.KindVerdict && bytes.Contains(r.Body, []byte(kill.Verdict))
			action = action || r.Kind == audit.KindAction && bytes.Contains(r.Body, []byte(`"action":"kill-process"`)) && bytes.Contains(r.Body, []byte(kill.Verdict))
			return nil
		})
		return verdict && action
	})
	if st, _ := crictl(t, "inspect", "-o", "go-template", "--template", "{{.status.state}}", benign); st != "CONTAINER_RUNNING" {
		t.Errorf("benign pod %s", st)
	}
	if rs := actionsOf(t, benign); len(rs) != 0 {
		t.Errorf("actions on the benign pod: %+v", rs)
	}
}

// dnsResponder answers every UDP datagram on addr:53 with a DNS NXDOMAIN
// reply and counts them.
type dnsResponder struct {
	conn *net.UDPConn
	n    atomic.Int64
}

func newDNSResponder(t *testing.T, ip string) *dnsResponder {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip), Port: 53})
	if err != nil {
		t.Fatalf("DNS responder on %s:53: %v", ip, err)
	}
	r := &dnsResponder{conn: c}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			r.n.Add(1)
			if n < 12 {
				continue
			}
			reply := append([]byte(nil), buf[:n]...)
			reply[2] |= 0x80               // QR: a response
			reply[3] = reply[3]&0xf0 | 0x3 // NXDOMAIN
			c.WriteToUDP(reply, from)
		}
	}()
	return r
}

// TestDenyConnectForeignDNS: after its verdict, a pod's DNS to a resolver
// that is not allowed is refused in the kernel (EPERM), while the allowed
// resolver on another loopback address keeps answering.
func TestDenyConnectForeignDNS(t *testing.T) {
	need(t)
	allowed, foreign := newDNSResponder(t, allowedResolver), newDNSResponder(t, "127.0.0.3")
	p := runPod(t, "dns", "default", enforced())
	id := p.run(t, "app", busybox, []string{"sh", "-c",
		"while true; do nslookup vigil.test 127.0.0.3; nslookup vigil.test " + allowedResolver + "; sleep 0.3; done"}, nil)
	t.Cleanup(func() { crictl(nil, "stop", "-t", "0", id) })
	var dc control.Record
	eventually(t, "a deny-connect action", 15*time.Second, func() bool {
		var ok bool
		dc, ok = findAction(actionsOf(t, id), control.ActDenyConnect, false)
		return ok
	})
	t.Logf("deny-connect in force %v after the triggering query: %s", dc.Latency, dc.Detail)
	time.Sleep(500 * time.Millisecond)
	f0, a0 := foreign.n.Load(), allowed.n.Load()
	time.Sleep(3 * time.Second)
	f1, a1 := foreign.n.Load(), allowed.n.Load()
	if f1 != f0 {
		t.Errorf("the foreign resolver still got %d queries after deny-connect", f1-f0)
	}
	if a1-a0 < 2 {
		t.Errorf("the allowed resolver got %d queries in 3 s after deny-connect, want it still used", a1-a0)
	}
	// The kernel refused them: the tracer saw EPERM on sends to 127.0.0.3:53.
	eventually(t, "an EPERM send to the foreign resolver in the trace", 5*time.Second, func() bool {
		for _, ev := range eventsOf(t, id) {
			if ev.Addr.String() == "127.0.0.3:53" && ev.Errno() == 1 && ev.Time.After(dc.Effective) {
				return true
			}
		}
		return false
	})
}

// TestDenySyscallThroughNotify: after a privesc verdict, the container's
// notified syscalls (mkdir here) get EPERM from the notify server, and
// crictl exec into the container still works.
func TestDenySyscallThroughNotify(t *testing.T) {
	need(t)
	p := runPod(t, "privesc", "default", enforced())
	id := p.run(t, "app", busybox, []string{"sh", "-c", "mkdir /tmp/before && echo mkdir-ok; sleep 1; unshare -U true; sleep 600"}, nil)
	t.Cleanup(func() { crictl(nil, "stop", "-t", "0", id) })
	eventually(t, "a deny-syscall action", 15*time.Second, func() bool {
		_, ok := findAction(actionsOf(t, id), control.ActDenySyscall, false)
		return ok
	})
	out, err := crictl(nil, "exec", id, "sh", "-c", "mkdir /tmp/after && echo made || echo mkdir-refused")
	if err != nil {
		t.Fatalf("crictl exec into the denied container: %v", err)
	}
	if !strings.Contains(out, "mkdir-refused") {
		t.Errorf("mkdir after deny-syscall: %q, want it refused", out)
	}
	eventually(t, "a dynamic EPERM decision for mkdir", 5*time.Second, func() bool {
		for _, d := range decisionsOf(t, id) {
			if d.Syscall == "mkdir" && d.Action == "deny" && d.Errno == "EPERM" && d.Dynamic {
				return true
			}
		}
		return false
	})
	// vigil release undoes it.
	resp, err := agentctl.Call(controlSocket(), agentctl.Request{Op: agentctl.OpRelease, Target: id[:12]})
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	t.Logf("release: %v", resp.Done)
	if out, _ := crictl(nil, "exec", id, "sh", "-c", "mkdir /tmp/released && echo made"); !strings.Contains(out, "made") {
		t.Errorf("mkdir after release: %q", out)
	}
}

// TestLiveReload: a rule file changed while a container runs decides its
// next events within a second; a broken file is rejected, named with its
// line, and the rules in force keep deciding.
func TestLiveReload(t *testing.T) {
	need(t)
	id := runPod(t, "reload", "default", monitored).run(t, "app", busybox,
		[]string{"sh", "-c", "touch /tmp/e2e-marker; while true; do cat /tmp/e2e-marker; sleep 0.1; done"}, nil)
	t.Cleanup(func() {
		crictl(nil, "stop", "-t", "0", id)
		os.WriteFile(ruleFile(), []byte(baseRules), 0o600)
	})
	time.Sleep(time.Second)
	if vs := verdictsOf(t, id); slices.ContainsFunc(vs, func(v detector.Verdict) bool { return v.Rule == "e2e-marker-read" }) {
		t.Fatal("verdict before the rule exists")
	}
	written := time.Now()
	if err := os.WriteFile(ruleFile(), []byte(baseRules+markerRule), 0o600); err != nil {
		t.Fatal(err)
	}
	var first time.Time
	eventually(t, "a verdict of the new rule", 10*time.Second, func() bool {
		for _, v := range verdictsOf(t, id) {
			if v.Rule == "e2e-marker-read" {
				first = v.Time
				return true
			}
		}
		return false
	})
	t.Logf("new rule deciding %v after the file was written", first.Sub(written))
	if d := first.Sub(written); d > time.Second {
		t.Errorf("the new rule decided %v after the change, want ≤ 1s", d)
	}
	// A broken file: rejected, the old rule keeps deciding.
	if err := os.WriteFile(ruleFile(), []byte(baseRules+markerRule+"  - rule: broken\n    class: nonsense\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var st *agentctl.Status
	eventually(t, "the broken file rejected", 5*time.Second, func() bool {
		var err error
		st, err = status()
		return err == nil && strings.Contains(st.ReloadError, filepath.Base(ruleFile()))
	})
	if !strings.Contains(st.ReloadError, "nonsense") || !strings.Contains(st.ReloadError, ":") {
		t.Errorf("reload error %q: want the file, line and bad value", st.ReloadError)
	}
	n := len(verdictsOf(t, id))
	eventually(t, "the old rule still deciding", 5*time.Second, func() bool { return len(verdictsOf(t, id)) > n+2 })
}

// TestAgentRestartKeepsActions: kill -9 of the agent while a container is
// throttled and denied; the new agent knows what is in force (status) and
// the notify answers go on (mkdir still refused, exec still works).
func TestAgentRestartKeepsActions(t *testing.T) {
	need(t)
	p := runPod(t, "restart-enforced", "default", enforced("vigil.dev/policy", "e2e-slow"))
	loop := "while :; do :; done"
	id := p.run(t, "app", busybox, []string{"sh", "-c", fmt.Sprintf("unshare -U true; timeout 60 sh -c '%s' & timeout 60 sh -c '%s' & wait; sleep 600", loop, loop)}, nil)
	t.Cleanup(func() { crictl(nil, "stop", "-t", "0", id) })
	eventually(t, "deny-syscall and throttle in force", 20*time.Second, func() bool {
		rs := actionsOf(t, id)
		_, d := findAction(rs, control.ActDenySyscall, false)
		_, th := findAction(rs, control.ActThrottle, false)
		return d && th
	})
	agent.kill()
	var err error
	if agent, err = startAgent(); err != nil {
		t.Fatal(err)
	}
	st, err := status()
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, f := range st.InForce {
		if f.ContainerID == id {
			have = append(have, f.Action)
		}
	}
	if !slices.Contains(have, "throttle") || !slices.Contains(have, "deny-syscall") {
		t.Errorf("after the restart status shows %v in force, want throttle and deny-syscall", have)
	}
	out, err := crictl(nil, "exec", id, "sh", "-c", "mkdir /tmp/after-restart && echo made || echo mkdir-refused")
	if err != nil || !strings.Contains(out, "mkdir-refused") {
		t.Errorf("after the restart: exec %q, %v; want mkdir refused by the notify server", out, err)
	}
}

// The agent's rule file for TestLiveReload, and the response policies the
// tests name.
const (
	allowedResolver = "127.0.0.2"
	// baseRules: besides the default rules, a CPU rule that holds on a busy
	// test machine, where a spinning pod may get less than the half core the
	// default rule wants (a monitored pod that spins with almost no syscalls).
	baseRules = "rules:\n  - rule: e2e-never\n    class: fs-escape\n    severity: low\n    syscalls: [openat]\n    when: {path: /nonexistent/e2e}\n" +
		"  - sample: e2e-spin\n    class: cpu-abuse\n    severity: high\n    desc: a spinning test pod\n    when: {cpu_cores: {ge: 0.2}, syscalls_per_cpu_second: {le: 200}}\n    for: 2s\n"
	markerRule = "  - rule: e2e-marker-read\n    class: fs-escape\n    severity: low\n    syscalls: [open, openat]\n    when: {path: /tmp/e2e-marker}\n"
	fastPolicy = "restoreAfter: 3s\nthrottle: {shares: 2, quota: 10%}\nresponses:\n  - name: cpu\n    when: {class: cpu-abuse}\n    actions: [throttle]\n"
	slowPolicy = "restoreAfter: 10m\nthrottle: {shares: 2, quota: 10%}\nresponses:\n  - name: cpu\n    when: {class: cpu-abuse}\n    actions: [throttle]\n  - name: escape\n    when: {class: [privesc, fs-escape], severity: high}\n    actions: [deny-syscall]\n"
)

func ruleFile() string { return filepath.Join(workDir, "rules.yaml") }

func policyDir() string { return filepath.Join(workDir, "policies") }

// writeControlFiles writes the rule file and policies the agent starts with.
func writeControlFiles() error {
	if err := os.WriteFile(ruleFile(), []byte(baseRules), 0o600); err != nil {
		return err
	}
	if err := os.MkdirAll(policyDir(), 0o700); err != nil {
		return err
	}
	for name, text := range map[string]string{"e2e-fast": fastPolicy, "e2e-slow": slowPolicy} {
		if err := os.WriteFile(filepath.Join(policyDir(), name+".yaml"), []byte(text), 0o600); err != nil {
			return err
		}
	}
	return nil
}
