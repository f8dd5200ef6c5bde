package plugin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/seccomp"
)

// Defaults of the agent's paths.
const (
	DefaultControlSocket = "/run/vigil/vigil.sock"
	DefaultListenerPath  = "/run/vigil/seccomp.sock"
	DefaultNRISocket     = "/var/run/nri/nri.sock"
	DefaultPluginName    = "vigil"
	DefaultPluginIdx     = "10"
)

// Monitor is the tracer as the agent uses it (*bpf.Monitor).
type Monitor interface {
	Tracer
	Run(ctx context.Context, fn func(*event.Event)) error
}

// AgentConfig configures RunAgent.
type AgentConfig struct {
	Node          annotations.NodeConfig
	NRISocket     string
	ControlSocket string
	ListenerPath  string
	CgroupRoot    string
	Events        io.Writer // JSON lines of events; nil discards them
	Decisions     io.Writer // JSON lines of seccomp notify decisions; nil logs them
	// KeeperPath, when set, is the notify fd keeper's socket (see
	// seccomp.RunKeeper): the fds outlive the agent, and a new agent takes
	// them back. StartKeeper starts a keeper there when none answers.
	KeeperPath  string
	StartKeeper func(path string) error
	// MetricsAddr, when set, serves /healthz and /metrics there (e.g.
	// "127.0.0.1:9477").
	MetricsAddr string
	// AuditDir, when set, is the audit log (package audit): every event,
	// notify decision, container start/stop with final counters, and the
	// agent's start/stop are appended there first.
	AuditDir string
	// Reconnect is the wait between attempts to reach the runtime.
	Reconnect time.Duration
	// Detector, when set, sees every event after it is audited; each
	// verdict is audited, written to Events as {"verdict":{...}} and logged.
	// Build it with FromFirstExec, so the runtime's own setup of a
	// container (runc's pivot_root, mounts) is not taken for the workload.
	Detector *detector.Engine
}

// Agent is a running node agent.
type Agent struct {
	cfg      AgentConfig
	log      *logrus.Logger
	mon      Monitor
	plugin   *Plugin
	server   *seccomp.Server
	events   *jsonLines
	decided  *jsonLines
	aud      *audit.Writer
	audErrs  atomic.Uint64
	verdicts atomic.Uint64

	mu        sync.Mutex
	connected bool
	connects  int
	started   time.Time
}

// RunAgent runs the agent until ctx is done: the notify server, the event
// reader, the control socket and the NRI connection, which it re-establishes
// whenever the runtime goes away (unless the runtime started vigil as a
// pre-registered plugin: then it exits with the connection).
func RunAgent(ctx context.Context, cfg AgentConfig, mon Monitor, log *logrus.Logger) error {
	if cfg.NRISocket == "" {
		cfg.NRISocket = DefaultNRISocket
	}
	if cfg.ControlSocket == "" {
		cfg.ControlSocket = DefaultControlSocket
	}
	if cfg.ListenerPath == "" {
		cfg.ListenerPath = DefaultListenerPath
	}
	if cfg.Reconnect == 0 {
		cfg.Reconnect = time.Second
	}
	node, err := withProfiles(cfg.Node)
	if err != nil {
		return err
	}
	cfg.Node = node

	a := &Agent{cfg: cfg, log: log, mon: mon, started: time.Now(),
		events: newJSONLines(cfg.Events), decided: newJSONLines(cfg.Decisions)}
	fallback, err := seccomp.Build(seccomp.Notify, seccomp.Options{ListenerPath: cfg.ListenerPath})
	if err != nil {
		return err
	}
	a.server, err = seccomp.NewServer(cfg.ListenerPath, fallback.Policy, a.onDecision)
	if err != nil {
		return err
	}
	defer a.server.Close()
	a.plugin = New(Config{Node: cfg.Node, CgroupRoot: cfg.CgroupRoot, ListenerPath: cfg.ListenerPath}, mon, a.server, log)
	a.plugin.onLifecycle = a.lifecycle
	if cfg.Detector != nil {
		a.plugin.onRunning = cfg.Detector.Started
	}
	if cfg.AuditDir != "" {
		if a.aud, err = audit.Open(audit.Options{Dir: cfg.AuditDir}); err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		host, _ := os.Hostname()
		a.audit(audit.KindAgent, 0, "", audit.Agent{Event: "start", Host: host, PID: os.Getpid(), Detail: "vigil agent"})
		defer func() {
			a.audit(audit.KindAgent, 0, "", audit.Agent{Event: "stop", PID: os.Getpid()})
			if err := a.aud.Close(); err != nil {
				log.WithError(err).Error("close audit log")
			}
		}()
	}

	// The plugin and the audit log exist before the keeper hands back the fds
	// of running containers: the server answers (and reports to onDecision)
	// at once.
	if cfg.KeeperPath != "" {
		if err := a.useKeeper(); err != nil {
			// Not fatal: without the keeper a restart of the agent makes the
			// notified syscalls of running containers fail with ENOSYS.
			log.WithError(err).Warn("no notify fd keeper: notify containers will not survive an agent restart")
		}
	}
	ctl, err := listenControl(cfg.ControlSocket)
	if err != nil {
		return err
	}
	defer ctl.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics address: %w", err)
		}
		log.WithField("addr", ln.Addr().String()).Info("serving /healthz and /metrics")
		go a.serveHTTP(ctx, ln)
	}
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Add(3)
	// A failing server or tracer stops the agent (and its error is returned):
	// an agent that no longer traces or answers must not look healthy.
	fatal := func(err error) error {
		if err != nil {
			log.WithError(err).Error("stopping the agent")
			cancel()
		}
		return err
	}
	go func() { defer wg.Done(); errc <- fatal(nonNil(a.server.Serve(), "seccomp server")) }()
	go func() { defer wg.Done(); errc <- fatal(nonNil(mon.Run(ctx, a.onEvent), "tracer")) }()
	go func() { defer wg.Done(); serveControl(ctx, ctl, a) }()
	go a.flushLoop(ctx)

	nriErr := a.runNRI(ctx)
	cancel()
	a.server.Close()
	ctl.Close()
	wg.Wait()
	close(errc)
	a.events.flush()
	a.decided.flush()
	for err := range errc {
		if err != nil {
			return err
		}
	}
	return nriErr
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

// runNRI connects to the runtime and serves it, again after every loss of
// the connection, until ctx is done.
func (a *Agent) runNRI(ctx context.Context) error {
	preRegistered := os.Getenv(api.PluginSocketEnvVar) != ""
	var opts []stub.Option
	if os.Getenv(api.PluginNameEnvVar) == "" {
		opts = append(opts, stub.WithPluginName(DefaultPluginName))
	}
	if os.Getenv(api.PluginIdxEnvVar) == "" {
		opts = append(opts, stub.WithPluginIdx(DefaultPluginIdx))
	}
	if !preRegistered {
		opts = append(opts, stub.WithSocketPath(a.cfg.NRISocket))
	}
	opts = append(opts, stub.WithLogger(nriLogger{a.log}))
	lastWarn := time.Time{}
	for {
		s, err := stub.New(a.plugin, opts...)
		if err != nil {
			return fmt.Errorf("nri plugin: %w", err)
		}
		err = a.serveOnce(ctx, s)
		if ctx.Err() != nil {
			return nil
		}
		if preRegistered {
			// The runtime starts a new instance when it comes back.
			if err != nil {
				return fmt.Errorf("nri connection from the runtime: %w", err)
			}
			a.log.Info("the runtime closed the NRI connection; exiting (pre-registered plugin)")
			return nil
		}
		if err != nil && time.Since(lastWarn) > time.Minute {
			a.log.WithError(err).Warn("runtime not reachable over NRI; retrying")
			lastWarn = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(a.cfg.Reconnect):
		}
	}
}

func (a *Agent) serveOnce(ctx context.Context, s stub.Stub) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	a.mu.Lock()
	a.connected = true
	a.connects++
	n := a.connects
	a.mu.Unlock()
	where := a.cfg.NRISocket
	if os.Getenv(api.PluginSocketEnvVar) != "" {
		where = "pre-registered (connection from the runtime)"
	}
	a.log.WithFields(logrus.Fields{"socket": where, "connection": n}).Info("connected to the runtime over NRI")
	done := make(chan struct{})
	go func() { s.Wait(); close(done) }()
	select {
	case <-ctx.Done():
		s.Stop()
		<-done
	case <-done:
		a.log.Warn("NRI connection closed (runtime restarted?); reconnecting")
	}
	a.mu.Lock()
	a.connected = false
	a.mu.Unlock()
	return nil
}

// onEvent enriches, audits, writes and inspects one event (the tracer
// reuses *ev afterwards). One goroutine calls it, so the audit log holds
// events and verdicts in the order the detector saw them, and a replay of
// the log reaches the same verdicts.
func (a *Agent) onEvent(ev *event.Event) {
	a.plugin.Enrich(ev)
	if a.aud != nil {
		if err := a.aud.AppendEvent(ev); err != nil {
			a.auditFailed(err)
		}
	}
	a.events.write(func(b []byte) []byte { return ev.AppendJSON(b) })
	if a.cfg.Detector == nil {
		return
	}
	vs := a.cfg.Detector.Observe(ev)
	for i := range vs {
		a.onVerdict(&vs[i])
	}
}

// onVerdict records a verdict: audit log first, then the event stream and
// the log.
func (a *Agent) onVerdict(v *detector.Verdict) {
	a.verdicts.Add(1)
	ctrID := ""
	if v.Container != nil {
		ctrID = v.Container.ID
	}
	a.audit(audit.KindVerdict, v.CgroupID, ctrID, v)
	a.events.write(func(b []byte) []byte {
		j, err := json.Marshal(struct {
			V *detector.Verdict `json:"verdict"`
		}{v})
		if err != nil {
			return b
		}
		return append(b, j...)
	})
	fields := logrus.Fields{"cgroup": v.CgroupID, "class": v.Class, "severity": v.Severity, "rule": v.Rule, "pid": v.PID}
	if v.Container != nil {
		fields["container"], fields["pod"] = v.Container.Name, v.Container.Pod
	}
	a.log.WithFields(fields).Warn(v.Message)
}

// audit appends one record when the agent keeps an audit log.
func (a *Agent) audit(kind audit.Kind, cgroupID uint64, containerID string, body any) {
	if a.aud == nil {
		return
	}
	if err := a.aud.Append(kind, cgroupID, containerID, body); err != nil {
		a.auditFailed(err)
	}
}

func (a *Agent) auditFailed(err error) {
	if a.audErrs.Add(1) == 1 {
		a.log.WithError(err).Error("audit log: append failed (counted in vigil status from now on)")
	}
}

// lifecycle audits a monitored container's start and stop (with its final
// counters).
func (a *Agent) lifecycle(what string, st ContainerStatus) {
	rec := audit.Lifecycle{Event: what, ID: st.ID, Name: st.Name, Pod: st.Pod, Namespace: st.Namespace, Image: st.Image}
	if what == "stop" {
		rec.Counters = map[string]uint64{"seen": st.Seen, "emitted": st.Emitted, "dropped": st.Dropped}
	}
	a.audit(audit.KindLifecycle, st.CgroupID, st.ID, rec)
	if what == "stop" && a.cfg.Detector != nil {
		a.cfg.Detector.Forget(st.CgroupID)
	}
}

// Decision is the JSON record of one seccomp notify decision.
type Decision struct {
	Time      time.Time        `json:"time"`
	Container *event.Container `json:"container,omitempty"`
	PID       uint32           `json:"pid"`
	Syscall   string           `json:"syscall"`
	Nr        int32            `json:"nr"`
	Args      [6]uint64        `json:"args"`
	Action    string           `json:"action"` // "allow" or "deny"
	Errno     string           `json:"errno,omitempty"`
	Error     string           `json:"error,omitempty"`
}

func (a *Agent) onDecision(n seccomp.Notification) {
	d := Decision{Time: n.Time, PID: n.PID, Nr: n.Nr, Syscall: event.SyscallName(int(n.Nr)), Args: n.Args, Action: "allow"}
	if !n.Decision.Allow {
		d.Action, d.Errno = "deny", event.ErrnoName(int(n.Decision.Errno))
	}
	if n.Err != nil {
		d.Error = n.Err.Error()
	}
	var cgroupID uint64
	a.plugin.mu.RLock()
	if c := a.plugin.byID[n.Container]; c != nil {
		d.Container, cgroupID = c.meta, c.cgroupID
	} else if n.Container != "" {
		d.Container = &event.Container{ID: n.Container}
	}
	a.plugin.mu.RUnlock()
	a.audit(audit.KindAction, cgroupID, n.Container, d)
	if a.cfg.Decisions == nil {
		fields := logrus.Fields{"syscall": d.Syscall, "pid": d.PID, "action": d.Action, "errno": d.Errno}
		if d.Container != nil {
			fields["container"], fields["pod"] = d.Container.Name, d.Container.Namespace+"/"+d.Container.Pod
		}
		a.log.WithFields(fields).Info("seccomp notify decision")
		return
	}
	a.decided.write(func(b []byte) []byte {
		out, _ := json.Marshal(d)
		return append(b, out...)
	})
}

func (a *Agent) flushLoop(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.events.flush()
			a.decided.flush()
			if n++; n%10 == 0 {
				a.plugin.Refresh()
			}
		}
	}
}

// jsonLines is a buffered writer of JSON lines shared by goroutines.
type jsonLines struct {
	mu      sync.Mutex
	w       *bufio.Writer
	buf     []byte
	written uint64
	err     error
}

func newJSONLines(w io.Writer) *jsonLines {
	if w == nil {
		return &jsonLines{}
	}
	return &jsonLines{w: bufio.NewWriterSize(w, 256<<10)}
}

func (j *jsonLines) write(appendJSON func([]byte) []byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.written++
	if j.w == nil || j.err != nil {
		return
	}
	j.buf = append(appendJSON(j.buf[:0]), '\n')
	if _, err := j.w.Write(j.buf); err != nil {
		j.err = err
	}
}

func (j *jsonLines) flush() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.w != nil && j.err == nil {
		j.err = j.w.Flush()
	}
}

func (j *jsonLines) stats() (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.written, j.err
}

// nriLogger sends the stub's logs to logrus.
type nriLogger struct{ l *logrus.Logger }

func (n nriLogger) Debugf(_ context.Context, f string, a ...any) { n.l.Debugf("nri: "+f, a...) }
func (n nriLogger) Infof(_ context.Context, f string, a ...any)  { n.l.Debugf("nri: "+f, a...) }
func (n nriLogger) Warnf(_ context.Context, f string, a ...any)  { n.l.Warnf("nri: "+f, a...) }
func (n nriLogger) Errorf(_ context.Context, f string, a ...any) { n.l.Errorf("nri: "+f, a...) }
