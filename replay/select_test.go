package replay

import (
	"reflect"
	"testing"
	"time"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/event"
)

func TestSpecParse(t *testing.T) {
	now := time.Date(2026, 11, 28, 22, 0, 0, 0, time.UTC)
	nr := func(name string) int32 {
		n, ok := event.SyscallNr(name)
		if !ok {
			t.Fatalf("no syscall %s", name)
		}
		return int32(n)
	}
	cases := []struct {
		name    string
		spec    Spec
		want    audit.Filter
		pod     bool
		wantErr string
	}{
		{"empty", Spec{}, audit.Filter{}, false, ""},
		{"container, cgroup, index", Spec{ContainerID: "3f2a", CgroupID: 7, FromIndex: 42}, audit.Filter{ContainerID: "3f2a", CgroupID: 7, FromIndex: 42}, false, ""},
		{"times", Spec{Since: "2026-11-28T21:00:00Z", Until: "1764367200"},
			audit.Filter{Since: time.Date(2026, 11, 28, 21, 0, 0, 0, time.UTC), Until: time.Unix(1764367200, 0)}, false, ""},
		{"a duration ago", Spec{Since: "15m"}, audit.Filter{Since: now.Add(-15 * time.Minute)}, false, ""},
		{"syscalls alone select events", Spec{Syscalls: "execve, connect,"},
			audit.Filter{Syscalls: []int32{nr("execve"), nr("connect")}, Kinds: []audit.Kind{audit.KindEvent}}, false, ""},
		{"syscalls and kinds", Spec{Syscalls: "execve", Kinds: "event,gap"},
			audit.Filter{Syscalls: []int32{nr("execve")}, Kinds: []audit.Kind{audit.KindEvent, audit.KindGap}}, false, ""},
		{"verdicts", Spec{Verdicts: true}, audit.Filter{Kinds: []audit.Kind{audit.KindVerdict, audit.KindAction}}, false, ""},
		{"pod", Spec{Pod: "prod/shop-1"}, audit.Filter{}, true, ""},
		{"a bad time", Spec{Until: "yesterday"}, audit.Filter{}, false,
			`--until "yesterday": want an RFC 3339 time (2026-11-28T21:00:00Z), unix seconds, or a duration ago (15m)`},
		{"a negative duration", Spec{Since: "-5m"}, audit.Filter{}, false,
			`--since "-5m": want an RFC 3339 time (2026-11-28T21:00:00Z), unix seconds, or a duration ago (15m)`},
		{"an unknown syscall", Spec{Syscalls: "execve,nosuch"}, audit.Filter{}, false,
			`--syscall "nosuch": unknown syscall in the ` + string(event.NativeABI()) + ` ABI`},
		{"an unknown kind", Spec{Kinds: "event,nosuch"}, audit.Filter{}, false, "--kind: "},
		{"verdicts and kinds", Spec{Verdicts: true, Kinds: "event"}, audit.Filter{}, false, "--verdicts and --kind: give one of them"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := tc.spec.Parse(now)
			if tc.wantErr != "" {
				if err == nil || len(err.Error()) < len(tc.wantErr) || err.Error()[:len(tc.wantErr)] != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(sel.Filter, tc.want) {
				t.Errorf("filter %+v, want %+v", sel.Filter, tc.want)
			}
			if (sel.pod != nil) != tc.pod {
				t.Errorf("pod matcher %v, want %v", sel.pod != nil, tc.pod)
			}
		})
	}
}

func TestSelectionMatchesPods(t *testing.T) {
	web := &event.Container{ID: "aaaa", Pod: "shop-1", Namespace: "prod"}
	stage := &event.Container{ID: "bbbb", Pod: "shop-1", Namespace: "stage"}
	ev := func(c *event.Container) *audit.Record {
		return &audit.Record{Kind: audit.KindEvent, ContainerID: c.ID, Event: &event.Event{Container: c}}
	}
	body := func(kind audit.Kind, id, json string) *audit.Record {
		return &audit.Record{Kind: kind, ContainerID: id, Body: []byte(json)}
	}
	// in order: what a match learns from one record serves the next ones
	records := []struct {
		name string
		r    *audit.Record
		want map[string]bool // pod spec -> match
	}{
		{"an action before anything names the pod", body(audit.KindAction, "aaaa", `{"action":"kill"}`),
			map[string]bool{"shop-1": false, "prod/shop-1": false}},
		{"an event of prod/shop-1", ev(web), map[string]bool{"shop-1": true, "prod/shop-1": true, "stage/shop-1": false, "shop": false}},
		{"an action of that container", body(audit.KindAction, "aaaa", `{"action":"kill"}`), map[string]bool{"shop-1": true, "stage/shop-1": false}},
		{"a lifecycle record names stage/shop-1", body(audit.KindLifecycle, "bbbb", `{"pod":"shop-1","namespace":"stage"}`),
			map[string]bool{"shop-1": true, "stage/shop-1": true, "prod/shop-1": false}},
		{"a verdict names its container", body(audit.KindVerdict, "cccc", `{"container":{"id":"cccc","pod":"db-0","namespace":"prod"}}`),
			map[string]bool{"db-0": true, "shop-1": false}},
		{"an event of stage/shop-1", ev(stage), map[string]bool{"shop-1": true, "stage/shop-1": true}},
		{"a record of no container", body(audit.KindPolicy, "", `{}`), map[string]bool{"shop-1": false}},
	}
	// every selection sees every record, in order, as in a scan
	for _, pod := range []string{"shop-1", "prod/shop-1", "stage/shop-1", "shop", "db-0"} {
		sel, err := Spec{Pod: pod}.Parse(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, rc := range records {
			got := sel.Match(rc.r)
			if want, ok := rc.want[pod]; ok && got != want {
				t.Errorf("%s: --pod %s matches %v, want %v", rc.name, pod, got, want)
			}
		}
	}
	if sel, _ := (Spec{}).Parse(time.Now()); !sel.Match(body(audit.KindPolicy, "", `{}`)) {
		t.Error("a selection without a pod does not match a record")
	}
}
