// Package agent is vigil's composition root: it builds the node agent from
// its parts (the container registry and NRI plugin, the tracer, the one
// event pipeline, the detector, the response ladder and its actuators, the
// seccomp notify server, the audit log, the outputs, the control socket,
// /healthz and /metrics) and runs them until the context ends. Parts get
// their callbacks at construction; no part reaches into another.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/pipeline"
	"vigil.dev/vigil/plugin"
	"vigil.dev/vigil/seccomp"
)

// Defaults of the agent's paths.
const (
	DefaultControlSocket = agentctl.DefaultSocket
	DefaultListenerPath  = "/run/vigil/seccomp.sock"
	DefaultStateFile     = "/var/lib/vigil/control-state.json"
)

// Monitor is the tracer as the agent uses it (*bpf.Monitor).
type Monitor interface {
	plugin.Tracer
	// Consume hands the ring's records to c until ctx ends.
	Consume(ctx context.Context, c bpf.Consumer) error
}

// Guard is the kernel's connect guard as the agent uses it (*bpf.Guard);
// nil when it could not be loaded (deny-connect then fails and says so).
type Guard interface {
	Attach(cgroupDir string, cgroupID uint64) error
	Attached() ([]uint64, error)
	DenyDNSExcept(cgroupID uint64, allowed []netip.Addr) error
	Deny(cgroupID uint64, dst netip.AddrPort) error
	Release(cgroupID uint64) error
}

// Config configures Run.
type Config struct {
	Node annotations.NodeConfig
	// NodeConfigPath is the node configuration's file, reloaded on change
	// ("" when none).
	NodeConfigPath string
	NRISocket      string
	ControlSocket  string
	ListenerPath   string
	CgroupRoot     string
	Events         io.Writer // JSON lines of events, verdicts, actions, gaps; nil: none
	// EventFilter chooses the events written to Events (nil: all).
	EventFilter *pipeline.EventFilter
	// Alerts receives verdicts and actions as alert lines (pipeline.Alerts);
	// Webhook, when set, is a URL each alert is POSTed to.
	Alerts    io.Writer
	Webhook   string
	Decisions io.Writer // JSON lines of seccomp notify decisions; nil logs them
	// KeeperPath, when set, is the notify fd keeper's socket (see
	// seccomp.RunKeeper): the fds outlive the agent, and a new agent takes
	// them back. StartKeeper starts a keeper there when none answers.
	KeeperPath  string
	StartKeeper func(path string) error
	// MetricsAddr, when set, serves /healthz, /readyz and /metrics there;
	// with Pprof also Go's profiles at /debug/pprof/.
	MetricsAddr string
	Pprof       bool
	// HookOnly runs without NRI: containers register through the OCI hook
	// on the control socket only (a runtime without NRI).
	HookOnly bool
	// Build names the binary (vigil_build_info, the audit log's start
	// record).
	Build BuildInfo
	// AuditDir, when set, is the audit log: every event, gap, verdict,
	// action, notify decision, sample, container start/stop and reload.
	AuditDir string
	// AuditMaxBytes and AuditMaxAge bound the audit log (its oldest
	// sealed segments are deleted; 0: no limit); AuditOnFull is what it
	// does when the disk is full (default audit.FullCount).
	AuditMaxBytes int64
	AuditMaxAge   time.Duration
	AuditOnFull   audit.FullPolicy
	// AuditAnchor, when set, is a shell command run with the audit log's
	// signed head (JSON) on its standard input every AuditAnchorEvery when
	// it changed, so that a copy of the head lives off the node.
	AuditAnchor      string
	AuditAnchorEvery time.Duration
	// Reconnect is the wait between attempts to reach the runtime.
	Reconnect time.Duration
	// Detect configures the detector; NoDetect runs none.
	Detect   pipeline.Detection
	NoDetect bool
	// StateFile keeps what the response ladder has in force across agent
	// restarts ("" keeps nothing).
	StateFile string
	// Guard refuses connections in the kernel (deny-connect); may be nil.
	Guard Guard
	// SampleEvery is the CPU/thread sampling period (default 250 ms): the
	// full rate of Sampling's hot containers.
	SampleEvery time.Duration
	// Sampling bounds the reads of the containers' cgroup files (zero
	// fields: the defaults; see Sampling).
	Sampling Sampling
	// started, when set, gets the agent once it is built (tests).
	started func(*Agent)
	// WatchEvery is how often rule, policy, model and node config files are
	// checked for changes (default 250 ms; they also reload on SIGHUP and
	// on `vigil reload`).
	WatchEvery time.Duration
}

// Agent is a running node agent.
type Agent struct {
	cfg      Config
	baseNode annotations.NodeConfig // the node configuration given, before its profile directory was listed
	log      *logrus.Logger
	mon      Monitor
	reg      *plugin.Plugin
	server   *seccomp.Server
	pl       *pipeline.Pipeline
	eng      *detector.Engine
	ctl      *control.Controller
	events   *pipeline.JSONLines
	webhook  *pipeline.Webhook
	decided  *jsonLines
	aud      *audit.Writer
	started  time.Time

	actionLat sync.Map // control.Action → *actionStat
	reloadRun sync.Mutex
	reloads   atomic.Uint64
	reloadMu  sync.Mutex
	reloadErr string
	actions   atomic.Uint64

	metrics *metrics
	hb      *heartbeat
	smp     *sampler
	// throttled is each tracked cgroup's count of records over its
	// budget, as the heartbeat read it last (for the samples).
	throttled atomic.Pointer[map[uint64]uint64]
	// sweeps counts heartbeats; staleAudit holds the cgroups the audit
	// writer held at the last sweep that the tracer did not follow (the
	// heartbeat goroutine's own).
	sweeps     int
	staleAudit map[uint64]bool
	tracing    atomic.Bool // the tracer's reader runs
	serving    atomic.Bool // the control socket serves
}

// Run runs the agent until ctx is done: the notify server, the tracer's
// reader, the pipeline, the response ladder, the control socket and the
// NRI connection, which it re-establishes whenever the runtime goes away
// (unless the runtime started vigil as a pre-registered plugin: then it
// exits with the connection).
func Run(ctx context.Context, cfg Config, mon Monitor, log *logrus.Logger) error {
	if cfg.ControlSocket == "" {
		cfg.ControlSocket = DefaultControlSocket
	}
	if cfg.ListenerPath == "" {
		cfg.ListenerPath = DefaultListenerPath
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = 250 * time.Millisecond
	}
	if cfg.WatchEvery <= 0 {
		cfg.WatchEvery = 250 * time.Millisecond
	}
	base := cfg.Node
	node, err := plugin.WithProfiles(cfg.Node)
	if err != nil {
		return err
	}
	cfg.Node = node
	a := &Agent{cfg: cfg, baseNode: base, log: log, mon: mon, started: time.Now(), decided: newJSONLines(cfg.Decisions)}
	a.metrics = newMetrics(a.status, cfg.Build)
	a.hb = newHeartbeat(a.started, staleAfter)
	a.smp = newSampler(cfg.Sampling.withDefaults(cfg.SampleEvery))

	// The audit log first: everything after this is recorded.
	if cfg.AuditDir != "" {
		opts := audit.Options{Dir: cfg.AuditDir, MaxBytes: cfg.AuditMaxBytes, MaxAge: cfg.AuditMaxAge, OnFull: cfg.AuditOnFull, Logf: log.Warnf}
		if cfg.AuditAnchor != "" {
			if opts.Anchor, err = audit.AnchorCommand(30*time.Second, "/bin/sh", "-c", cfg.AuditAnchor); err != nil {
				return fmt.Errorf("audit anchor: %w", err)
			}
			opts.AnchorInterval = cfg.AuditAnchorEvery
		}
		if a.aud, err = audit.Open(opts); err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		host, _ := os.Hostname()
		if err := a.aud.Append(audit.KindAgent, 0, "", audit.Agent{Event: "start", Version: cfg.Build.Version, Host: host, PID: os.Getpid(), Detail: "vigil agent"}); err != nil {
			log.WithError(err).Error("audit log")
		}
		defer func() {
			a.aud.Append(audit.KindAgent, 0, "", audit.Agent{Event: "stop", PID: os.Getpid()})
			if err := a.aud.Close(); err != nil {
				log.WithError(err).Error("close audit log")
			}
		}()
	}
	if !cfg.NoDetect {
		if a.eng, err = cfg.Detect.NewDetector(); err != nil {
			return err
		}
	}
	policies, err := control.LoadPolicies(cfg.Node.PolicyDir)
	if err != nil {
		return fmt.Errorf("response policies: %w", err)
	}

	// The notify server and the registry. The pipeline's callbacks reach
	// the pipeline through a, which is complete before any of them runs:
	// nothing is served before Run's goroutines start below.
	fallback, err := seccomp.Build(seccomp.Notify, seccomp.Options{ListenerPath: cfg.ListenerPath})
	if err != nil {
		return err
	}
	if a.server, err = seccomp.NewServer(cfg.ListenerPath, fallback.Policy, a.onDecision); err != nil {
		return err
	}
	defer a.server.Close()
	a.reg = plugin.New(plugin.Config{Node: cfg.Node, CgroupRoot: cfg.CgroupRoot, ListenerPath: cfg.ListenerPath,
		Callbacks: plugin.Callbacks{Started: a.started_, Running: a.running, Stopped: a.stopped, CPUHeld: a.cpuHeld}}, mon, a.server, log)

	act := &actuator{cg: &control.Cgroups{V2Root: cfg.CgroupRoot}, reg: a.reg, srv: a.server, guard: cfg.Guard}
	a.ctl, err = control.New(control.Config{Policies: policies, Actuator: act, Record: a.record,
		NotifySet: seccomp.NotifySet, AllowedResolvers: a.allowedResolvers, StateFile: cfg.StateFile,
		Log: logrus.NewEntry(log).WithField("part", "control")})
	if err != nil {
		return fmt.Errorf("response ladder: %w", err)
	}
	var sinks []pipeline.Sink
	if cfg.Events != nil {
		a.events = pipeline.NewJSONLines(cfg.Events, true).Filter(cfg.EventFilter)
		sinks = append(sinks, a.events)
	}
	host := os.Getenv("NODE_NAME") // the chart sets it from the pod's node
	if host == "" {
		host, _ = os.Hostname()
	}
	if cfg.Alerts != nil {
		sinks = append(sinks, pipeline.NewAlerts(cfg.Alerts, host))
	}
	if cfg.Webhook != "" {
		if a.webhook, err = pipeline.NewWebhook(pipeline.WebhookConfig{URL: cfg.Webhook, Hostname: host}); err != nil {
			return fmt.Errorf("webhook: %w", err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a.webhook.Close(ctx)
		}()
		sinks = append(sinks, a.webhook)
	}
	sinks = append(sinks, logSink{log}, a.metrics.sink(), samplerSink{a.smp})
	a.pl = a.buildPipeline(sinks)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	plDone := make(chan struct{})
	go func() { a.pl.Run(context.Background()); close(plDone) }()
	defer func() { a.pl.Close(); <-plDone }()
	// Fds of running notify containers come back from the keeper below;
	// what the ladder had denied them is in force again first.
	a.ctl.Restore(a.resolveForRestore)
	a.releaseStaleGuards()
	wg.Add(1)
	go func() { defer wg.Done(); a.ctl.Run(ctx) }()
	if cfg.KeeperPath != "" {
		if err := a.useKeeper(); err != nil {
			// Not fatal: without the keeper a restart of the agent makes the
			// notified syscalls of running containers fail with ENOSYS.
			log.WithError(err).Warn("no notify fd keeper: notify containers will not survive an agent restart")
		}
	}
	ctl, err := agentctl.Listen(cfg.ControlSocket)
	if err != nil {
		return err
	}
	defer ctl.Close()
	if cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics address: %w", err)
		}
		log.WithField("addr", ln.Addr().String()).Info("serving /healthz, /readyz and /metrics")
		go a.serveHTTP(ctx, ln)
	}
	errc := make(chan error, 3)
	// A failing server or tracer stops the agent (and its error is returned):
	// an agent that no longer traces or answers must not look healthy.
	fatal := func(err error) error {
		if err != nil {
			log.WithError(err).Error("stopping the agent")
			cancel()
		}
		return err
	}
	wg.Add(3)
	go func() { defer wg.Done(); errc <- fatal(nonNil(a.server.Serve(), "seccomp server")) }()
	go func() {
		defer wg.Done()
		a.tracing.Store(true)
		// Records are decoded into the batch's next event (pl.Slot) and
		// their strings copied into the batch's own memory (pl.String):
		// the reader copies no event and allocates nothing per record.
		err := mon.Consume(ctx, bpf.Consumer{Event: a.pl.Event, String: a.pl.String, Slot: a.pl.Slot,
			EndBatch: func() { a.pl.EndBatch(); a.hb.handed(time.Now()) }})
		a.tracing.Store(false)
		a.hb.stopped()
		errc <- fatal(nonNil(err, "tracer"))
	}()
	a.serving.Store(true)
	go func() { defer wg.Done(); agentctl.Serve(ctx, ctl, a.handle); a.serving.Store(false) }()
	go a.heartbeatLoop(ctx)
	if cfg.started != nil {
		cfg.started(a)
	}
	go a.sampleLoop(ctx)
	go a.watch(ctx)
	go a.refreshLoop(ctx)

	var nriErr error
	if cfg.HookOnly {
		log.WithField("control_socket", cfg.ControlSocket).Info("hook-only: no NRI; containers register through the OCI hook")
		<-ctx.Done()
	} else {
		nriErr = a.reg.Run(ctx, cfg.NRISocket, cfg.Reconnect)
	}
	cancel()
	a.server.Close()
	ctl.Close()
	wg.Wait()
	close(errc)
	a.decided.flush()
	for err := range errc {
		if err != nil {
			return err
		}
	}
	return nriErr
}

// buildPipeline is the agent's event path: the registry's metadata and
// targets, the audit log, the detector, the response ladder, the sinks.
func (a *Agent) buildPipeline(sinks []pipeline.Sink) *pipeline.Pipeline {
	return newPipeline(parts{enrich: a.reg.EnrichRun, target: a.target, aud: a.aud, eng: a.eng, ctl: a.ctl, sinks: sinks, errorf: a.log.Errorf})
}

// useKeeper starts the keeper if needed and takes back its fds.
func (a *Agent) useKeeper() error {
	if !seccomp.KeeperRunning(a.cfg.KeeperPath) {
		if a.cfg.StartKeeper == nil {
			return fmt.Errorf("no keeper at %s", a.cfg.KeeperPath)
		}
		if err := a.cfg.StartKeeper(a.cfg.KeeperPath); err != nil {
			return err
		}
	}
	n, err := a.server.UseKeeper(a.cfg.KeeperPath)
	if err != nil {
		return err
	}
	a.log.WithFields(logrus.Fields{"keeper": a.cfg.KeeperPath, "fds": n}).Info("notify fd keeper in use; took back the fds of running containers")
	return nil
}

func nonNil(err error, what string) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// target describes a monitored cgroup's container for the pipeline and the
// response ladder.
func (a *Agent) target(cgroupID uint64) (control.Target, bool) {
	info, ok := a.reg.Lookup(cgroupID)
	if !ok || !info.Policy.Monitor {
		return control.Target{}, false
	}
	return a.targetOf(info), true
}

func (a *Agent) targetOf(info plugin.Info) control.Target {
	rel, err := control.CgroupRelOf(a.cfg.CgroupRoot, info.CgroupDir)
	if err != nil || info.CgroupDir == "" {
		rel = ""
	}
	id := ""
	if info.Meta != nil {
		id = info.Meta.ID
	}
	return control.Target{CgroupID: info.CgroupID, ContainerID: id, Container: info.Meta, Mode: info.Policy.Mode,
		Policy: info.Policy.PolicyName, CgroupDir: info.CgroupDir, CgroupRel: rel, ViaNRI: !info.Hook}
}

// resolveForRestore finds a container the response ladder had acted on
// before a restart. The registry may not know it yet (the runtime has not
// synchronized); the cgroup's existence is then enough to keep its state.
func (a *Agent) resolveForRestore(cgroupID uint64) (control.Target, bool) {
	if t, ok := a.target(cgroupID); ok {
		return t, true
	}
	dir, err := bpf.CgroupPath(cgroupID)
	if err != nil {
		return control.Target{}, false
	}
	rel, err := control.CgroupRelOf(a.cfg.CgroupRoot, dir)
	if err != nil {
		return control.Target{}, false
	}
	return control.Target{CgroupID: cgroupID, Mode: annotations.ModeEnforce, CgroupDir: dir, CgroupRel: rel}, true
}

func (a *Agent) allowedResolvers() []netip.Addr {
	return parseAddrs(a.cfg.Detect.AllowedResolvers())
}

// started_ is the registry's Started callback: the container is tracked.
func (a *Agent) started_(c plugin.Info) {
	a.sampleFrom(c)
	a.pl.Begin(c.CgroupID, 0)
	a.pl.Note(audit.KindLifecycle, c.CgroupID, c.Meta.ID, lifecycle("start", c, nil))
}

// running is the registry's Running callback: a container found running
// after a restart; its workload has exec'd.
func (a *Agent) running(c plugin.Info) {
	if a.eng != nil {
		a.eng.Started(c.CgroupID)
	}
	a.sampleFrom(c)
	if n, err := a.mon.Counters(c.CgroupID); err == nil {
		a.pl.Begin(c.CgroupID, n.Seen)
	}
}

// stopped is the registry's Stopped callback.
func (a *Agent) stopped(c plugin.Info, final bpf.Counters) {
	a.pl.Note(audit.KindLifecycle, c.CgroupID, c.Meta.ID, lifecycle("stop", c, &final))
	a.pl.Finish(c.CgroupID, final.Seen, nil)
	a.releaseGuard(c.CgroupID)
	a.smp.untrack(c.CgroupID)
}

// sampleFrom has a container tracked now sampled from the next tick on
// (its resource rules from its first instruction, as its events).
func (a *Agent) sampleFrom(c plugin.Info) {
	if c.Policy.Mode != annotations.ModeLearn && c.CgroupDir != "" {
		a.smp.track(c.CgroupID, c.CgroupDir)
	}
}

// releaseGuard drops the connect guard's state of a cgroup that is gone
// (its maps are shared by every container of the node).
func (a *Agent) releaseGuard(cgroupID uint64) {
	if a.cfg.Guard == nil {
		return
	}
	if err := a.cfg.Guard.Release(cgroupID); err != nil {
		a.log.WithError(err).WithField("cgroup", cgroupID).Warn("release the connect guard of a stopped container")
	}
}

// releaseStaleGuards drops what the connect guard holds for cgroups that
// no longer exist (they ended while no agent ran).
func (a *Agent) releaseStaleGuards() {
	if a.cfg.Guard == nil {
		return
	}
	ids, err := a.cfg.Guard.Attached()
	if err != nil {
		return
	}
	for _, id := range ids {
		if _, err := bpf.CgroupPath(id); err != nil {
			a.releaseGuard(id)
		}
	}
}

// cpuHeld tells the registry whether the response ladder holds a
// container's CPU (a throttle): then a priority reload leaves it alone.
func (a *Agent) cpuHeld(c plugin.Info) bool {
	for _, s := range a.ctl.InForce() {
		if s.CgroupID == c.CgroupID && s.Throttle != nil {
			return true
		}
	}
	return false
}

func lifecycle(what string, c plugin.Info, final *bpf.Counters) audit.Lifecycle {
	rec := audit.Lifecycle{Event: what, ID: c.Meta.ID, Name: c.Meta.Name, Pod: c.Meta.Pod, Namespace: c.Meta.Namespace, Image: c.Meta.Image,
		PodUID: c.Meta.PodUID, OwnerKind: c.Meta.OwnerKind, OwnerName: c.Meta.OwnerName}
	if final != nil {
		rec.Counters = map[string]uint64{"seen": final.Seen, "emitted": final.Emitted, "dropped": final.Dropped}
	}
	return rec
}

// record is the response ladder's callback: every action taken or undone.
func (a *Agent) record(r control.Record) {
	a.actions.Add(1)
	a.metrics.action(r)
	v, _ := a.actionLat.LoadOrStore(r.Action, &actionStat{})
	st := v.(*actionStat)
	switch {
	case r.Error != "":
		st.failed.Add(1)
	case !r.Undo && r.Latency > 0:
		st.lat.Add(r.Latency)
	}
	a.pl.Record(r)
}

// actionStat is one action's count and latency (for status and metrics).
type actionStat struct {
	lat    pipeline.Latency
	failed atomic.Uint64
}

// syncSampler makes the sampled containers the registry's tracked ones
// (not in mode learn), with what the response ladder holds on them.
func (a *Agent) syncSampler() {
	dirs := map[uint64]string{}
	for _, c := range a.reg.TrackedContainers() {
		if c.Policy.Mode != annotations.ModeLearn && c.CgroupDir != "" {
			dirs[c.CgroupID] = c.CgroupDir
		}
	}
	held := map[uint64]bool{}
	for _, s := range a.ctl.InForce() {
		held[s.CgroupID] = true
	}
	a.smp.sync(dirs, held)
}

// refreshLoop flushes decisions (the registry's last counters are the
// heartbeat's: see heartbeatLoop).
func (a *Agent) refreshLoop(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.decided.flush()
		}
	}
}

// errorString is "" for nil.
func errorString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

var errNoGuard = errors.New("the kernel connect guard is not loaded (see the agent's start-up log)")
