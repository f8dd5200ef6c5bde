package replay

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name (or, with -update, writes it).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// Rules of the tests of text output, kept apart from the embedded default
// rules (whose count and messages change).
const (
	hostsRule = `
  - rule: opens-hosts
    class: fs-escape
    severity: low
    desc: test rule
    message: "{comm} opens {path}"
    syscalls: [openat]
    when: {path: /etc/hosts}
`
	metadataRule = `
  - rule: metadata
    class: network
    severity: high
    desc: test rule
    message: "{comm} connects to {addr}"
    syscalls: [connect]
    when: {ip: 169.254.169.254}
`
	ncRule = `
  - rule: runs-nc
    class: network
    severity: medium
    desc: test rule
    message: "{comm} runs {path}"
    syscalls: [execve]
    when: {path: "*/nc"}
`
)

// scene is a node's log: the agent's start, a web container whose run the
// rules of liveRules flag (with the verdicts reached live, a gap and an
// action), a database container with a lifecycle record, a cgroup that
// 'vigil trace' recorded without a container id, and a policy change.
func scene(t *testing.T, liveRules string) string {
	t.Helper()
	web := suspicious(t)
	db := &event.Container{ID: "77aa9c0d1e2f30415263748596a7b8c9", Name: "db", Pod: "db-0", Namespace: "prod", Image: "pg:16"}
	dbEvs := events(t, 5001, db, []call{
		{pid: 1, comm: "postgres", name: "openat", path: "/var/lib/postgresql/data/base", ret: 4},
		{pid: 1, comm: "postgres", name: "read", ret: 8192, arg0: 4},
	})
	bare := events(t, 82, nil, []call{{pid: 900, comm: "sh", name: "execve", path: "/bin/true", argv: []string{"true"}}})
	eng, err := NewEngine([]string{liveRules}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	return writeLog(t, func(w *audit.Writer) {
		mustAppend(t, w, audit.KindAgent, 0, "", audit.Agent{Event: "start", Version: "test"})
		mustAppend(t, w, audit.KindLifecycle, 5001, db.ID, map[string]any{"event": "start", "pod": "db-0", "namespace": "prod"})
		for _, evs := range [][]event.Event{web, dbEvs, bare} {
			for i := range evs {
				ev := &evs[i]
				mustAppendEvent(t, w, ev)
				for _, v := range eng.Observe(ev) {
					mustAppend(t, w, audit.KindVerdict, ev.CgroupID, v.Container.ID, v)
				}
			}
		}
		if err := w.AppendGap(5000, web[0].Container.ID, 9, 3); err != nil {
			t.Fatal(err)
		}
		mustAppend(t, w, audit.KindAction, 5000, web[0].Container.ID, map[string]any{"action": "throttle", "cpu_shares": 2})
		mustAppend(t, w, audit.KindPolicy, 0, "", map[string]any{"rules": 3})
	})
}

func TestPrint(t *testing.T) {
	live := ruleFile(t, "rules:"+hostsRule+metadataRule)
	dir := scene(t, live)
	other := ruleFile(t, "rules:"+hostsRule+ncRule)
	cases := []struct {
		name     string
		flt      audit.Filter
		detect   bool
		rules    []string
		top      int
		verified *audit.Report
	}{
		{"timeline", audit.Filter{ContainerID: "3f2a"}, false, nil, 40, nil},
		{"timeline-top", audit.Filter{ContainerID: "3f2a"}, false, nil, 1, nil},
		{"timeline-same", audit.Filter{ContainerID: "3f2a"}, true, []string{live}, 40,
			&audit.Report{FirstIndex: 1, LastIndex: 30, KeyID: "e9fbd12043b6bca9", Head: "8a7bb7a9", LossRecords: 1, LostRecords: 5}},
		{"timeline-different", audit.Filter{ContainerID: "3f2a"}, true, []string{other}, 40, nil},
		{"timeline-cgroup", audit.Filter{CgroupID: 82}, false, nil, 40, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var eng *detector.Engine
			if tc.detect {
				e, err := NewEngine(tc.rules, true, nil)
				if err != nil {
					t.Fatal(err)
				}
				eng = e
			}
			tl, err := Build(dir, tc.flt, eng)
			if err != nil {
				t.Fatal(err)
			}
			tl.Verified = tc.verified
			if tc.verified == nil {
				tl.Unverified = "not verified: no key (test)"
			}
			var out bytes.Buffer
			tl.Print(&out, tc.top)
			golden(t, tc.name+".golden", out.Bytes())
		})
	}
}

func TestListContainers(t *testing.T) {
	var out bytes.Buffer
	if err := ListContainers(scene(t, ruleFile(t, "rules:"+metadataRule)), &out); err != nil {
		t.Fatal(err)
	}
	golden(t, "containers.golden", out.Bytes())

	out.Reset()
	dir := writeLog(t, func(w *audit.Writer) {
		mustAppend(t, w, audit.KindAgent, 0, "", audit.Agent{Event: "start", Version: "test"})
	})
	if err := ListContainers(dir, &out); err == nil || !strings.Contains(err.Error(), "no container records") {
		t.Fatalf("a log of no container: error %v", err)
	}
}
