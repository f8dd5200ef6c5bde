package replay

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/event"
)

// tree renders a process tree on one line: "pid comm", its execs and exit
// code, and its children in parentheses; roots are separated by "; ".
func tree(ps []*Process) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		s := fmt.Sprintf("%d %s", p.PID, p.Comm)
		for _, x := range p.Execs {
			s += " exec=" + x.Path
			if x.Errno != "" {
				s += ":" + x.Errno
			}
		}
		if p.Exit != nil {
			s += fmt.Sprintf(" exit=%d", *p.Exit)
		}
		if len(p.Children) > 0 {
			s += " (" + tree(p.Children) + ")"
		}
		parts[i] = s
	}
	return strings.Join(parts, "; ")
}

func TestBuildProcessTree(t *testing.T) {
	cases := []struct {
		name  string
		calls []call
		want  string
	}{
		{"fork, exec, exit", []call{
			{pid: 1, comm: "init", name: "clone", ret: 100},
			{pid: 100, comm: "init", name: "execve", path: "/bin/app", argv: []string{"app", "-v"}},
			{pid: 100, comm: "app", name: "exit_group", arg0: 0x103, noret: true},
		}, "1 init (100 app exec=/bin/app exit=3)"},
		{"the child runs before its parent's fork returns", []call{
			{pid: 100, comm: "app", name: "getpid", ret: 100},
			{pid: 1, comm: "init", name: "clone", ret: 100},
		}, "1 init (100 app)"},
		{"a failed fork links nothing", []call{
			{pid: 1, comm: "init", name: "clone", ret: -11},
			{pid: 100, comm: "app", name: "getpid", ret: 100},
		}, "1 init; 100 app"},
		{"a parent outside the log", []call{
			{pid: 100, comm: "sh", name: "clone3", ret: 101},
			{pid: 101, comm: "ls", name: "getpid", ret: 101},
		}, "100 sh (101 ls)"},
		{"children in the order they were first seen", []call{
			{pid: 1, comm: "init", name: "clone", ret: 10},
			{pid: 1, comm: "init", name: "clone", ret: 20},
			{pid: 20, comm: "b", name: "clone", ret: 30},
			{pid: 10, comm: "a", name: "getpid", ret: 10},
			{pid: 30, comm: "c", name: "getpid", ret: 30},
		}, "1 init (20 b (30 c); 10 a)"},
		{"a fork that names the forking process itself", []call{
			{pid: 5, comm: "x", name: "clone", ret: 5},
		}, "5 x"},
		{"failed execs are kept with their errno", []call{
			{pid: 7, comm: "sh", name: "execve", path: "/usr/local/bin/tool", ret: -2},
			{pid: 7, comm: "sh", name: "execve", path: "/usr/bin/tool"},
		}, "7 sh exec=/usr/local/bin/tool:ENOENT exec=/usr/bin/tool"},
		{"an exit that returned is no exit", []call{
			{pid: 7, comm: "sh", name: "exit_group", arg0: 1, ret: -22},
		}, "7 sh"},
		{"roots in the order they were first seen", []call{
			{pid: 9, comm: "late", name: "getpid", ret: 9},
			{pid: 3, comm: "early", name: "clone", ret: 9},
			{pid: 2, comm: "root", name: "getpid", ret: 2},
		}, "3 early (9 late); 2 root"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs := events(t, 5000, nil, tc.calls)
			dir := writeLog(t, func(w *audit.Writer) {
				for i := range evs {
					mustAppendEvent(t, w, &evs[i])
				}
			})
			tl, err := Build(dir, audit.Filter{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := tree(tl.Processes); got != tc.want {
				t.Fatalf("process tree\n got %s\nwant %s", got, tc.want)
			}
			if tl.Events != len(evs) || tl.Records != len(evs) || tl.Detect != nil {
				t.Fatalf("%d events, %d records, detect %v; want %d, %d, none", tl.Events, tl.Records, tl.Detect, len(evs), len(evs))
			}
		})
	}
}

func TestBuildFilesAndPeers(t *testing.T) {
	evs := events(t, 5000, nil, []call{
		{pid: 1, comm: "app", name: "openat", path: "/etc/hosts", ret: 3},
		{pid: 1, comm: "app", name: "openat", path: "/etc/passwd", ret: 3},
		{pid: 1, comm: "app", name: "openat", path: "/etc/passwd", ret: -13},
		{pid: 1, comm: "app", name: "renameat2", path: "/tmp/a", path2: "/etc/passwd"},
		{pid: 1, comm: "app", name: "connect", addr: "10.0.0.1:53"},
		{pid: 1, comm: "app", name: "connect", addr: "10.0.0.1:53", ret: -111},
		{pid: 1, comm: "app", name: "connect", addr: "169.254.169.254:80"},
	})
	dir := writeLog(t, func(w *audit.Writer) {
		for i := range evs {
			mustAppendEvent(t, w, &evs[i])
		}
	})
	tl, err := Build(dir, audit.Filter{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	uses := func(us []*Use) []string {
		var out []string
		for _, u := range us {
			var ops []string
			for op, n := range u.Ops {
				ops = append(ops, fmt.Sprintf("%s×%d", op, n))
			}
			sort.Strings(ops)
			out = append(out, fmt.Sprintf("%s %s failed=%d", u.Name, strings.Join(ops, ","), u.Errors))
		}
		return out
	}
	// most used first, then by name
	wantFiles := []string{"/etc/passwd openat×2,renameat2(target)×1 failed=1", "/etc/hosts openat×1 failed=0", "/tmp/a renameat2×1 failed=0"}
	if got := uses(tl.Files); !reflect.DeepEqual(got, wantFiles) {
		t.Errorf("files\n got %q\nwant %q", got, wantFiles)
	}
	wantPeers := []string{"10.0.0.1:53 connect×2 failed=1", "169.254.169.254:80 connect×1 failed=0"}
	if got := uses(tl.Peers); !reflect.DeepEqual(got, wantPeers) {
		t.Errorf("peers\n got %q\nwant %q", got, wantPeers)
	}
	if tl.Syscalls["openat"] != 3 || tl.Syscalls["connect"] != 3 || tl.Syscalls["renameat2"] != 1 {
		t.Errorf("syscalls %v", tl.Syscalls)
	}
}

func TestBuildSelects(t *testing.T) {
	web := &event.Container{ID: "3f2a9c0d1e2f", Name: "web", Pod: "shop-1", Namespace: "prod", Image: "shop/web:1"}
	db := &event.Container{ID: "3f77aa000000", Name: "db", Pod: "db-0", Namespace: "prod", Image: "pg:16"}
	webEvs := events(t, 5000, web, []call{{pid: 1, comm: "web", name: "getpid", ret: 1}, {pid: 1, comm: "web", name: "getpid", ret: 1}})
	dbEvs := events(t, 5001, db, []call{{pid: 1, comm: "db", name: "getpid", ret: 1}})
	dir := writeLog(t, func(w *audit.Writer) {
		mustAppend(t, w, audit.KindAgent, 0, "", audit.Agent{Event: "start", Version: "test"})
		for i := range webEvs {
			mustAppendEvent(t, w, &webEvs[i])
		}
		for i := range dbEvs {
			mustAppendEvent(t, w, &dbEvs[i])
		}
		mustAppend(t, w, audit.KindAction, 5000, web.ID, map[string]any{"action": "throttle"})
		mustAppend(t, w, audit.KindLifecycle, 5001, db.ID, map[string]any{"event": "stop"})
	})
	cases := []struct {
		name       string
		flt        audit.Filter
		containers []string
		cgroups    []uint64
		records    int
		events     int
		other      []audit.Kind
	}{
		{"one container by prefix", audit.Filter{ContainerID: "3f2a"}, []string{web.ID}, []uint64{5000}, 3, 2, []audit.Kind{audit.KindAction}},
		{"one cgroup", audit.Filter{CgroupID: 5001}, []string{db.ID}, []uint64{5001}, 2, 1, []audit.Kind{audit.KindLifecycle}},
		{"a prefix of both", audit.Filter{ContainerID: "3f"}, []string{web.ID, db.ID}, []uint64{5000, 5001}, 5, 3, []audit.Kind{audit.KindAction, audit.KindLifecycle}},
		{"none", audit.Filter{ContainerID: "99"}, nil, nil, 0, 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tl, err := Build(dir, tc.flt, nil)
			if err != nil {
				t.Fatal(err)
			}
			var other []audit.Kind
			for _, o := range tl.Other {
				other = append(other, o.Kind)
			}
			if !reflect.DeepEqual(tl.Containers, tc.containers) || !reflect.DeepEqual(tl.CgroupIDs, tc.cgroups) ||
				tl.Records != tc.records || tl.Events != tc.events || !reflect.DeepEqual(other, tc.other) {
				t.Fatalf("containers %v cgroups %v, %d records, %d events, other %v; want %v %v, %d, %d, %v",
					tl.Containers, tl.CgroupIDs, tl.Records, tl.Events, other, tc.containers, tc.cgroups, tc.records, tc.events, tc.other)
			}
			if tc.events > 0 && tl.Container == nil {
				t.Fatal("no container metadata from the events")
			}
		})
	}
}
