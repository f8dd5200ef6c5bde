package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/event"
)

// scrape GETs url and parses the Prometheus text it serves.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// sample finds the value of the series name{labels...} (name, value
// pairs; the series may have more labels); ok is false when it is absent.
// A histogram's value is its count.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (v float64, typ dto.MetricType, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), f.GetType(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), f.GetType(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), f.GetType(), true
		default:
			return m.GetUntyped().GetValue(), f.GetType(), true
		}
	}
	return 0, f.GetType(), false
}

// TestStatusMetrics: every series of the status, with its type and labels.
func TestStatusMetrics(t *testing.T) {
	st := &agentctl.Status{Connected: true, Connections: 3, Events: 99, NotifyOpen: 2, NotifyAnswer: 5, Rejected: []string{"r"},
		Lost: 7, Gaps: 2, QueueDepth: 4, Actions: 4, InForce: []agentctl.InForce{{Action: "throttle"}, {Action: "throttle"}},
		ActionStats: []agentctl.ActionStat{{Action: "kill-process", Count: 3, Failed: 1}},
		DecisionP99: 8 * time.Microsecond,
		Containers: []ContainerStatus{
			{Container: event.Container{ID: "c1", Name: "app", Pod: "web", Namespace: "shop"}, Tracked: true, Seen: 10, Emitted: 8, Dropped: 2, Throttled: 1},
			{Container: event.Container{ID: "c2", Name: `we"ird`, Pod: "web", Namespace: "shop"}},
		},
		Outputs: []agentctl.OutputStatus{{Name: "events", LostLines: 12, Rotations: 2, Bytes: 4096, Error: "no space left on device"},
			{Name: "decisions"}},
		Webhook:   &agentctl.WebhookStatus{Sent: 5, Dropped: 1, Retries: 2},
		AuditLost: 6, AuditStalls: 9, AuditFull: true, AuditBytes: 1 << 20, AuditHead: &agentctl.AuditHead{Index: 41, Segment: 2, Hash: "ab12", Time: time.Unix(1700000000, 0)},
		ReloadError: "bad rule",
		Sampling: &agentctl.Sampling{Hot: 3, Suspect: 1, Idle: 996, Samples: 1234, Deferred: 5, OldestAge: 2500 * time.Millisecond,
			CPUBudget: 0.05, CPU: 0.04, CPUTime: 1500 * time.Millisecond, StatCost: 140 * time.Microsecond, FullCost: 200 * time.Microsecond,
			FullPeriod: 250 * time.Millisecond, IdlePeriod: 21 * time.Second}}
	m := newMetrics(func() *agentctl.Status { return st }, BuildInfo{Version: "v1.2.3", Commit: "abc", Modified: true})
	a := &Agent{metrics: m, hb: newHeartbeat(time.Now(), staleAfter)}
	srv := httptest.NewServer(a.httpHandler())
	defer srv.Close()
	fams := scrape(t, srv.URL+"/metrics")
	c, g := dto.MetricType_COUNTER, dto.MetricType_GAUGE
	app := []string{"namespace", "shop", "pod", "web", "container", "app", "id", "c1"}
	for _, w := range []struct {
		name   string
		labels []string
		typ    dto.MetricType
		want   float64
	}{
		{"vigil_runtime_connected", nil, g, 1},
		{"vigil_runtime_connections_total", nil, c, 3},
		{"vigil_events_total", nil, c, 99},
		{"vigil_seccomp_notify_fds", nil, g, 2},
		{"vigil_seccomp_notify_decisions_total", nil, c, 5},
		{"vigil_containers_rejected_total", nil, c, 1},
		{"vigil_container_tracked", app, g, 1},
		{"vigil_container_tracked", []string{"container", `we"ird`, "id", "c2"}, g, 0},
		{"vigil_containers_tracked", nil, g, 1},
		{"vigil_container_syscalls_seen_total", app, c, 10},
		{"vigil_container_records_emitted_total", app, c, 8},
		{"vigil_container_records_dropped_total", app, c, 2},
		{"vigil_container_records_throttled_total", app, c, 1},
		{"vigil_records_lost_total", nil, c, 7},
		{"vigil_gaps_total", nil, c, 2},
		{"vigil_queue_depth", nil, g, 4},
		{"vigil_sampling_containers", []string{"class", "hot"}, g, 3},
		{"vigil_sampling_containers", []string{"class", "suspect"}, g, 1},
		{"vigil_sampling_containers", []string{"class", "idle"}, g, 996},
		{"vigil_samples_total", nil, c, 1234},
		{"vigil_samples_deferred_total", nil, c, 5},
		{"vigil_sampling_oldest_seconds", nil, g, 2.5},
		{"vigil_sampling_cpu_seconds_total", nil, c, 1.5},
		{"vigil_sampling_cpu_budget_cores", nil, g, 0.05},
		{"vigil_sampling_worst_period_seconds", []string{"class", "full"}, g, 0.25},
		{"vigil_sampling_worst_period_seconds", []string{"class", "idle"}, g, 21},
		{"vigil_sampling_sample_cost_seconds", []string{"kind", "stat"}, g, 140e-6},
		{"vigil_sampling_sample_cost_seconds", []string{"kind", "full"}, g, 200e-6},
		{"vigil_audit_head_index", nil, g, 41},
		{"vigil_audit_head_segment", nil, g, 2},
		{"vigil_audit_head_timestamp_seconds", nil, g, 1700000000},
		{"vigil_audit_head_info", []string{"hash", "ab12"}, g, 1},
		{"vigil_audit_bytes_total", nil, c, 1 << 20},
		{"vigil_actions_in_force", []string{"action", "throttle"}, g, 2},
		{"vigil_actions_in_force", []string{"action", "freeze"}, g, 0},
		{"vigil_action_runs_total", []string{"action", "kill-process"}, c, 3},
		{"vigil_action_failures_total", []string{"action", "kill-process"}, c, 1},
		{"vigil_decision_seconds", []string{"quantile", "0.99"}, g, 8e-6},
		{"vigil_audit_lost_records_total", nil, c, 6},
		{"vigil_audit_stalls_total", nil, c, 9},
		{"vigil_audit_disk_full", nil, g, 1},
		{"vigil_reload_rejected", nil, g, 1},
		{"vigil_webhook_alerts_total", []string{"outcome", "sent"}, c, 5},
		{"vigil_webhook_retries_total", nil, c, 2},
		{"vigil_output_lost_lines_total", []string{"output", "events"}, c, 12},
		{"vigil_output_lost_lines_total", []string{"output", "decisions"}, c, 0},
		{"vigil_output_writable", []string{"output", "events"}, g, 0},
		{"vigil_output_writable", []string{"output", "decisions"}, g, 1},
		{"vigil_output_rotations_total", []string{"output", "events"}, c, 2},
		{"vigil_output_bytes_total", []string{"output", "events"}, c, 4096},
		{"vigil_build_info", []string{"version", "v1.2.3", "commit", "abc", "modified", "true"}, g, 1},
		{"vigil_action_records_total", []string{"action", "freeze", "outcome", "done"}, c, 0},
		{"vigil_action_latency_seconds", []string{"action", "throttle"}, dto.MetricType_HISTOGRAM, 0},
	} {
		v, typ, ok := sample(fams, w.name, w.labels...)
		if !ok || typ != w.typ || v != w.want {
			t.Errorf("%s%v = %v (%v, present %v), want %v (%v)", w.name, w.labels, v, typ, ok, w.want, w.typ)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "process_open_fds"} {
		if fams[name] == nil {
			t.Errorf("no %s (Go and process collectors)", name)
		}
	}
	if _, _, ok := sample(fams, "vigil_container_syscalls_seen_total", "id", "c2"); ok {
		t.Error("counters exported for an untracked container")
	}
}

// chanMonitor is a tracer whose events come from a channel, a batch at a
// time.
type chanMonitor struct {
	fakeTracer
	batches chan []event.Event
}

func (m *chanMonitor) Consume(ctx context.Context, c bpf.Consumer) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case evs := <-m.batches:
			for i := range evs {
				ev := evs[i]
				c.Event(&ev)
			}
			c.EndBatch()
		}
	}
}

// TestMetricsMove: a running agent's /metrics, scraped around events, a
// verdict and an action, shows each of them.
func TestMetricsMove(t *testing.T) {
	cfg := testAgentConfig(t)
	cfg.HookOnly = true
	got := make(chan *Agent, 1)
	cfg.started = func(a *Agent) { got <- a }
	mon := &chanMonitor{fakeTracer: fakeTracer{tracked: map[uint64]bpf.Counters{}}, batches: make(chan []event.Event)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, mon, quietLog()) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var a *Agent
	select {
	case a = <-got:
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("agent not started")
	}
	srv := httptest.NewServer(a.httpHandler())
	defer srv.Close()
	// The reader and the control socket's goroutines may not have marked
	// themselves running yet when started is called: /readyz gets a moment.
	for _, path := range []string{"/healthz", "/readyz"} {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			resp, err := http.Get(srv.URL + path)
			if err == nil {
				resp.Body.Close()
			}
			if err == nil && resp.StatusCode == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %v %v", path, resp, err)
			}
		}
	}

	before := scrape(t, srv.URL+"/metrics")
	if v, _, ok := sample(before, "vigil_events_total"); !ok || v != 0 {
		t.Fatalf("vigil_events_total %v (%v) before any event", v, ok)
	}
	if v, _, ok := sample(before, "vigil_hook_only"); !ok || v != 1 {
		t.Errorf("vigil_hook_only %v (%v), want 1", v, ok)
	}
	openat, _ := event.SyscallNr("openat")
	execve, _ := event.SyscallNr("execve")
	mon.batches <- []event.Event{
		{Seq: 1, CgroupID: 9, PID: 5, TID: 5, Comm: "cat", Nr: int32(execve), Path: "/bin/cat", Time: time.Now()},
		{Seq: 2, CgroupID: 9, PID: 5, TID: 5, Comm: "cat", Nr: int32(openat), Ret: 3, Path: "/proc/1/root/etc/shadow", Time: time.Now()},
	}
	// The fake tracer hands the batch over on its own goroutine: wait for
	// the pipeline to have it, then for its verdict to be through.
	for deadline := time.Now().Add(5 * time.Second); a.pl.Stats().Events < 2 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
	}
	a.pl.Sync()
	after := scrape(t, srv.URL+"/metrics")
	if v, _, _ := sample(after, "vigil_events_total"); v != 2 {
		t.Errorf("vigil_events_total %v after 2 events", v)
	}
	if v, _, _ := sample(after, "vigil_verdicts_total"); v < 1 {
		t.Errorf("vigil_verdicts_total %v after a read through /proc/1/root", v)
	}
	if v, _, ok := sample(after, "vigil_rule_verdicts_total", "class", "fs-escape"); !ok || v < 1 {
		t.Errorf("vigil_rule_verdicts_total{class=fs-escape} %v (%v)", v, ok)
	}
	if f := after["vigil_rule_verdicts_total"]; f != nil {
		for _, l := range f.GetMetric()[0].GetLabel() {
			if l.GetValue() == "" && l.GetName() != "mode" {
				t.Errorf("verdict series with an empty %s", l.GetName())
			}
		}
	}

	a.record(control.Record{Action: control.ActThrottle, CgroupID: 9, Latency: 3 * time.Millisecond, Effective: time.Now()})
	a.record(control.Record{Action: control.ActThrottle, CgroupID: 9, Undo: true, Effective: time.Now()})
	a.record(control.Record{Action: control.ActFreeze, CgroupID: 9, Error: "no cgroup", Effective: time.Now()})
	acted := scrape(t, srv.URL+"/metrics")
	for _, w := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"vigil_actions_total", nil, 3},
		{"vigil_action_records_total", []string{"action", "throttle", "outcome", "done"}, 1},
		{"vigil_action_records_total", []string{"action", "throttle", "outcome", "undone"}, 1},
		{"vigil_action_records_total", []string{"action", "freeze", "outcome", "failed"}, 1},
		{"vigil_action_latency_seconds", []string{"action", "throttle"}, 1},
		{"vigil_action_latency_seconds", []string{"action", "freeze"}, 0},
	} {
		was, _, _ := sample(after, w.name, w.labels...)
		v, _, ok := sample(acted, w.name, w.labels...)
		if !ok || v-was != w.want {
			t.Errorf("%s%v moved by %v (present %v), want %v", w.name, w.labels, v-was, ok, w.want)
		}
	}
	h := acted["vigil_action_latency_seconds"]
	for _, m := range h.GetMetric() {
		if m.GetLabel()[0].GetValue() == "throttle" && (m.GetHistogram().GetSampleSum() != 0.003 || len(m.GetHistogram().GetBucket()) == 0) {
			t.Errorf("throttle latency histogram %v", m.GetHistogram())
		}
	}
	if !strings.Contains(acted["vigil_build_info"].GetMetric()[0].String(), "go_version") {
		t.Error("vigil_build_info has no go_version")
	}
}
