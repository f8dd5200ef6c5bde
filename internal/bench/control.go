package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"vigil.dev/vigil/agent"
	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/pipeline"
)

// ControlOptions configures RunControl.
type ControlOptions struct {
	// Triggers per action (at least 100 for the report's p99).
	Triggers int
	// Actions to measure (default all: kill-process, freeze, throttle,
	// deny-connect).
	Actions []string
	Log     io.Writer
}

// ActionLatency is the time from triggering events (their kernel
// timestamps) to one action being in force.
type ActionLatency struct {
	Action   string  `json:"action"`
	Triggers int     `json:"triggers"`
	Failed   int     `json:"failed"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	// InForce says what "in force" means for the action.
	InForce string `json:"in_force"`
}

// ControlReport is the result of RunControl.
type ControlReport struct {
	Machine  string          `json:"machine"`
	Actions  []ActionLatency `json:"actions"`
	Events   uint64          `json:"events"`
	Decision struct {
		P50Ns int64 `json:"p50_ns"`
		P99Ns int64 `json:"p99_ns"`
	} `json:"decision"`
	Delivery struct {
		P50Us float64 `json:"p50_us"`
		P99Us float64 `json:"p99_us"`
	} `json:"delivery"`
}

// The benchmark's rules and policy: each trigger is an open of a file of
// its own, except deny-connect's, which is the default rule on DNS to a
// resolver that is not allowed.
const (
	benchRules = `rules:
  - rule: bench-kill
    class: privesc
    severity: high
    syscalls: [open, openat]
    when: {path: "/tmp/vigil-bench-kill-*"}
  - rule: bench-freeze
    class: fs-escape
    severity: high
    syscalls: [open, openat]
    when: {path: "/tmp/vigil-bench-freeze-*"}
  - rule: bench-throttle
    class: cpu-abuse
    severity: high
    syscalls: [open, openat]
    when: {path: "/tmp/vigil-bench-throttle-*"}
`
	benchPolicy = `restoreAfter: 1h
throttle: {shares: 2, quota: 10%}
responses:
  - {name: kill, when: {rule: bench-kill}, actions: [kill-process]}
  - {name: freeze, when: {rule: bench-freeze}, actions: [freeze]}
  - {name: throttle, when: {rule: bench-throttle}, actions: [throttle]}
  - {name: connect, when: {rule: dns-unauthorized-resolver}, actions: [deny-connect]}
`
)

var inForce = map[string]string{
	"kill-process": "the process is gone (its pidfd reports exit)",
	"freeze":       "cgroup.events says frozen 1",
	"throttle":     "cpu.shares and cpu.cfs_quota_us written and read back",
	"deny-connect": "the guard's maps written and its programs attached to the cgroup (the next connect/sendmsg gets EPERM)",
}

// RunControl measures, for each action, the time from the triggering
// event's kernel timestamp to the action being in force, through the same
// pipeline and response ladder the agent runs (tracer → pipeline → detector
// → control → actuator).
func RunControl(o ControlOptions) (*ControlReport, error) {
	if o.Triggers <= 0 {
		o.Triggers = 100
	}
	if len(o.Actions) == 0 {
		o.Actions = []string{"kill-process", "freeze", "throttle", "deny-connect"}
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, errors.New("bench control needs busybox (apt-get install busybox-static)")
	}
	mon, err := bpf.Load(bpf.Config{})
	if err != nil {
		return nil, err
	}
	defer mon.Close()
	guard, err := bpf.LoadGuard("")
	if err != nil {
		return nil, err
	}
	defer guard.Close()
	root, err := bpf.CgroupRoot()
	if err != nil {
		return nil, err
	}
	eng, err := detector.New(detector.Config{RuleTexts: [][]byte{[]byte(benchRules)},
		Lists: map[string][]string{"allowed_resolvers": {"127.0.0.2"}}})
	if err != nil {
		return nil, err
	}
	pol, err := control.ParsePolicy("bench", "bench-policy", []byte(benchPolicy))
	if err != nil {
		return nil, err
	}
	var targets sync.Map // cgroup id → control.Target
	recs := make(chan control.Record, 1024)
	var pl *pipeline.Pipeline
	ctl, err := control.New(control.Config{Policies: map[string]*control.Policy{"default": control.DefaultPolicy(), "bench": pol},
		Actuator: agent.CgroupActuator(root, guard),
		Record: func(r control.Record) {
			select {
			case recs <- r:
			default:
			}
		},
		AllowedResolvers: func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("127.0.0.2")} }})
	if err != nil {
		return nil, err
	}
	pl = pipeline.New(pipeline.Config{Detector: eng, Control: ctl, TimeEvery: 1,
		Target: func(id uint64) (control.Target, bool) {
			t, ok := targets.Load(id)
			if !ok {
				return control.Target{}, false
			}
			return t.(control.Target), true
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); pl.Run(ctx) }()
	go func() { defer wg.Done(); ctl.Run(ctx) }()
	readErr := make(chan error, 1)
	go func() { defer wg.Done(); readErr <- mon.RunBatches(ctx, pl.Event, pl.EndBatch) }()
	defer func() { cancel(); wg.Wait() }()

	host, _ := os.Hostname()
	rep := &ControlReport{Machine: fmt.Sprintf("%s, %d cpus", host, runtime.NumCPU())}
	for _, action := range o.Actions {
		if _, ok := inForce[action]; !ok {
			return nil, fmt.Errorf("action %q: allowed values are kill-process, freeze, throttle, deny-connect", action)
		}
		var lat []time.Duration
		failed := 0
		for i := 0; i < o.Triggers; i++ {
			d, err := trigger(mon, guard, pl, ctl, &targets, recs, root, busybox, action, i)
			if err != nil {
				failed++
				if failed <= 3 {
					fmt.Fprintf(o.Log, "bench control: %s trigger %d: %v\n", action, i, err)
				}
				continue
			}
			lat = append(lat, d)
			if (i+1)%25 == 0 {
				fmt.Fprintf(o.Log, "bench control: %s %d/%d\n", action, i+1, o.Triggers)
			}
		}
		slices.Sort(lat)
		al := ActionLatency{Action: action, Triggers: o.Triggers, Failed: failed, InForce: inForce[action]}
		if len(lat) > 0 {
			al.P50Ms, al.P99Ms, al.MaxMs = ms(durPct(lat, 50)), ms(durPct(lat, 99)), ms(lat[len(lat)-1])
		}
		rep.Actions = append(rep.Actions, al)
	}
	st := pl.Stats()
	rep.Events = st.Events
	rep.Decision.P50Ns, rep.Decision.P99Ns = int64(st.DecisionP50), int64(st.DecisionP99)
	rep.Delivery.P50Us, rep.Delivery.P99Us = float64(st.DeliveryP50)/1e3, float64(st.DeliveryP99)/1e3
	select {
	case err := <-readErr:
		if err != nil {
			return rep, fmt.Errorf("tracer: %w", err)
		}
	default:
	}
	return rep, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func durPct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

// trigger runs one triggering process in a fresh cgroup and returns the
// latency of the action it causes.
func trigger(mon *bpf.Monitor, guard *bpf.Guard, pl *pipeline.Pipeline, ctl *control.Controller, targets *sync.Map,
	recs chan control.Record, root, busybox, action string, i int) (time.Duration, error) {
	name := fmt.Sprintf("vigil-bench-ctl-%d-%s-%d", os.Getpid(), action, i)
	cg, err := bpf.NewCgroup(name)
	if err != nil {
		return 0, err
	}
	rel, _ := control.CgroupRelOf(root, cg.Path)
	v1 := filepath.Join("/sys/fs/cgroup/cpu", rel)
	defer func() {
		if action == "freeze" {
			os.WriteFile(filepath.Join(cg.Path, "cgroup.freeze"), []byte("0"), 0)
		}
		cg.Kill()
		guard.Release(cg.ID)
		c, _ := mon.Untrack(cg.ID)
		pl.Finish(cg.ID, c.Seen, nil)
		targets.Delete(cg.ID)
		cg.Remove()
		os.Remove(v1)
	}()
	t := control.Target{CgroupID: cg.ID, Mode: annotations.ModeEnforce, Policy: "bench", CgroupDir: cg.Path, CgroupRel: rel}
	targets.Store(cg.ID, t)
	if err := mon.Track(cg.ID); err != nil {
		return 0, err
	}
	pl.Begin(cg.ID, 0)
	file := fmt.Sprintf("/tmp/vigil-bench-%s-%d-%d", action, os.Getpid(), i)
	var script string
	switch action {
	case "deny-connect":
		script = busybox + " nslookup vigil.test 127.0.0.3; sleep 5"
	case "throttle":
		if err := os.Mkdir(v1, 0o755); err != nil {
			return 0, fmt.Errorf("cpu cgroup: %w", err)
		}
		fallthrough
	default:
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			return 0, err
		}
		defer os.Remove(file)
		// The short sleep lets the benchmark put the process in its cpu
		// cgroup (v1) before the trigger.
		script = "sleep 0.05; exec " + busybox + " tail -f " + file
	}
	cmd := exec.Command(busybox, "sh", "-c", script)
	cmd.SysProcAttr = cg.SysProcAttr()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	if action == "throttle" {
		if err := os.WriteFile(filepath.Join(v1, "cgroup.procs"), fmt.Append(nil, cmd.Process.Pid), 0); err != nil {
			return 0, fmt.Errorf("join cpu cgroup: %w", err)
		}
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r := <-recs:
			if r.CgroupID != cg.ID || r.Undo || string(r.Action) != action {
				continue
			}
			if r.Error != "" {
				return 0, errors.New(r.Error)
			}
			return r.Latency, nil
		case <-deadline:
			return 0, errors.New("no action within 5 s")
		}
	}
}
