package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/pipeline"
)

// parts are what a pipeline is built from, in the agent and in a trace:
// one function builds both, so that they cannot drift.
type parts struct {
	enrich func([]event.Event)
	target func(uint64) (control.Target, bool)
	aud    *audit.Writer
	eng    *detector.Engine
	ctl    *control.Controller
	sinks  []pipeline.Sink
	errorf func(string, ...any)
}

// newPipeline builds the one event path from its parts.
func newPipeline(p parts) *pipeline.Pipeline {
	cfg := pipeline.Config{Target: p.target, Audit: p.aud, Sinks: p.sinks, Errorf: p.errorf}
	if p.enrich != nil {
		cfg.Enrich = p.enrich
	}
	if p.eng != nil {
		cfg.Detector = p.eng
	}
	if p.ctl != nil {
		cfg.Control = p.ctl
	}
	return pipeline.New(cfg)
}

// TraceConfig configures a TraceRun: one command in its own cgroup,
// without a runtime (`vigil trace`).
type TraceConfig struct {
	CgroupID  uint64
	CgroupDir string
	// CgroupRoot is the cgroup v2 mount (for the cgroup's relative path).
	CgroupRoot string
	Detect     pipeline.Detection
	NoDetect   bool
	// AuditDir, when set, is the run's audit log.
	AuditDir string
	// Mode is what verdicts do (learn, detect, enforce).
	Mode annotations.Mode
	// ResponseFile is a response policy file ("" the built-in default).
	ResponseFile string
	Sinks        []pipeline.Sink
	// StartSeq is the number of records the tracer counted for the cgroup
	// before the run (0 for a fresh cgroup).
	StartSeq uint64
	// Counters, when set, reads the tracer's counters of the cgroup (the
	// samples carry its over-budget drops).
	Counters func(cgroupID uint64) (bpf.Counters, error)
	// Guard, when set, serves deny-connect.
	Guard Guard
	// Enrich, when set, gives events their container metadata, as the
	// agent's registry does (benchmarks of the agent's path).
	Enrich func([]event.Event)
	Log    *logrus.Logger
}

// TraceRun is the pipeline of one traced command.
type TraceRun struct {
	cfg    TraceConfig
	target control.Target
	P      *pipeline.Pipeline
	aud    *audit.Writer
	eng    *detector.Engine
	ctl    *control.Controller
	cancel context.CancelFunc
	wg     sync.WaitGroup // the pipeline
	ctlWG  sync.WaitGroup // the controller
	closed bool
}

// NewTraceRun builds the run's pipeline (audit, detector, response ladder,
// sinks) and starts it. Close it (Finish does) when the command ended.
func NewTraceRun(cfg TraceConfig) (*TraceRun, error) {
	if cfg.Log == nil {
		cfg.Log = logrus.New()
	}
	if cfg.Mode == "" {
		cfg.Mode = annotations.ModeDetect
	}
	r := &TraceRun{cfg: cfg}
	rel, _ := control.CgroupRelOf(cfg.CgroupRoot, cfg.CgroupDir)
	r.target = control.Target{CgroupID: cfg.CgroupID, Mode: cfg.Mode, Policy: control.DefaultPolicyName,
		CgroupDir: cfg.CgroupDir, CgroupRel: rel}
	var err error
	if !cfg.NoDetect {
		if r.eng, err = cfg.Detect.NewDetector(); err != nil {
			return nil, err
		}
	}
	policies := map[string]*control.Policy{control.DefaultPolicyName: control.DefaultPolicy()}
	if cfg.ResponseFile != "" {
		data, err := os.ReadFile(cfg.ResponseFile)
		if err != nil {
			return nil, fmt.Errorf("--response: %w", err)
		}
		p, err := control.ParsePolicy(control.DefaultPolicyName, cfg.ResponseFile, data)
		if err != nil {
			return nil, fmt.Errorf("--response: %w", err)
		}
		policies[control.DefaultPolicyName] = p
	}
	if cfg.AuditDir != "" {
		if r.aud, err = audit.Open(audit.Options{Dir: cfg.AuditDir}); err != nil {
			return nil, fmt.Errorf("--audit: %w", err)
		}
		host, _ := os.Hostname()
		r.aud.Append(audit.KindAgent, 0, "", audit.Agent{Event: "start", Host: host, PID: os.Getpid(), Detail: "vigil trace"})
	}
	act := &traceActuator{cg: &control.Cgroups{V2Root: cfg.CgroupRoot}, guard: cfg.Guard}
	if r.ctl, err = control.New(control.Config{Policies: policies, Actuator: act, Record: func(rec control.Record) { r.P.Record(rec) },
		NotifySet: nil, AllowedResolvers: func() []netip.Addr { return parseAddrs(cfg.Detect.AllowedResolvers()) },
		Log: logrus.NewEntry(cfg.Log).WithField("part", "control")}); err != nil {
		r.closeAudit()
		return nil, err
	}
	r.P = newPipeline(parts{enrich: cfg.Enrich, target: r.targetOf, aud: r.aud, eng: r.eng, ctl: r.ctl, sinks: cfg.Sinks, errorf: cfg.Log.Errorf})
	// A fresh cgroup: its records are numbered from 1. Told before the
	// worker runs, so it is in force before any event.
	r.P.Begin(cfg.CgroupID, cfg.StartSeq)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.P.Run(context.Background()) }()
	r.ctlWG.Add(1)
	go func() { defer r.ctlWG.Done(); r.ctl.Run(ctx) }()
	return r, nil
}

func (r *TraceRun) targetOf(id uint64) (control.Target, bool) {
	return r.target, id == r.cfg.CgroupID
}

// Sample feeds the cgroup's CPU use and thread count every period until
// the returned stop is called (a busy loop makes few syscalls: it shows
// here, not in events).
func (r *TraceRun) Sample(every time.Duration) (stop func()) {
	if r.eng == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				st, threads, err := bpf.CgroupSample(r.cfg.CgroupDir)
				if err != nil {
					continue
				}
				smp := detector.Sample{CgroupID: r.cfg.CgroupID, Time: now, CPUUsageNs: st.UsageNs, Threads: threads,
					CPUWaitNs: bpf.CgroupPressure(r.cfg.CgroupDir), CPUThrottledNs: st.ThrottledNs}
				if r.cfg.Counters != nil {
					if n, err := r.cfg.Counters(r.cfg.CgroupID); err == nil {
						smp.Throttled = n.Throttled
					}
				}
				r.P.Sample(smp)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// Finish ends the run: what the detector still holds is scored, records
// the tracer dropped at the end are recorded as a gap, actions in flight
// finish, and the audit log is closed with the run's summary.
func (r *TraceRun) Finish(c bpf.Counters, detail string) error {
	r.P.Flush()
	finished := make(chan struct{})
	r.P.Finish(r.cfg.CgroupID, c.Seen, func() { close(finished) })
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
	}
	r.P.Note(audit.KindAgent, 0, "", audit.Agent{Event: "stop", PID: os.Getpid(), Detail: detail})
	return r.Close()
}

// Close stops the run's goroutines and closes the audit log: the
// controller runs what it was asked to before it ends, and its records
// reach the pipeline before the pipeline ends.
func (r *TraceRun) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.P.Flush() // the last verdicts and their actions are queued
	r.cancel()
	r.ctlWG.Wait()
	r.P.Flush()
	r.P.Close()
	r.wg.Wait()
	st := r.P.Stats()
	err := r.closeAudit()
	if st.AuditErrors > 0 && err == nil {
		err = fmt.Errorf("audit: %d records could not be written", st.AuditErrors)
	}
	return err
}

func (r *TraceRun) closeAudit() error {
	if r.aud == nil {
		return nil
	}
	err := r.aud.Close()
	r.aud = nil
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// CgroupActuator is the response ladder's actuator for cgroups that no
// runtime manages (vigil trace, benchmarks): the cgroup files, and guard
// (may be nil) for deny-connect; deny-syscall is refused.
func CgroupActuator(cgroupRoot string, guard Guard) control.Actuator {
	return &traceActuator{cg: &control.Cgroups{V2Root: cgroupRoot}, guard: guard}
}

// traceActuator acts on a traced command's cgroup: the cgroup files, and
// the connect guard when there is one. There is no notify server in a
// trace, so deny-syscall is refused (and says why).
type traceActuator struct {
	cg    *control.Cgroups
	guard Guard
}

var errNoNotify = errors.New("deny-syscall needs the agent's seccomp notify server (containers with vigil.dev/seccomp: notify); vigil trace has none")

func (a *traceActuator) ReadCPU(t control.Target) (control.CPU, error) { return a.cg.ReadCPU(t) }
func (a *traceActuator) SetCPU(t control.Target, c control.CPU) error  { return a.cg.SetCPU(t, c) }
func (a *traceActuator) Freeze(t control.Target, frozen bool) error    { return a.cg.Freeze(t, frozen) }
func (a *traceActuator) KillProcess(t control.Target, pid uint32) error {
	return a.cg.KillProcess(t, pid)
}
func (a *traceActuator) KillContainer(t control.Target) error { return a.cg.KillContainer(t) }
func (a *traceActuator) DenySyscalls(control.Target, []int32, syscall.Errno) error {
	return errNoNotify
}
func (a *traceActuator) AllowSyscalls(control.Target) error { return nil }
func (a *traceActuator) DenyConnect(t control.Target, r control.ConnectRule) error {
	return (&actuator{guard: a.guard}).DenyConnect(t, r)
}
func (a *traceActuator) AllowConnect(t control.Target) error {
	return (&actuator{guard: a.guard}).AllowConnect(t)
}

// parseAddrs parses the IP addresses among ss.
func parseAddrs(ss []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}
