package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/pipeline"
)

// BuildInfo names the binary the agent runs (vigil_build_info).
type BuildInfo struct {
	Version  string // module version or `git describe`; "(devel)" when unknown
	Commit   string // VCS revision; "" when unknown
	Modified bool   // built from a tree with uncommitted changes
}

// serveHTTP serves /healthz, /readyz and /metrics on ln until ctx is done.
func (a *Agent) serveHTTP(ctx context.Context, ln net.Listener) {
	srv := &http.Server{Handler: a.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.WithError(err).Error("metrics server")
	}
}

// httpHandler is /healthz (the agent's loops make progress), /readyz (it
// traces, containers can reach it, its outputs write) and /metrics.
func (a *Agent) httpHandler() http.Handler {
	mux := http.NewServeMux()
	probe := func(check func(time.Time) error) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			if err := check(time.Now()); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok\n")
		}
	}
	mux.Handle("/healthz", probe(a.hb.check))
	mux.Handle("/readyz", probe(func(time.Time) error { return a.ready() }))
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	if a.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// metrics are the agent's Prometheus metrics, in a registry of their own:
// the counters and histograms the agent keeps (verdicts by rule, actions
// by outcome and their latency), the status read at each scrape
// (everything else), the build, and the Go runtime and process.
type metrics struct {
	reg           *prometheus.Registry
	verdicts      *prometheus.CounterVec
	actions       *prometheus.CounterVec
	actionLatency *prometheus.HistogramVec
}

// Outcomes of an action record (vigil_action_records_total).
const (
	outcomeDone   = "done"
	outcomeUndone = "undone"
	outcomeFailed = "failed"
)

// responseActions are the actions the ladder takes, whose series exist
// from the start.
var responseActions = []control.Action{control.ActThrottle, control.ActDenySyscall, control.ActDenyConnect,
	control.ActFreeze, control.ActKillProcess, control.ActKill}

func newMetrics(status func() *agentctl.Status, build BuildInfo) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_rule_verdicts_total",
			Help: "Detector verdicts by rule, class, severity and the container's mode (learn, detect, enforce)."},
			[]string{"rule", "class", "severity", "mode"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_action_records_total",
			Help: "Response actions by action and outcome: done (in force), undone (restored or released), failed."},
			[]string{"action", "outcome"}),
		actionLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_action_latency_seconds",
			Help:    "Time from the triggering event to the action in force, by action.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, // 0.5 ms to 4 s
			[]string{"action"}),
	}
	for _, act := range responseActions {
		for _, o := range []string{outcomeDone, outcomeUndone, outcomeFailed} {
			m.actions.WithLabelValues(string(act), o)
		}
		m.actionLatency.WithLabelValues(string(act))
	}
	version := build.Version
	if version == "" {
		version = "(devel)"
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_build_info",
		Help: "1, labelled with the agent's version, VCS commit, whether its tree was modified, and Go version.",
		ConstLabels: prometheus.Labels{"version": version, "commit": build.Commit,
			"modified": strconv.FormatBool(build.Modified), "go_version": runtime.Version()}})
	info.Set(1)
	m.reg.MustRegister(m.verdicts, m.actions, m.actionLatency, info, &statusCollector{status: status},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// action counts one record of the response ladder and observes its
// latency (a action in force, not an undo).
func (m *metrics) action(r control.Record) {
	outcome := outcomeDone
	switch {
	case r.Error != "":
		outcome = outcomeFailed
	case r.Undo:
		outcome = outcomeUndone
	}
	m.actions.WithLabelValues(string(r.Action), outcome).Inc()
	if outcome == outcomeDone && r.Latency > 0 {
		m.actionLatency.WithLabelValues(string(r.Action)).Observe(r.Latency.Seconds())
	}
}

// sink counts verdicts by rule; the pipeline calls it on its worker.
func (m *metrics) sink() pipeline.Sink { return verdictCounter{m.verdicts} }

type verdictCounter struct{ c *prometheus.CounterVec }

func (verdictCounter) Event(*event.Event) {}

func (v verdictCounter) Verdict(d *detector.Verdict) {
	v.c.WithLabelValues(d.Rule, string(d.Class), d.Severity.String(), d.Mode).Inc()
}

func (verdictCounter) Action(control.Record) {}
func (verdictCounter) Gap(pipeline.Gap)      {}
func (verdictCounter) Flush() error          { return nil }

// statusCollector turns the agent's status into metrics at each scrape.
// It is unchecked (Describe sends nothing): the per-container, per-output
// and per-action series come and go with what the status holds.
type statusCollector struct {
	status func() *agentctl.Status
	descs  sync.Map // name → *prometheus.Desc
}

func (*statusCollector) Describe(chan<- *prometheus.Desc) {}

// emitter sends metrics of one scrape.
type emitter struct {
	c  *statusCollector
	ch chan<- prometheus.Metric
}

// emit sends one sample; labels are name, value pairs, always the same
// names for one metric name.
func (e emitter) emit(typ prometheus.ValueType, name, help string, v float64, labels ...string) {
	var names, values []string
	for i := 0; i+1 < len(labels); i += 2 {
		names, values = append(names, labels[i]), append(values, labels[i+1])
	}
	d, ok := e.c.descs.Load(name)
	if !ok {
		d, _ = e.c.descs.LoadOrStore(name, prometheus.NewDesc(name, help, names, nil))
	}
	e.ch <- prometheus.MustNewConstMetric(d.(*prometheus.Desc), typ, v, values...)
}

func (e emitter) counter(name, help string, v uint64, labels ...string) {
	e.emit(prometheus.CounterValue, name, help, float64(v), labels...)
}

func (e emitter) gauge(name, help string, v float64, labels ...string) {
	e.emit(prometheus.GaugeValue, name, help, v, labels...)
}

func b01(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	e := emitter{c, ch}
	e.gauge("vigil_runtime_connected", "1 when connected to the container runtime over NRI.", b01(st.Connected))
	e.counter("vigil_runtime_connections_total", "NRI connections made since the agent started.", uint64(st.Connections))
	e.gauge("vigil_hook_only", "1 when the agent runs without NRI (--hook-only): containers come through the OCI hook.", b01(st.HookOnly))
	e.counter("vigil_events_total", "Syscall events the pipeline processed since the agent started.", st.Events)
	e.counter("vigil_verdicts_total", "Detector verdicts since the agent started (by rule: vigil_rule_verdicts_total).", st.Verdicts)
	e.gauge("vigil_seccomp_notify_fds", "Seccomp notify fds being served.", float64(st.NotifyOpen))
	e.counter("vigil_seccomp_notify_decisions_total", "Seccomp notify decisions made.", st.NotifyAnswer)
	e.counter("vigil_records_lost_total", "Syscall records that never reached the pipeline (ring or queue full, or over a container's budget), recorded as gaps.", st.Lost)
	e.counter("vigil_gaps_total", "Gap records: runs of lost records, each in the audit log.", st.Gaps)
	e.counter("vigil_queue_dropped_total", "Syscall records the pipeline's queue could not take (part of lost).", st.QueueDropped)
	e.gauge("vigil_queue_depth", "Batches of events waiting for the pipeline's worker.", float64(st.QueueDepth))
	e.counter("vigil_actions_total", "Response actions taken or undone.", st.Actions)
	byAction := map[string]int{}
	for _, f := range st.InForce {
		byAction[f.Action]++
	}
	for _, act := range []control.Action{control.ActThrottle, control.ActDenySyscall, control.ActDenyConnect, control.ActFreeze} {
		e.gauge("vigil_actions_in_force", "Response actions in force now, by action.", float64(byAction[string(act)]), "action", string(act))
	}
	for _, a := range st.ActionStats {
		e.counter("vigil_action_runs_total", "Response actions put in force with a latency, by action (undos not counted).", a.Count, "action", a.Action)
		e.counter("vigil_action_failures_total", "Response actions that failed, by action.", a.Failed, "action", a.Action)
	}
	for _, q := range []struct {
		q                  string
		decision, delivery time.Duration
	}{{"0.5", st.DecisionP50, st.DeliveryP50}, {"0.99", st.DecisionP99, st.DeliveryP99}} {
		e.gauge("vigil_decision_seconds", "Detector time per event, quantiles since start (one event in 16 is timed).", q.decision.Seconds(), "quantile", q.q)
		e.gauge("vigil_delivery_seconds", "Time from an event's kernel timestamp to its decision, quantiles since start (one event in 16).", q.delivery.Seconds(), "quantile", q.q)
	}
	e.counter("vigil_reloads_total", "Live reloads of rules, policies, model and node configuration.", st.Reloads)
	e.gauge("vigil_reload_rejected", "1 while the last reload was rejected (the previous configuration stays in force; see vigil status).", b01(st.ReloadError != ""))
	e.counter("vigil_audit_errors_total", "Records the audit log could not take.", st.AuditErrors)
	e.counter("vigil_audit_lost_records_total", "Records the audit log counted as lost (disk full beyond its on-full policy, write errors).", st.AuditLost)
	e.counter("vigil_audit_stalls_total", "Appends that waited for the audit writer: its bounded hand-off was full (a slow disk); nothing is dropped for it.", st.AuditStalls)
	e.counter("vigil_audit_bytes_total", "Bytes the audit log wrote since the agent started.", uint64(max(st.AuditBytes, 0)))
	e.gauge("vigil_audit_disk_full", "1 while the audit log's disk is full.", b01(st.AuditFull))
	if h := st.AuditHead; h != nil {
		e.gauge("vigil_audit_head_index", "Stream index of the last record of the audit log's signed head.", float64(h.Index))
		e.gauge("vigil_audit_head_segment", "Segment of the audit log's signed head.", float64(h.Segment))
		e.gauge("vigil_audit_head_timestamp_seconds", "When the audit log's signed head was written (Unix time).", float64(h.Time.UnixNano())/1e9)
		e.gauge("vigil_audit_head_info", "The audit log's signed head: its chain hash, to compare with 'vigil audit verify'.", 1, "hash", h.Hash)
	}
	if wh := st.Webhook; wh != nil {
		for _, o := range []struct {
			outcome string
			n       uint64
		}{{"sent", wh.Sent}, {"dropped", wh.Dropped}, {"failed", wh.Failed}} {
			e.counter("vigil_webhook_alerts_total", "Alerts of the webhook by outcome: sent (accepted), dropped (queue full), failed (given up).", o.n, "outcome", o.outcome)
		}
		e.counter("vigil_webhook_retries_total", "Webhook requests tried again.", wh.Retries)
	}
	for _, o := range st.Outputs {
		e.counter("vigil_output_lost_lines_total", "Lines an output file (events, decisions) could not write, by output.", o.LostLines, "output", o.Name)
		e.gauge("vigil_output_writable", "1 while an output file can be written, by output.", b01(o.Error == ""), "output", o.Name)
		e.counter("vigil_output_bytes_total", "Bytes written to an output file, by output.", o.Bytes, "output", o.Name)
		e.counter("vigil_output_rotations_total", "Rotations of an output file, by output.", o.Rotations, "output", o.Name)
	}
	if sm := st.Sampling; sm != nil {
		for _, c := range []struct {
			class string
			n     int
		}{{"hot", sm.Hot}, {"suspect", sm.Suspect}, {"idle", sm.Idle}} {
			e.gauge("vigil_sampling_containers", "Containers whose CPU and threads are sampled, by class: hot and suspect every 250 ms, idle less often.", float64(c.n), "class", c.class)
		}
		e.counter("vigil_samples_total", "CPU and thread samples of the containers taken.", sm.Samples)
		e.counter("vigil_samples_deferred_total", "Samples due that a tick left to a later one for the budgets (--sample-cpu, --sample-budget).", sm.Deferred)
		e.gauge("vigil_sampling_oldest_seconds", "The longest time since a container's last sample (how far the budget stretched the idle period).", sm.OldestAge.Seconds())
		e.emit(prometheus.CounterValue, "vigil_sampling_cpu_seconds_total", "CPU time the sampling of the containers' cgroup files spent (its thread's clock).", sm.CPUTime.Seconds())
		e.gauge("vigil_sampling_cpu_budget_cores", "The share of a core the sampling may spend (--sample-cpu).", sm.CPUBudget)
		for _, p := range []struct {
			class string
			d     time.Duration
		}{{"full", sm.FullPeriod}, {"idle", sm.IdlePeriod}} {
			e.gauge("vigil_sampling_worst_period_seconds", "The longest time between two samples of a container in the last 10-20 s, by class: full (hot and suspect, 250 ms while the budgets allow) and idle.", p.d.Seconds(), "class", p.class)
		}
		for _, c := range []struct {
			kind string
			d    time.Duration
		}{{"stat", sm.StatCost}, {"full", sm.FullCost}} {
			e.gauge("vigil_sampling_sample_cost_seconds", "The smoothed CPU cost of one sample, by kind: stat (an idle container's, cpu.stat) and full (cpu.stat, cgroup.threads, cpu.pressure).", c.d.Seconds(), "kind", c.kind)
		}
	}
	e.counter("vigil_containers_rejected_total", "Containers whose seccomp adjustment the runtime refused (the last 256 are kept).", uint64(len(st.Rejected)))
	tracked := 0
	for _, ct := range st.Containers {
		l := []string{"namespace", ct.Namespace, "pod", ct.Pod, "container", ct.Name, "id", ct.ID}
		e.gauge("vigil_container_tracked", "1 when the container's cgroup is traced.", b01(ct.Tracked), l...)
		if !ct.Tracked {
			continue
		}
		tracked++
		e.counter("vigil_container_syscalls_seen_total", "Syscalls the container completed while traced (exact, kernel-side).", ct.Seen, l...)
		e.counter("vigil_container_records_emitted_total", "Syscall records written to the ring.", ct.Emitted, l...)
		e.counter("vigil_container_records_dropped_total", "Syscall records lost (ring full or over the container's budget): the container's gaps.", ct.Dropped, l...)
		e.counter("vigil_container_records_throttled_total", "The dropped records that were over the container's tracing budget (its own flood).", ct.Throttled, l...)
	}
	e.gauge("vigil_containers_tracked", "Containers whose cgroup is traced now.", float64(tracked))
}
