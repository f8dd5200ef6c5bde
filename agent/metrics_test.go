package agent

import (
	"bytes"
	"strings"
	"testing"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/event"
)

func TestWriteMetrics(t *testing.T) {
	st := &agentctl.Status{Connected: true, Connections: 3, Events: 99, NotifyOpen: 2, NotifyAnswer: 5, Rejected: []string{"r"},
		Containers: []ContainerStatus{
			{Container: event.Container{ID: "c1", Name: "app", Pod: "web", Namespace: "shop"}, Tracked: true, Seen: 10, Emitted: 8, Dropped: 2},
			{Container: event.Container{ID: "c2", Name: `we"ird`, Pod: "web", Namespace: "shop"}},
		}}
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
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(out, `vigil_container_syscalls_seen_total{namespace="shop",pod="web",container="we`) {
		t.Error("counters exported for an untracked container")
	}
}
