package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/agent"
	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/internal/rotate"
	"vigil.dev/vigil/pipeline"
	"vigil.dev/vigil/plugin"
	"vigil.dev/vigil/seccomp"
)

func init() {
	register("agent", "the node agent: NRI plugin, tracer, seccomp notify server, control socket", runAgent)
}

const agentUsage = `Usage: vigil agent [OPTIONS]

Runs vigil's node agent beside containerd (or CRI-O) with NRI enabled. For
each container whose pod opts in (annotation ebpf-monitor: "true", or forced
by the node configuration) it injects the seccomp profile of the
vigil.dev/seccomp annotation at creation, traces every syscall from the
workload's first instruction, and writes the events, with pod and container
metadata, as JSON lines. The detector (default rules, --policy files, a
--model) sees every event and each container's CPU use; each verdict goes
into the same stream as {"verdict":{...}}, into the audit log and into the
log. The response ladder acts on verdicts by the container's mode
(vigil.dev/mode: learn records only, detect reports what it would do,
enforce acts: throttle, deny-syscall, deny-connect, freeze, kill) and its
policy (vigil.dev/policy, files NAME.yaml in the node's policyDir; see
docs/response.md). Rule files, policies, the model and the node
configuration reload when they change, on SIGHUP and on 'vigil reload'.
'vigil status' asks it what it monitors and what is in force;
'vigil release' and 'vigil unfreeze' undo actions.

The --events and --decisions files rotate at --events-max-size and
--decisions-max-size (FILE becomes FILE.1, FILE.1 FILE.2, ...; the oldest
beyond --*-max-files is deleted; --*-compress gzips rotated files). They are
reopened on SIGHUP and 'vigil reload' and when logrotate moved them. When a
write fails (a full disk) the agent keeps running: it counts the lines it
could not write, tries again every second, and once it can, writes
{"output_lost":{"lines":N,...}} before the next line. The audit log is bounded
by --audit-max-size and --audit-max-age. Every loss shows in 'vigil status'
and /metrics, and /readyz reports not ready while an output cannot write.
/healthz says whether the agent's loops make progress (docs/metrics.md).

It connects to the runtime's NRI socket, or runs pre-registered from
/opt/nri/plugins (the runtime then passes the connection), and reconnects
when the runtime restarts. With --hook-only it does not use NRI: containers
register through the OCI hook ('vigil hook') on the control socket. Tracer
state is pinned under --pin-dir, so a restarted agent keeps each container's
counters. Needs root. --log-format json writes one JSON object a line for
log collectors; 'vigil version' names the build.

Example:
  sudo vigil agent --events /var/log/vigil/events.jsonl
  sudo vigil agent --config /etc/vigil/config.yaml --decisions /var/log/vigil/seccomp.jsonl
  sudo vigil agent --events '' --audit /var/lib/vigil/audit

Options:
`

func runAgent(args []string) int {
	if path := os.Getenv(seccomp.KeeperEnv); path != "" {
		// Started by an agent as its notify fd keeper (see startKeeper).
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		if err := seccomp.RunKeeper(ctx, path); err != nil {
			return fail("notify keeper: %v", err)
		}
		return 0
	}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	var (
		cfgPath   = fs.String("config", annotations.DefaultConfigPath, "node configuration `FILE` (YAML; a missing file forces nothing)")
		nriSock   = fs.String("nri-socket", plugin.DefaultNRISocket, "the runtime's NRI `SOCKET`")
		ctlSock   = fs.String("control-socket", agent.DefaultControlSocket, "control `SOCKET` for 'vigil status', release, unfreeze, reload and the OCI hook (mode 0600, root only)")
		listener  = fs.String("listener", agent.DefaultListenerPath, "seccomp notify listener `SOCKET` (the profiles' listenerPath)")
		events    = fs.String("events", "", "also write every syscall event, with verdicts, actions and gaps, as JSON lines to `FILE` ('-' standard output; default none: the audit log is the complete record)")
		alerts    = fs.String("alerts", "-", "write verdicts and the actions taken as alerts (one JSON line each, in the shape falcosidekick and log pipelines read) to `FILE` ('-' standard output, '' nowhere)")
		webhook   = fs.String("webhook", "", "also POST each alert as JSON to `URL` (e.g. falcosidekick); retried with backoff, a bounded queue, drops counted in status and metrics")
		stateFile = fs.String("state", agent.DefaultStateFile, "keep what the response ladder has in force in `FILE`, so a restarted agent knows it ('' keeps nothing)")
		decisions = fs.String("decisions", "", "write seccomp notify decisions as JSON lines to `FILE` (default: log them)")
		keeper    = fs.String("notify-keeper", "/run/vigil/notify-keeper.sock", "keep the seccomp notify fds in a helper process at `SOCKET`, so that notify containers survive an agent restart ('' keeps none)")
		keepWait  = fs.Duration("notify-keeper-wait", 0, "when no keeper answers at --notify-keeper, wait up to `DURATION` for one started beside the agent (a sidecar container) before starting one of its own, which ends with the agent's container")
		metrics   = fs.String("metrics-addr", "127.0.0.1:9477", "serve /healthz and /metrics (Prometheus) on `ADDR` ('' serves nothing)")
		pprofOn   = fs.Bool("debug-pprof", false, "also serve the agent's Go profiles (CPU, heap, goroutines, command line) at /debug/pprof/ on --metrics-addr, for 'go tool pprof': whoever reaches that address can read them, so use it with a loopback --metrics-addr")
		smpCPU    = fs.Float64("sample-cpu", agent.DefaultSampleCPU, "spend at most `CORES` (a share of one core, above 0 and at most 1) reading the containers' CPU and thread counts, all together: hot containers first, every 250 ms; idle ones less often")
		smpBudget = fs.Int("sample-budget", 2000, "read at most `N` cgroup files a second for the containers' CPU and thread counts, all together, within --sample-cpu (an idle container's sample reads 1, a hot one's 3)")
		smpIdle   = fs.Duration("sample-idle-every", 2*time.Second, "read an idle container's CPU every `DURATION` while --sample-cpu and --sample-budget allow (longer when they do not)")
		auditDir  = fs.String("audit", "", "also append events, decisions and container lifecycle to the audit log in `DIR` ('vigil audit verify DIR')")
		auditSize = fs.String("audit-max-size", "1GiB", "delete the audit log's oldest sealed segments while it is larger than `SIZE` (e.g. 500MiB, 10GiB; 0: no limit)")
		auditAge  = fs.String("audit-max-age", "0", "delete the audit log's sealed segments whose last record is older than `AGE` (e.g. 72h, 30d; 0: no limit)")
		anchor    = fs.String("audit-anchor", "", "run shell `COMMAND` with the audit log's signed head (JSON) on its standard input when it changed, every --audit-anchor-every, to keep a copy off the node")
		anchorDur = fs.Duration("audit-anchor-every", time.Minute, "how often --audit-anchor runs at most (`DURATION`)")
		auditFull = fs.String("audit-on-full", "count", "`POLICY` of the audit log when its disk is full: count (drop and count records, record the loss when space returns) or freeze (hold up to 16 batches in memory, then count; the agent reports unhealthy meanwhile)")
		evOpts    = outputFlags(fs, "events")
		decOpts   = outputFlags(fs, "decisions")
		pinDir    = fs.String("pin-dir", bpf.DefaultPinDir, "pin the tracer's state in `DIR` on bpffs, so a restarted agent keeps counting ('' pins nothing)")
		ringBytes = fs.Int("ring-size", 16<<20, "ring buffer size in `BYTES` (a power of two)")
		logLevel  = fs.String("log-level", "info", "log `LEVEL`: debug, info, warn, error")
		logFormat = fs.String("log-format", "text", "log `FORMAT`: text (key=value) or json (one JSON object a line, for log collectors)")
		hookOnly  = fs.Bool("hook-only", false, "run without NRI: containers register through the OCI hook on --control-socket only (a runtime without NRI); /readyz then needs the control socket, not the runtime")
		noDetect  = fs.Bool("no-detect", false, "run no detector (trace, audit and seccomp only)")
		model     = fs.String("model", "", "learned model `FILE` (from 'vigil detect train') to score every container with")
		policies  multiFlag
		resolvers multiFlag
		evNS      multiFlag
		evLabels  multiFlag
		evCalls   multiFlag
	)
	fs.Var(&policies, "policy", "extra detection rule `FILE` (repeatable), on top of the default rules")
	fs.Var(&resolvers, "allowed-resolver", "a DNS resolver `IP` the pods may query, besides the node's /etc/resolv.conf (repeatable; e.g. the cluster DNS service)")
	fs.Var(&evNS, "events-namespace", "write to --events only the events of pods in namespace `NS` ('*' and '?' patterns; repeatable)")
	fs.Var(&evLabels, "events-label", "write to --events only the events of pods with label `KEY[=VALUE]` (repeatable: any)")
	fs.Var(&evCalls, "events-syscall", "write to --events only the events of syscall `NAME` (repeatable)")
	fs.Usage = usageFunc(fs, agentUsage)
	if status, done := parseFlags(fs, args); done {
		return status
	}
	if fs.NArg() > 0 {
		return fail("agent: unexpected argument %q (see 'vigil agent --help')", fs.Arg(0))
	}
	if !(*smpCPU > 0 && *smpCPU <= 1) {
		return fail("agent: --sample-cpu %v: must be a share of one core above 0 and at most 1 (e.g. 0.05)", *smpCPU)
	}
	if *smpBudget <= 0 {
		return fail("agent: --sample-budget %d: must be a positive number of cgroup files read a second", *smpBudget)
	}
	if *smpIdle <= 0 {
		return fail("agent: --sample-idle-every %v: must be a positive duration", *smpIdle)
	}
	log := logrus.New()
	lvl, err := logrus.ParseLevel(*logLevel)
	if err != nil {
		return fail("agent: --log-level %q: allowed values are debug, info, warn, error", *logLevel)
	}
	log.SetLevel(lvl)
	log.SetOutput(os.Stderr)
	formatter, err := logFormatter(*logFormat)
	if err != nil {
		return fail("agent: %v", err)
	}
	log.SetFormatter(formatter)

	node, err := annotations.LoadNodeConfig(*cfgPath)
	if err != nil {
		return fail("agent: %v", err)
	}
	root, err := bpf.CgroupRoot()
	if err != nil {
		return fail("agent: %v", err)
	}
	evRot, err := evOpts.options(log)
	if err != nil {
		return fail("agent: %v", err)
	}
	decRot, err := decOpts.options(log)
	if err != nil {
		return fail("agent: %v", err)
	}
	auditMax, err := rotate.ParseSize(*auditSize)
	if err != nil {
		return fail("agent: --audit-max-size: %v", err)
	}
	auditMaxAge, err := parseAge(*auditAge)
	if err != nil {
		return fail("agent: --audit-max-age: %v", err)
	}
	onFull, err := audit.ParseFullPolicy(*auditFull)
	if err != nil {
		return fail("agent: --audit-on-full: %v", err)
	}
	evOut, closeEv, err := openOutput(*events, evRot)
	if err != nil {
		return fail("agent: --events: %v", err)
	}
	defer closeEv()
	evFilter, err := pipeline.ParseEventFilter(evNS, evLabels, evCalls)
	if err != nil {
		return fail("agent: --events-*: %v", err)
	}
	alOut, closeAl, err := openOutput(*alerts, evRot)
	if err != nil {
		return fail("agent: --alerts: %v", err)
	}
	defer closeAl()
	decOut, closeDec, err := openOutput(*decisions, decRot)
	if err != nil {
		return fail("agent: --decisions: %v", err)
	}
	defer closeDec()

	det := pipeline.Detection{RuleFiles: policies, Model: *model, Resolvers: resolvers}
	if !*noDetect {
		// Check the files now: a bad one is a start-up error, not a log line.
		if _, err := det.NewDetector(); err != nil {
			return fail("agent: %v", err)
		}
	}
	if *stateFile != "" {
		if err := os.MkdirAll(filepath.Dir(*stateFile), 0o700); err != nil {
			return fail("agent: --state: %v", err)
		}
	}

	mon, err := loadTracer(bpf.Config{RingBytes: *ringBytes, PinDir: *pinDir}, log)
	if err != nil {
		return fail("agent: %v", err)
	}
	defer mon.Close()
	log.WithFields(logrus.Fields{"pinned": *pinDir, "reused": mon.Reused(), "program": mon.Identity()[:16], "cgroup_root": root}).Info("tracer loaded")
	if r := mon.Replaced(); len(r) > 0 {
		log.WithFields(logrus.Fields{"pinned": *pinDir, "replaced": r, "program": mon.Identity()[:16]}).Warn("the pinned tracer ran another vigil's programs (or other settings): replaced them with this binary's, counters kept")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg := agent.Config{Node: node, NodeConfigPath: *cfgPath, NRISocket: *nriSock, ControlSocket: *ctlSock, ListenerPath: *listener,
		CgroupRoot: root, Events: evOut, Decisions: decOut, AuditDir: *auditDir, MetricsAddr: *metrics,
		AuditMaxBytes: auditMax, AuditMaxAge: auditMaxAge, AuditOnFull: onFull, AuditAnchor: *anchor, AuditAnchorEvery: *anchorDur,
		KeeperPath: *keeper, StartKeeper: keeperStarter(log, *keepWait, startKeeper), Detect: det, NoDetect: *noDetect, StateFile: *stateFile,
		Alerts: alOut, Webhook: *webhook, HookOnly: *hookOnly, Build: buildInfo(), EventFilter: evFilter, Pprof: *pprofOn,
		Sampling: agent.Sampling{CPU: *smpCPU, Budget: *smpBudget, IdleEvery: *smpIdle}}
	if *keepWait < 0 {
		return fail("agent: --notify-keeper-wait %v: must be 0 (start a keeper at once) or a positive duration", *keepWait)
	}
	// The connect guard (deny-connect) is pinned beside the tracer so that
	// what it refuses stays refused across agent restarts.
	guardPin := ""
	if *pinDir != "" {
		guardPin = strings.TrimSuffix(*pinDir, "/") + "-guard"
	}
	if g, err := bpf.LoadGuard(guardPin); err != nil {
		log.WithError(err).Warn("connect guard not loaded: deny-connect actions will fail")
	} else {
		defer g.Close()
		cfg.Guard = g
	}
	if err := agent.Run(ctx, cfg, mon, log); err != nil {
		return fail("agent: %v", err)
	}
	return 0
}

// logFormatter is the formatter of --log-format.
func logFormatter(name string) (logrus.Formatter, error) {
	switch name {
	case "text":
		return &logrus.TextFormatter{FullTimestamp: true}, nil
	case "json":
		return &logrus.JSONFormatter{}, nil
	}
	return nil, fmt.Errorf("--log-format %q: allowed values are text, json", name)
}

// openOutput opens an output: "-" is standard output, "" is none, a file
// a rotating writer that outlives a full disk.
func openOutput(path string, opts rotate.Options) (io.Writer, func(), error) {
	switch path {
	case "":
		return nil, func() {}, nil
	case "-":
		return os.Stdout, func() {}, nil
	}
	w, err := rotate.Open(path, opts)
	if err != nil {
		return nil, nil, err
	}
	return w, func() { w.Close() }, nil
}

// outputFlag holds the rotation flags of one output file.
type outputFlag struct {
	name     string
	maxSize  *string
	maxFiles *int
	compress *bool
}

// outputFlags defines --NAME-max-size, --NAME-max-files, --NAME-compress.
func outputFlags(fs *flag.FlagSet, name string) outputFlag {
	return outputFlag{name: name,
		maxSize:  fs.String(name+"-max-size", "100MiB", "rotate the --"+name+" file when it reaches `SIZE` (e.g. 100MiB, 1GiB; 0: never)"),
		maxFiles: fs.Int(name+"-max-files", 5, "keep `N` rotated --"+name+" files (FILE.1 the newest) and delete older ones; the output takes at most (N+1) x max size"),
		compress: fs.Bool(name+"-compress", false, "gzip rotated --"+name+" files (FILE.1.gz, ...)"),
	}
}

func (o outputFlag) options(log *logrus.Logger) (rotate.Options, error) {
	size, err := rotate.ParseSize(*o.maxSize)
	if err != nil {
		return rotate.Options{}, fmt.Errorf("--%s-max-size: %w", o.name, err)
	}
	if *o.maxFiles < 0 {
		return rotate.Options{}, fmt.Errorf("--%s-max-files %d: want 0 or more", o.name, *o.maxFiles)
	}
	return rotate.Options{MaxBytes: size, MaxFiles: *o.maxFiles, Compress: *o.compress,
		LossLine: rotate.JSONLossLine, Logf: log.Warnf}, nil
}

// parseAge reads a duration such as 72h, or a number of days such as 30d;
// "0" is no limit.
func parseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("age %q: want a duration such as 72h or a number of days such as 30d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("age %q: want a duration such as 72h or a number of days such as 30d (0: no limit)", s)
	}
	return d, nil
}

// loadTracer loads the tracer; a pinned tracer of another layout (another
// vigil version or ring size) is replaced, with a warning: its counters are
// lost, but the node keeps its agent.
func loadTracer(cfg bpf.Config, log *logrus.Logger) (*bpf.Monitor, error) {
	mon, err := bpf.Load(cfg)
	if err == nil || cfg.PinDir == "" || !errors.Is(err, ebpf.ErrMapIncompatible) {
		return mon, err
	}
	log.WithError(err).Warn("the tracer pinned in " + cfg.PinDir + " has another layout (another vigil version or ring size): replacing it; the counters of running containers start again")
	if err := bpf.Unpin(cfg.PinDir); err != nil {
		return nil, fmt.Errorf("replace pinned tracer: %w", err)
	}
	return bpf.Load(cfg)
}

// keeperStarter is the agent's StartKeeper, called when no keeper answers
// at path: it waits up to wait for a keeper started by someone else (the
// chart's sidecar container, which may start after the agent's) and calls
// start only when none answered.
func keeperStarter(log *logrus.Logger, wait time.Duration, start func(path string) error) func(path string) error {
	return func(path string) error {
		if wait > 0 {
			log.WithFields(logrus.Fields{"socket": path, "wait": wait}).Info("waiting for the notify fd keeper")
			t0 := time.Now()
			for deadline := t0.Add(wait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if seccomp.KeeperRunning(path) {
					log.WithFields(logrus.Fields{"socket": path, "after": time.Since(t0).Round(time.Millisecond)}).Info("the notify fd keeper answers")
					return nil
				}
			}
			log.WithFields(logrus.Fields{"socket": path, "wait": wait}).Warn("no notify fd keeper answered within --notify-keeper-wait: starting one, which ends with this agent's container")
		}
		return start(path)
	}
}

// startKeeper starts this binary as the notify fd keeper at path, in its
// own session so that it outlives the agent, and waits until it answers.
func startKeeper(path string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start notify keeper: %w", err)
	}
	cmd := exec.Command(self, "agent")
	cmd.Env = append(os.Environ(), seccomp.KeeperEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start notify keeper: %w", err)
	}
	go cmd.Wait() // reap it should it exit while the agent runs
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if seccomp.KeeperRunning(path) {
			return nil
		}
	}
	return fmt.Errorf("start notify keeper: not answering at %s", path)
}
