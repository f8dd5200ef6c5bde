package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	vigilagent "vigil.dev/vigil/agent"
	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

var monitored = map[string]string{"ebpf-monitor": "true"}

// checkProbeTrace asserts the probe's exact syscall sequence from its execve
// on: close(-1) … close(-N) failing EBADF, write, exit_group; no gap in the
// sequence numbers; the container's metadata on every event.
func checkProbeTrace(t *testing.T, evs []event.Event, p *pod, name, id string) {
	t.Helper()
	start := slices.IndexFunc(evs, func(e event.Event) bool { return e.Name() == "execve" && e.Path == "/probe" && e.Ret == 0 })
	if start < 0 {
		t.Fatalf("no successful execve of /probe among %d events", len(evs))
	}
	got := evs[start:]
	if len(got) != probeN+3 {
		t.Fatalf("%d events from execve on, want %d (execve, %d close, write, exit_group)", len(got), probeN+3, probeN)
	}
	for i, e := range got {
		if i > 0 && e.Seq != got[i-1].Seq+1 {
			t.Fatalf("sequence gap at event %d: %d after %d", i, e.Seq, got[i-1].Seq)
		}
		c := e.Container
		if c == nil || c.ID != id || c.Name != name || c.Pod != p.name || c.Namespace != p.namespace || c.Image != probe {
			t.Fatalf("event %d: container metadata %+v, want %s/%s %s (%s)", i, c, p.namespace, p.name, name, probe)
		}
	}
	for i := 1; i <= probeN; i++ {
		e := got[i]
		if e.Name() != "close" || int64(e.Args[0]) != -int64(i) || e.Errno() != int(syscall.EBADF) {
			t.Fatalf("event %d: %s(%d) = %d, want close(%d) = -EBADF", i, e.Name(), int64(e.Args[0]), e.Ret, -i)
		}
	}
	if w := got[probeN+1]; w.Name() != "write" || w.Args[0] != 1 || w.Ret != 11 {
		t.Errorf("want write(1, …, 11) = 11, got %s(%d) = %d", w.Name(), w.Args[0], w.Ret)
	}
	if x := got[probeN+2]; x.Name() != "exit_group" || x.Flags&event.NoReturn == 0 {
		t.Errorf("want exit_group (noreturn), got %s flags %v", x.Name(), x.Flags)
	}
}

func TestMonitoredPodTracedFromFirstExecve(t *testing.T) {
	need(t)
	p := runPod(t, "probe", "default", monitored)
	id := p.run(t, "probe", probe, nil, nil)
	if logs := waitExited(t, id); !strings.Contains(logs, "probe done") {
		t.Fatalf("probe output %q", logs)
	}
	var evs []event.Event
	eventually(t, "the probe's exit_group in the events", 10*time.Second, func() bool {
		evs = eventsOf(t, id)
		return len(evs) > 0 && evs[len(evs)-1].Name() == "exit_group"
	})
	checkProbeTrace(t, evs, p, "probe", id)

	// The kernel's exact counters agree with what was written.
	var cs agentctl.ContainerStatus
	eventually(t, "final counters in vigil status", 5*time.Second, func() bool {
		var ok bool
		cs, ok = containerStatus(t, id)
		return ok && cs.Seen > 0 && !cs.Tracked
	})
	if cs.Seen != cs.Emitted+cs.Dropped || cs.Dropped != 0 || cs.Seen != uint64(len(evs)) {
		t.Errorf("counters seen %d emitted %d dropped %d; %d events written", cs.Seen, cs.Emitted, cs.Dropped, len(evs))
	}
	if want := defaultSeccomp(t); cs.Seccomp != want || !cs.Monitor {
		t.Errorf("status %+v: want monitored with the %s profile (the default)", cs, want)
	}

	// The audit log holds the same events and the container's lifecycle
	// with its final counters, and verifies.
	var audited int
	var stop audit.Lifecycle
	eventually(t, "the container's records in the audit log", 5*time.Second, func() bool {
		audited, stop = 0, audit.Lifecycle{}
		err := audit.Scan(auditDir(), &audit.Filter{ContainerID: id}, func(r *audit.Record) error {
			switch r.Kind {
			case audit.KindEvent:
				audited++
			case audit.KindLifecycle:
				var l audit.Lifecycle
				if json.Unmarshal(r.Body, &l) == nil && l.Event == "stop" {
					stop = l
				}
			}
			return nil
		})
		return err == nil && audited == len(evs) && stop.Event == "stop"
	})
	if stop.Counters["seen"] != cs.Seen || stop.Name != "probe" || stop.Pod != p.name {
		t.Errorf("audited stop %+v, want final counters seen=%d", stop, cs.Seen)
	}
	if rep, err := audit.Verify(auditDir(), ""); err != nil || !rep.OK() {
		t.Errorf("audit verify: %+v, %v", rep.Problem, err)
	}
}

func TestUnannotatedPodUntouched(t *testing.T) {
	need(t)
	p := runPod(t, "plain", "default", nil)
	id := p.run(t, "plain", busybox, []string{"sh", "-c", "grep Seccomp: /proc/self/status; mkdir /tmp/d && echo made"}, nil)
	logs := waitExited(t, id)
	if !strings.Contains(logs, "Seccomp:\t0") || !strings.Contains(logs, "made") {
		t.Errorf("unannotated container: %q, want no seccomp filter and mkdir working", logs)
	}
	if s := runtimeSpec(t, id).Linux.Seccomp; s != nil {
		t.Errorf("unannotated container got a seccomp policy: %+v", s)
	}
	time.Sleep(300 * time.Millisecond) // past the agent's flush interval
	if evs := eventsOf(t, id); len(evs) != 0 {
		t.Errorf("unannotated container traced: %d events", len(evs))
	}
	if d := decisionsOf(t, id); len(d) != 0 {
		t.Errorf("unannotated container got notify decisions: %+v", d)
	}
	if cs, ok := containerStatus(t, id); ok && (cs.Monitor || cs.Tracked || cs.Seen > 0) {
		t.Errorf("status: %+v", cs)
	}
}

func TestNodeForcedMonitoringOverridesFalse(t *testing.T) {
	need(t)
	p := runPod(t, "forced", "vigil-forced", map[string]string{"ebpf-monitor": "false"})
	id := p.run(t, "probe", probe, nil, nil)
	waitExited(t, id)
	var evs []event.Event
	eventually(t, "events of the forced container", 10*time.Second, func() bool {
		evs = eventsOf(t, id)
		return len(evs) > 0 && evs[len(evs)-1].Name() == "exit_group"
	})
	checkProbeTrace(t, evs, p, "probe", id)
	if cs, _ := containerStatus(t, id); !cs.Forced || !cs.Monitor {
		t.Errorf("status %+v: want forced monitoring", cs)
	}
}

func TestBadAnnotationsFailCreation(t *testing.T) {
	need(t)
	tests := []struct {
		key, value string
		allowed    []string
	}{
		{"ebpf-monitor", "yes", []string{`"true"`, `"false"`}},
		{"vigil.dev/seccomp", "bogus", []string{`"runtime-default"`, `"strict"`, `"notify"`, `"enosys-default"`, `"no-mkdir"`}},
		{"vigil.dev/seccomp", "unconfined", []string{`"notify"`}},
		{"vigil.dev/priority", "high", []string{"0 to 100"}},
		{"vigil.dev/priority/container.app", "101", []string{"0 to 100"}},
		{"vigil.dev/mode", "block", []string{`"learn"`, `"detect"`, `"enforce"`}},
		{"vigil.dev/policy", "../etc", []string{"policy name"}},
	}
	p := runPod(t, "bad", "default", nil)
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			_, err := p.create(t, "app", busybox, []string{"true"}, map[string]string{tt.key: tt.value})
			if err == nil {
				t.Fatalf("container with %s=%q was created", tt.key, tt.value)
			}
			// crictl shows the runtime's error with its quotes escaped.
			msg := strings.ReplaceAll(err.Error(), `\"`, `"`)
			for _, s := range append([]string{tt.key, fmt.Sprintf("%q", tt.value), "allowed values"}, tt.allowed...) {
				if !strings.Contains(msg, s) {
					t.Errorf("error lacks %s:\n%v", s, err)
				}
			}
		})
	}
	// Nothing else broke: the same pod still runs a good container.
	// (Priority applies to monitored containers: the node allows no more.)
	id := p.run(t, "good", busybox, []string{"echo", "fine"}, map[string]string{"vigil.dev/priority": "80", "ebpf-monitor": "true"})
	if logs := waitExited(t, id); !strings.Contains(logs, "fine") {
		t.Errorf("good container after rejections: %q", logs)
	}
	if cpu := runtimeSpec(t, id).Linux.Resources.CPU; cpu == nil || cpu.Shares == nil || *cpu.Shares != 8192 {
		t.Errorf("priority 80: cpu %+v, want shares 8192", cpu)
	}
}

func TestSeccompStrictBlocksUnshare(t *testing.T) {
	need(t)
	needSeccompAdjust(t)
	script := []string{"sh", "-c", "unshare -U true && echo unshare-ok"}
	strict := runPod(t, "strict", "default", map[string]string{"vigil.dev/seccomp": "strict"})
	id := strict.run(t, "app", busybox, script, nil)
	if logs := waitExited(t, id); !strings.Contains(logs, "Operation not permitted") || strings.Contains(logs, "unshare-ok") {
		t.Errorf("strict: %q, want unshare to fail with EPERM", logs)
	}
	// The same workload without vigil's profile can unshare: the denial is strict's.
	plain := runPod(t, "nostrict", "default", nil)
	id = plain.run(t, "app", busybox, script, nil)
	if logs := waitExited(t, id); !strings.Contains(logs, "unshare-ok") {
		t.Errorf("unconfined: %q, want unshare to work", logs)
	}
}

// TestVerdicts: the agent's detector flags what the workload of a monitored
// container does (a read through /proc/1/root), and not what the runtime
// did to set the container up (runc's pivot_root, before the first exec).
func TestVerdicts(t *testing.T) {
	need(t)
	p := runPod(t, "verdicts", "default", monitored)
	id := p.run(t, "app", busybox, []string{"sh", "-c", "cat /proc/1/root/etc/hostname >/dev/null; echo read-done"}, nil)
	if logs := waitExited(t, id); !strings.Contains(logs, "read-done") {
		t.Fatalf("logs %q", logs)
	}
	var vs []detector.Verdict
	eventually(t, "a verdict for the read through /proc/1/root", 10*time.Second, func() bool {
		vs = verdictsOf(t, id)
		for _, v := range vs {
			if v.Class == "fs-escape" && v.Container != nil && v.Container.Pod != "" {
				return true
			}
		}
		return false
	})
	for _, v := range vs {
		if v.Comm == "runc:[2:INIT]" || strings.HasPrefix(v.Comm, "runc") {
			t.Errorf("verdict about the runtime's setup of the container: %+v", v)
		}
	}
}

// TestSeccompDefaultErrnoKept: a profile whose default action returns
// ENOSYS keeps doing so, although NRI's adjustment drops defaultErrnoRet
// (vigil spells the default out per syscall).
func TestSeccompDefaultErrnoKept(t *testing.T) {
	need(t)
	needSeccompAdjust(t)
	p := runPod(t, "enosys", "default", map[string]string{"vigil.dev/seccomp": "enosys-default"})
	id := p.run(t, "app", busybox, []string{"sh", "-c", "unshare -U true || echo unshare-failed"}, nil)
	logs := waitExited(t, id)
	if !strings.Contains(logs, "Function not implemented") || !strings.Contains(logs, "unshare-failed") {
		t.Errorf("logs %q: want unshare to fail with ENOSYS, the profile's default errno", logs)
	}
	if s := runtimeSpec(t, id).Linux.Seccomp; s == nil || s.DefaultErrnoRet != nil {
		t.Logf("the runtime kept defaultErrnoRet: %+v (the workaround is then redundant)", s)
	}
}

func TestSeccompNotify(t *testing.T) {
	need(t)
	needSeccompAdjust(t)
	t.Run("notify profile allows mkdir through the server", func(t *testing.T) {
		p := runPod(t, "notify", "default", monitored)
		id := p.run(t, "app", busybox, []string{"sh", "-c", "mkdir /tmp/made && echo mkdir-ok; unshare -U true || echo unshare-denied"}, nil)
		logs := waitExited(t, id)
		if !strings.Contains(logs, "mkdir-ok") || !strings.Contains(logs, "unshare-denied") {
			t.Errorf("logs %q: want mkdir allowed and unshare denied", logs)
		}
		var ds []vigilagent.Decision
		eventually(t, "notify decisions for mkdir and unshare", 5*time.Second, func() bool {
			ds = decisionsOf(t, id)
			return hasDecision(ds, "mkdir", "allow", "") && hasDecision(ds, "unshare", "deny", "EPERM")
		})
	})
	t.Run("named profile denies mkdir with the policy's errno", func(t *testing.T) {
		p := runPod(t, "nomkdir", "default", map[string]string{"vigil.dev/seccomp": "no-mkdir"})
		id := p.run(t, "app", busybox, []string{"sh", "-c", "mkdir /tmp/x || echo mkdir-failed"}, nil)
		logs := waitExited(t, id)
		if !strings.Contains(logs, "Permission denied") || !strings.Contains(logs, "mkdir-failed") {
			t.Errorf("logs %q: want mkdir to fail with EACCES (the policy's answer)", logs)
		}
		eventually(t, "a deny EACCES decision", 5*time.Second, func() bool { return hasDecision(decisionsOf(t, id), "mkdir", "deny", "EACCES") })
		eventually(t, "the denial in the audit log", 5*time.Second, func() bool {
			var ds []vigilagent.Decision
			audit.Scan(auditDir(), &audit.Filter{Kinds: []audit.Kind{audit.KindAction}, ContainerID: id}, func(r *audit.Record) error {
				var d vigilagent.Decision
				if json.Unmarshal(r.Body, &d) == nil {
					ds = append(ds, d)
				}
				return nil
			})
			return hasDecision(ds, "mkdir", "deny", "EACCES")
		})
	})
	t.Run("crictl exec into a notify container", func(t *testing.T) {
		p := runPod(t, "notifyexec", "default", monitored)
		id := p.run(t, "app", busybox, []string{"sleep", "60"}, nil)
		out, err := crictl(t, "exec", id, "sh", "-c", "mkdir /tmp/fromexec && echo exec-ok")
		if err != nil || !strings.Contains(out, "exec-ok") {
			t.Fatalf("exec: %q, %v", out, err)
		}
		eventually(t, "the exec's mkdir decision", 5*time.Second, func() bool { return hasDecision(decisionsOf(t, id), "mkdir", "allow", "") })
		crictl(t, "stop", "-t", "0", id)
	})
}

func hasDecision(ds []vigilagent.Decision, syscall, action, errno string) bool {
	return slices.ContainsFunc(ds, func(d vigilagent.Decision) bool {
		return (d.Syscall == syscall || d.Syscall == syscall+"at") && d.Action == action && d.Errno == errno && d.Error == ""
	})
}

// TestValidatorRejectionReported turns on containerd's NRI validator
// refusing seccomp adjustments: creation fails with the validator's reason,
// and the agent reports the container as rejected.
func TestValidatorRejectionReported(t *testing.T) {
	need(t)
	skipOn(t, "crio", "CRI-O 1.34's NRI (v0.9) has no default validator")
	restartRuntime(t, "VIGIL_NRI_VALIDATOR=reject-seccomp")
	defer restartRuntime(t)
	st, _ := status()
	before := len(st.Rejected)
	p := runPod(t, "validated", "default", monitored)
	_, err := p.create(t, "app", busybox, []string{"true"}, nil)
	if err == nil || !strings.Contains(err.Error(), "rejected container adjustment") || !strings.Contains(err.Error(), "vigil") {
		t.Fatalf("create under a rejecting validator: %v", err)
	}
	eventually(t, "the rejection in vigil status", 5*time.Second, func() bool {
		st, err := status()
		return err == nil && len(st.Rejected) > before
	})
	if !strings.Contains(agent.logs(), "default_validator") {
		t.Errorf("agent log does not explain the rejection:\n%s", agent.logs())
	}
}

// TestRestarts kills the agent and restarts it, then restarts the runtime:
// running monitored containers are tracked again with their counters intact,
// and new containers are handled. It runs last: it replaces the agent.
func TestRestarts(t *testing.T) {
	need(t)
	p := runPod(t, "longrun", "default", map[string]string{"ebpf-monitor": "true", "vigil.dev/seccomp": "runtime-default"})
	id := p.run(t, "loop", busybox, []string{"sh", "-c", "while true; do cat /proc/self/stat >/dev/null; sleep 0.1; done"}, nil)
	seen := func() uint64 {
		cs, ok := containerStatus(t, id)
		if !ok || !cs.Tracked {
			return 0
		}
		return cs.Seen
	}
	var before uint64
	eventually(t, "the loop container counting", 10*time.Second, func() bool { before = seen(); return before > 100 })
	// A notify container whose own process keeps calling mkdir (a notified
	// syscall) across the restarts: its notify fd must survive the agent.
	np := runPod(t, "notifyloop", "default", monitored)
	nid := np.run(t, "mk", busybox, []string{"sh", "-c", "i=0; while true; do i=$((i+1)); mkdir /tmp/d$i && echo ok$i || echo fail$i; sleep 0.1; done"}, nil)
	mkdirs := func() (ok int, logs string) {
		out, _ := crictlCmd("logs", nid).CombinedOutput()
		return strings.Count(string(out), "ok"), string(out)
	}
	eventually(t, "the notify loop running", 10*time.Second, func() bool { n, _ := mkdirs(); return n > 3 })

	t.Run("healthz and metrics", func(t *testing.T) {
		resp, err := http.Get("http://" + metricsAddr + "/healthz")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/healthz: %v %v", resp, err)
		}
		resp.Body.Close()
		resp, err = http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// Label order is the exposition library's: look for each label.
		found := false
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "vigil_container_syscalls_seen_total{") && strings.Contains(line, fmt.Sprintf(`id="%s"`, id)) &&
				strings.Contains(line, `pod="longrun"`) && strings.Contains(line, `container="loop"`) && strings.Contains(line, `namespace="default"`) {
				found = true
			}
		}
		if !found || !strings.Contains(string(body), "vigil_runtime_connected 1") {
			t.Errorf("/metrics lacks vigil_container_syscalls_seen_total of %s or vigil_runtime_connected 1:\n%s", id, body)
		}
	})

	t.Run("agent killed and restarted", func(t *testing.T) {
		agent.kill()
		time.Sleep(500 * time.Millisecond) // the pinned tracer keeps counting meanwhile
		var err error
		if agent, err = startAgent(); err != nil {
			t.Fatal(err)
		}
		var after uint64
		eventually(t, "the container tracked again by the new agent", 10*time.Second, func() bool { after = seen(); return after > before })
		if after < before {
			t.Fatalf("counters reset: %d before the restart, %d after", before, after)
		}
		cs, _ := containerStatus(t, id)
		if cs.Name != "loop" || cs.Pod != "longrun" {
			t.Errorf("metadata after restart: %+v", cs)
		}
		n := len(eventsOf(t, id))
		eventually(t, "new enriched events after the restart", 10*time.Second, func() bool { return len(eventsOf(t, id)) > n })
		before = seen()
		oks, _ := mkdirs()
		eventually(t, "the notify container's mkdir answered by the new agent", 10*time.Second, func() bool { n, _ := mkdirs(); return n > oks+3 })
		if _, logs := mkdirs(); strings.Contains(logs, "fail") || strings.Contains(logs, "not implemented") {
			t.Errorf("the notify container's mkdir failed across the agent restart:\n%s", logs)
		}
	})

	t.Run("runtime restarted", func(t *testing.T) {
		restartRuntime(t)
		var after uint64
		eventually(t, "the container still tracked, counting on", 10*time.Second, func() bool { after = seen(); return after > before })
		// A new container after the restart is handled.
		p2 := runPod(t, "after", "default", monitored)
		pid := p2.run(t, "probe", probe, nil, nil)
		waitExited(t, pid)
		var evs []event.Event
		eventually(t, "events of a container created after the restart", 10*time.Second, func() bool {
			evs = eventsOf(t, pid)
			return len(evs) > 0 && evs[len(evs)-1].Name() == "exit_group"
		})
		checkProbeTrace(t, evs, p2, "probe", pid)
	})
	crictl(nil, "stop", "-t", "0", id)
	crictl(nil, "stop", "-t", "0", nid)
}

// TestPreRegisteredPlugin installs vigil in the runtime's NRI plugin
// directory: the runtime starts it with the connection in the environment,
// it tracks monitored containers, and exits when the runtime stops (the next
// start of the runtime starts a new one).
func TestPreRegisteredPlugin(t *testing.T) {
	need(t)
	agent.stop() // one vigil at a time: two would both claim the seccomp policy
	defer func() {
		var err error
		if agent, err = startAgent(); err != nil {
			t.Fatal(err)
		}
	}()
	dir := t.TempDir()
	sock, events := filepath.Join(dir, "vigil.sock"), filepath.Join(dir, "events.jsonl")
	script := fmt.Sprintf("#!/bin/sh\nexec %s agent --control-socket %s --listener %s --events %s --pin-dir '' --metrics-addr '' --notify-keeper '' 2>>%s\n",
		vigil, sock, filepath.Join(dir, "seccomp.sock"), events, filepath.Join(dir, "agent.log"))
	entry := preRegisteredEntry()
	if err := os.WriteFile(entry, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	defer func() {
		os.Remove(entry)
		if err := restartRuntimeOnly(); err != nil {
			t.Error(err)
		}
	}()
	if err := restartRuntimeOnly(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pre-registered agent connected", 10*time.Second, func() bool {
		resp, err := agentctl.Call(sock, agentctl.Request{Op: "status"})
		return err == nil && resp.Status.Connected
	})
	p := runPod(t, "prereg", "default", monitored)
	id := p.run(t, "probe", probe, nil, nil)
	waitExited(t, id)
	eventually(t, "the pre-registered agent's events of the container", 10*time.Second, func() bool {
		data, _ := os.ReadFile(events)
		return strings.Contains(string(data), `"id":"`+id+`"`) && strings.Contains(string(data), `"syscall":"exit_group"`)
	})
}

// TestSeccompWithoutRuntimeSupport: where the runtime cannot take seccomp
// policies through NRI (CRI-O 1.34, whose NRI v0.9 drops them), a monitored
// pod is never left with vigil's notify rules and no listener. With the
// node's default (seccompUnsupported: fallback) it runs with the runtime's
// own profile (here none: the pod asks the runtime for none), its
// sensitive syscalls are not answered ENOSYS, and it is traced with its
// metadata; with "reject" its creation fails, naming the runtime and the
// setting.
func TestSeccompWithoutRuntimeSupport(t *testing.T) {
	need(t)
	st, err := status()
	if err != nil || st.Runtime == nil {
		t.Fatalf("status: %+v, %v: want the runtime", st, err)
	}
	if st.Runtime.Seccomp {
		t.Skipf("not on %s %s: it takes seccomp policies through NRI (%s)", st.Runtime.Name, st.Runtime.Version, st.Runtime.SeccompWhy)
	}
	p := runPod(t, "noseccomp", "default", monitored)
	id := p.run(t, "app", busybox, []string{"sh", "-c", "grep Seccomp: /proc/self/status; mkdir /tmp/made && echo mkdir-ok; unshare -U true && echo unshare-ok"}, nil)
	logs := waitExited(t, id)
	if !strings.Contains(logs, "Seccomp:\t0") || !strings.Contains(logs, "mkdir-ok") || !strings.Contains(logs, "unshare-ok") ||
		strings.Contains(logs, "not implemented") {
		t.Errorf("logs %q: want the runtime's profile (none asked: unconfined), mkdir and unshare working, no ENOSYS", logs)
	}
	if s := runtimeSpec(t, id).Linux.Seccomp; s != nil {
		t.Errorf("the container got a seccomp policy: %+v", s)
	}
	var evs []event.Event
	eventually(t, "the container's events", 10*time.Second, func() bool {
		evs = eventsOf(t, id)
		return len(evs) > 0 && evs[len(evs)-1].Name() == "exit_group"
	})
	if !slices.ContainsFunc(evs, func(e event.Event) bool { return e.Name() == "unshare" && e.Ret == 0 }) {
		t.Errorf("no successful unshare among the %d events", len(evs))
	}
	if c := evs[0].Container; c == nil || c.Name != "app" || c.Pod != p.name || c.Namespace != p.namespace || c.Image != busybox {
		t.Errorf("metadata %+v", c)
	}
	if cs, ok := containerStatus(t, id); !ok || cs.Seccomp != "(runtime's)" || !cs.Monitor || cs.Name != "app" {
		t.Errorf("status %+v: want monitored, named, with the runtime's seccomp profile", cs)
	}
	if d := decisionsOf(t, id); len(d) != 0 {
		t.Errorf("notify decisions for a container without vigil's policy: %+v", d)
	}
	if !strings.Contains(agent.logs(), "cannot take seccomp policies") {
		t.Errorf("the agent log does not say the runtime cannot take seccomp policies:\n%s", agent.logs())
	}

	// A pod asking the runtime for its default profile gets exactly that,
	// monitored or not: no notify rule, no listener. (CRI-O's default
	// profile answers what it denies with ENOSYS: that is the runtime's.)
	runDefault := func(p *pod) (string, *specs.LinuxSeccomp) {
		ctrSeq++
		cfg := map[string]any{"metadata": map[string]any{"name": "rtdefault"}, "image": map[string]any{"image": busybox},
			"command": []string{"sh", "-c", "unshare -U true 2>&1; echo rc=$?"}, "log_path": fmt.Sprintf("rtdefault-%d.log", ctrSeq),
			"linux": map[string]any{"security_context": map[string]any{"seccomp": map[string]any{"profile_type": 0}}}}
		id, err := crictl(nil, "create", p.id, writeJSON(t, fmt.Sprintf("ctr-rtdefault-%d.json", ctrSeq), cfg), p.config)
		if err != nil {
			t.Fatal(err)
		}
		crictl(t, "start", id)
		return waitExited(t, id), runtimeSpec(t, id).Linux.Seccomp
	}
	monLogs, monSpec := runDefault(p)
	plainLogs, _ := runDefault(runPod(t, "rtdefault", "default", nil))
	if monLogs != plainLogs {
		t.Errorf("RuntimeDefault: monitored %q, unmonitored %q: want the same", monLogs, plainLogs)
	}
	if monSpec == nil || monSpec.ListenerPath != "" || slices.ContainsFunc(monSpec.Syscalls, func(r specs.LinuxSyscall) bool { return r.Action == specs.ActNotify }) {
		t.Errorf("RuntimeDefault: monitored container's policy %+v: want the runtime's, without notify rules", monSpec)
	}
	t.Logf("RuntimeDefault on %s: %q", st.Runtime.Name, monLogs)

	// The node says reject: creation fails, saying why.
	cfgPath := filepath.Join(workDir, "config.yaml")
	orig, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	reload := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if resp, err := agentctl.Call(controlSocket(), agentctl.Request{Op: agentctl.OpReload}); err != nil {
			t.Fatalf("reload: %v %+v", err, resp)
		}
	}
	reload(append(slices.Clone(orig), "seccompUnsupported: reject\n"...))
	t.Cleanup(func() { reload(orig) })
	_, err = p.create(t, "rejected", busybox, []string{"true"}, nil)
	if err == nil {
		t.Fatal("a monitored container was created although the node rejects it without vigil's seccomp policy")
	}
	for _, s := range []string{"seccompUnsupported", `"reject"`, st.Runtime.Name, `"notify"`} {
		if !strings.Contains(strings.ReplaceAll(err.Error(), `\"`, `"`), s) {
			t.Errorf("error lacks %s: %v", s, err)
		}
	}
}
