package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"vigil.dev/vigil/agentctl"
)

// serveHTTP serves /healthz and /metrics (Prometheus text format) on ln
// until ctx is done.
func (a *Agent) serveHTTP(ctx context.Context, ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		writeMetrics(w, a.status())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
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

// healthy is nil when the agent is connected to the runtime and its
// outputs (event and decision files, audit log) can write.
func (a *Agent) healthy() error {
	if connected, _ := a.reg.Connected(); !connected {
		return errors.New("not connected to the runtime over NRI")
	}
	return a.outputsHealthy()
}

// writeMetrics writes st in the Prometheus text exposition format.
func writeMetrics(w io.Writer, st *agentctl.Status) {
	b01 := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	metric := func(name, typ, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	metric("vigil_runtime_connected", "gauge", "1 when connected to the container runtime over NRI.")
	fmt.Fprintf(w, "vigil_runtime_connected %d\n", b01(st.Connected))
	metric("vigil_runtime_connections_total", "counter", "NRI connections made since the agent started.")
	fmt.Fprintf(w, "vigil_runtime_connections_total %d\n", st.Connections)
	metric("vigil_events_total", "counter", "Syscall events read from the tracer since the agent started.")
	fmt.Fprintf(w, "vigil_events_total %d\n", st.Events)
	metric("vigil_verdicts_total", "counter", "Detector verdicts since the agent started.")
	fmt.Fprintf(w, "vigil_verdicts_total %d\n", st.Verdicts)
	metric("vigil_seccomp_notify_fds", "gauge", "Seccomp notify fds being served.")
	fmt.Fprintf(w, "vigil_seccomp_notify_fds %d\n", st.NotifyOpen)
	metric("vigil_seccomp_notify_decisions_total", "counter", "Seccomp notify decisions made.")
	fmt.Fprintf(w, "vigil_seccomp_notify_decisions_total %d\n", st.NotifyAnswer)
	metric("vigil_records_lost_total", "counter", "Syscall records that never reached the pipeline (ring or queue full), recorded as gaps.")
	fmt.Fprintf(w, "vigil_records_lost_total %d\n", st.Lost)
	metric("vigil_queue_dropped_total", "counter", "Syscall records the pipeline's queue could not take (part of lost).")
	fmt.Fprintf(w, "vigil_queue_dropped_total %d\n", st.QueueDropped)
	metric("vigil_actions_total", "counter", "Response actions taken or undone.")
	fmt.Fprintf(w, "vigil_actions_total %d\n", st.Actions)
	metric("vigil_actions_in_force", "gauge", "Response actions in force now, by action.")
	byAction := map[string]int{}
	for _, f := range st.InForce {
		byAction[f.Action]++
	}
	for _, act := range []string{"throttle", "deny-syscall", "deny-connect", "freeze"} {
		fmt.Fprintf(w, "vigil_actions_in_force{action=%q} %d\n", act, byAction[act])
	}
	metric("vigil_action_runs_total", "counter", "Response actions in force, by action (undos not counted).")
	for _, a := range st.ActionStats {
		fmt.Fprintf(w, "vigil_action_runs_total{action=%q} %d\n", a.Action, a.Count)
	}
	metric("vigil_action_failures_total", "counter", "Response actions that failed, by action.")
	for _, a := range st.ActionStats {
		fmt.Fprintf(w, "vigil_action_failures_total{action=%q} %d\n", a.Action, a.Failed)
	}
	metric("vigil_action_latency_seconds", "gauge", "Time from the triggering event to the action in force, quantiles since start, by action.")
	for _, a := range st.ActionStats {
		fmt.Fprintf(w, "vigil_action_latency_seconds{action=%q,quantile=\"0.5\"} %g\n", a.Action, a.P50.Seconds())
		fmt.Fprintf(w, "vigil_action_latency_seconds{action=%q,quantile=\"0.99\"} %g\n", a.Action, a.P99.Seconds())
	}
	metric("vigil_decision_seconds", "gauge", "Detector time per event, p99 (sampled).")
	fmt.Fprintf(w, "vigil_decision_seconds{quantile=\"0.99\"} %g\n", st.DecisionP99.Seconds())
	metric("vigil_delivery_seconds", "gauge", "Time from an event's kernel timestamp to its decision, p99 (sampled).")
	fmt.Fprintf(w, "vigil_delivery_seconds{quantile=\"0.99\"} %g\n", st.DeliveryP99.Seconds())
	metric("vigil_reloads_total", "counter", "Live reloads of rules, policies, model and node configuration.")
	fmt.Fprintf(w, "vigil_reloads_total %d\n", st.Reloads)
	metric("vigil_audit_errors_total", "counter", "Records the audit log could not take.")
	fmt.Fprintf(w, "vigil_audit_errors_total %d\n", st.AuditErrors)
	metric("vigil_audit_lost_records_total", "counter", "Records the audit log counted as lost (disk full beyond its on-full policy, write errors).")
	fmt.Fprintf(w, "vigil_audit_lost_records_total %d\n", st.AuditLost)
	if wh := st.Webhook; wh != nil {
		metric("vigil_webhook_alerts_total", "counter", "Alerts of the webhook by outcome: sent (accepted), dropped (queue full), failed (given up).")
		fmt.Fprintf(w, "vigil_webhook_alerts_total{outcome=\"sent\"} %d\n", wh.Sent)
		fmt.Fprintf(w, "vigil_webhook_alerts_total{outcome=\"dropped\"} %d\n", wh.Dropped)
		fmt.Fprintf(w, "vigil_webhook_alerts_total{outcome=\"failed\"} %d\n", wh.Failed)
	}
	if h := st.AuditHead; h != nil {
		metric("vigil_audit_head_index", "gauge", "Stream index of the last record of the audit log's signed head.")
		fmt.Fprintf(w, "vigil_audit_head_index %d\n", h.Index)
		metric("vigil_audit_head_segment", "gauge", "Segment of the audit log's signed head.")
		fmt.Fprintf(w, "vigil_audit_head_segment %d\n", h.Segment)
		metric("vigil_audit_head_info", "gauge", "The audit log's signed head: its chain hash, to compare with 'vigil audit verify'.")
		fmt.Fprintf(w, "vigil_audit_head_info{hash=%q} 1\n", h.Hash)
	}
	metric("vigil_audit_disk_full", "gauge", "1 while the audit log's disk is full.")
	fmt.Fprintf(w, "vigil_audit_disk_full %d\n", b01(st.AuditFull))
	metric("vigil_output_lost_lines_total", "counter", "Lines an output file (events, decisions) could not write, by output.")
	for _, o := range st.Outputs {
		fmt.Fprintf(w, "vigil_output_lost_lines_total{output=%q} %d\n", o.Name, o.LostLines)
	}
	metric("vigil_output_writable", "gauge", "1 while an output file can be written, by output.")
	for _, o := range st.Outputs {
		fmt.Fprintf(w, "vigil_output_writable{output=%q} %d\n", o.Name, b01(o.Error == ""))
	}
	metric("vigil_output_bytes_total", "counter", "Bytes written to an output file, by output.")
	for _, o := range st.Outputs {
		fmt.Fprintf(w, "vigil_output_bytes_total{output=%q} %d\n", o.Name, o.Bytes)
	}
	metric("vigil_output_rotations_total", "counter", "Rotations of an output file, by output.")
	for _, o := range st.Outputs {
		fmt.Fprintf(w, "vigil_output_rotations_total{output=%q} %d\n", o.Name, o.Rotations)
	}
	metric("vigil_containers_rejected_total", "counter", "Containers whose seccomp adjustment the runtime refused (last 256).")
	fmt.Fprintf(w, "vigil_containers_rejected_total %d\n", len(st.Rejected))
	metric("vigil_container_tracked", "gauge", "1 when the container's cgroup is traced.")
	for _, c := range st.Containers {
		fmt.Fprintf(w, "vigil_container_tracked{%s} %d\n", labels(c), b01(c.Tracked))
	}
	for _, m := range []struct {
		name, help string
		get        func(ContainerStatus) uint64
	}{
		{"vigil_container_syscalls_seen_total", "Syscalls the container completed while traced (exact, kernel-side).", func(c ContainerStatus) uint64 { return c.Seen }},
		{"vigil_container_records_emitted_total", "Syscall records written to the ring.", func(c ContainerStatus) uint64 { return c.Emitted }},
		{"vigil_container_records_dropped_total", "Syscall records lost because the ring was full.", func(c ContainerStatus) uint64 { return c.Dropped }},
	} {
		metric(m.name, "counter", m.help)
		for _, c := range st.Containers {
			if c.Tracked {
				fmt.Fprintf(w, "%s{%s} %d\n", m.name, labels(c), m.get(c))
			}
		}
	}
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func labels(c ContainerStatus) string {
	return fmt.Sprintf(`namespace="%s",pod="%s",container="%s",id="%s"`,
		labelEscaper.Replace(c.Namespace), labelEscaper.Replace(c.Pod), labelEscaper.Replace(c.Name), labelEscaper.Replace(c.ID))
}
