package agent

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/event"
)

func TestWriteMetrics(t *testing.T) {
	st := &agentctl.Status{Connected: true, Connections: 3, Events: 99, NotifyOpen: 2, NotifyAnswer: 5, Rejected: []string{"r"},
		Lost: 7, Actions: 4, InForce: []agentctl.InForce{{Action: "throttle"}, {Action: "throttle"}},
		ActionStats: []agentctl.ActionStat{{Action: "kill-process", Count: 3, Failed: 1, P50: 2 * time.Millisecond, P99: 8 * time.Millisecond}},
		Containers: []ContainerStatus{
			{Container: event.Container{ID: "c1", Name: "app", Pod: "web", Namespace: "shop"}, Tracked: true, Seen: 10, Emitted: 8, Dropped: 2},
			{Container: event.Container{ID: "c2", Name: `we"ird`, Pod: "web", Namespace: "shop"}},
		},
		Outputs: []agentctl.OutputStatus{{Name: "events", LostLines: 12, Rotations: 2, Bytes: 4096, Error: "no space left on device"},
			{Name: "decisions"}},
		AuditLost: 6, AuditFull: true, AuditHead: &agentctl.AuditHead{Index: 41, Segment: 2, Hash: "ab12"}}
	var b bytes.Buffer
	writeMetrics(&b, st)
	out := b.String()
	for _, want := range []string{
		"vigil_runtime_connected 1\n",
		"vigil_runtime_connections_total 3\n",
		"vigil_events_total 99\n",
		"vigil_seccomp_notify_fds 2\n",
		"vigil_seccomp_notify_decisions_total 5\n",
		"vigil_containers_rejected_total 1\n",
		`vigil_container_tracked{namespace="shop",pod="web",container="app",id="c1"} 1` + "\n",
		`vigil_container_tracked{namespace="shop",pod="web",container="we\"ird",id="c2"} 0` + "\n",
		`vigil_container_syscalls_seen_total{namespace="shop",pod="web",container="app",id="c1"} 10` + "\n",
		`vigil_container_records_emitted_total{namespace="shop",pod="web",container="app",id="c1"} 8` + "\n",
		`vigil_container_records_dropped_total{namespace="shop",pod="web",container="app",id="c1"} 2` + "\n",
		"# TYPE vigil_container_records_dropped_total counter\n",
		"vigil_records_lost_total 7\n",
		"vigil_audit_head_index 41\n",
		`vigil_audit_head_info{hash="ab12"} 1` + "\n",
		`vigil_actions_in_force{action="throttle"} 2` + "\n",
		`vigil_action_runs_total{action="kill-process"} 3` + "\n",
		`vigil_action_failures_total{action="kill-process"} 1` + "\n",
		`vigil_action_latency_seconds{action="kill-process",quantile="0.99"} 0.008` + "\n",
		"vigil_audit_lost_records_total 6\n",
		"vigil_audit_disk_full 1\n",
		`vigil_output_lost_lines_total{output="events"} 12` + "\n",
		`vigil_output_lost_lines_total{output="decisions"} 0` + "\n",
		`vigil_output_writable{output="events"} 0` + "\n",
		`vigil_output_writable{output="decisions"} 1` + "\n",
		`vigil_output_rotations_total{output="events"} 2` + "\n",
		`vigil_output_bytes_total{output="events"} 4096` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(out, `vigil_container_syscalls_seen_total{namespace="shop",pod="web",container="we`) {
		t.Error("counters exported for an untracked container")
	}
}
