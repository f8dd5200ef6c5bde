package detector

import (
	"encoding/json"
	"sync"
	"testing"

	"vigil.dev/vigil/event"
)

func TestObserveAllocatesNothingForUnmatchedEvents(t *testing.T) {
	e := newEngine(t, Config{})
	for _, tc := range []struct {
		name string
		ev   *event.Event
	}{
		{"read (no rule)", ev(t, 1, "read", nil)},
		{"openat of a normal path", ev(t, 2, "openat", func(e *event.Event) { e.Path = "/usr/lib/x86_64-linux-gnu/libc.so.6" })},
		{"connect to a web port", ev(t, 3, "connect", func(e *event.Event) { e.Addr = inet("10.1.2.3", 443) })},
		{"mprotect read-only", ev(t, 4, "mprotect", func(e *event.Event) { e.Args[2] = 1 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.Observe(tc.ev) // create the cgroup's state
			if n := testing.AllocsPerRun(200, func() { e.Observe(tc.ev) }); n != 0 {
				t.Errorf("%v allocations per event", n)
			}
		})
	}
}

func TestVerdictIDsAreStable(t *testing.T) {
	stream := func() []Verdict {
		e := newEngine(t, Config{})
		var out []Verdict
		for i, name := range []string{"bpf", "capset", "read", "setns", "ptrace"} {
			out = append(out, e.Observe(ev(t, i+1, name, func(e *event.Event) {
				e.Args[0] = 16
				if name == "capset" {
					e.Ret = -1 // EPERM: capset fires on a refused request
				}
			}))...)
		}
		return out
	}
	a, b := stream(), stream()
	if len(a) != 4 || len(b) != 4 {
		t.Fatalf("%d and %d verdicts, want 4", len(a), len(b))
	}
	seen := map[string]bool{}
	for i := range a {
		if a[i].ID != b[i].ID {
			t.Errorf("verdict %d: id %s then %s", i, a[i].ID, b[i].ID)
		}
		if seen[a[i].ID] {
			t.Errorf("id %s repeats", a[i].ID)
		}
		seen[a[i].ID] = true
	}
}

func TestVerdictJSONLine(t *testing.T) {
	e := newEngine(t, Config{})
	c := &event.Container{ID: "abc", Name: "web", Image: "nginx:1"}
	vs := e.Observe(ev(t, 9, "openat", func(e *event.Event) {
		e.Path, e.Ret, e.Container = "/proc/1/root/etc/shadow", -13, c
	}))
	if len(vs) != 1 {
		t.Fatalf("%d verdicts", len(vs))
	}
	b, err := vs[0].MarshalJSONLine()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Verdict struct {
			ID        string           `json:"id"`
			Cgroup    uint64           `json:"cgroup"`
			Container *event.Container `json:"container"`
			Class     string           `json:"class"`
			Severity  string           `json:"severity"`
			Rule      string           `json:"rule"`
			Score     float64          `json:"score"`
			Message   string           `json:"message"`
			Evidence  []struct {
				Seq     uint64 `json:"seq"`
				Syscall string `json:"syscall"`
				Path    string `json:"path"`
				Errno   string `json:"errno"`
			} `json:"evidence"`
		} `json:"verdict"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	v := got.Verdict
	if v.ID == "" || v.Cgroup != 7 || v.Container == nil || v.Container.Image != "nginx:1" || v.Class != "fs-escape" ||
		v.Severity != "high" || v.Rule != "host-root-via-proc" || v.Score <= 0 || v.Message == "" ||
		len(v.Evidence) != 1 || v.Evidence[0].Seq != 9 || v.Evidence[0].Syscall != "openat" ||
		v.Evidence[0].Path != "/proc/1/root/etc/shadow" || v.Evidence[0].Errno != "EACCES" {
		t.Errorf("verdict line: %s", b)
	}
	var back Verdict
	if err := json.Unmarshal(b[len(`{"verdict":`):len(b)-1], &back); err != nil || back.Severity != High {
		t.Errorf("verdict does not read back: %v %v", err, back.Severity)
	}
}

// TestEvidenceIsCopied checks that a verdict keeps nothing of the event the
// tracer reuses.
func TestEvidenceIsCopied(t *testing.T) {
	e := newEngine(t, Config{})
	buf := []byte("/proc/1/root/x")
	x := ev(t, 1, "openat", nil)
	x.Path = string(buf) // a string the caller owns
	x.Argv = []string{"a"}
	vs := e.Observe(x)
	x.Path, x.Argv[0], x.Args[0] = "/changed", "changed", 99
	if vs[0].Evidence[0].Path != "/proc/1/root/x" || vs[0].Evidence[0].Args[0] != 0 {
		t.Errorf("evidence follows the reused event: %+v", vs[0].Evidence[0])
	}
}

func TestConcurrentObserve(t *testing.T) {
	e := newEngine(t, Config{Shards: 4})
	var wg sync.WaitGroup
	counts := make([]int, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				x := ev(t, i+1, []string{"read", "bpf", "openat", "capset"}[i%4], func(e *event.Event) { e.Path, e.Ret = "/etc/hosts", -1 })
				x.CgroupID = uint64(g)
				x.PID = uint32(i) // a new process each time: no throttling
				counts[g] += len(e.Observe(x))
			}
		}(g)
	}
	wg.Wait()
	for g, n := range counts {
		if n != 1000 {
			t.Errorf("goroutine %d: %d verdicts, want 1000", g, n)
		}
	}
	e.Forget(3)
	if n := len(e.shards[3%4].cgs); n != 1 {
		t.Errorf("after Forget the shard holds %d cgroups", n)
	}
}

// TestSelfPIDNotJudged: the engine's own process (the agent, vigil trace)
// loading BPF in a cgroup it traces is not judged; another process running
// the same executable is.
func TestSelfPIDNotJudged(t *testing.T) {
	e := newEngine(t, Config{SelfPID: 4242})
	self := func(seq int, name string, mod func(*event.Event)) *event.Event {
		return ev(t, seq, name, func(e *event.Event) {
			e.PID, e.TID, e.Comm = 4242, 4243, "vigil"
			if mod != nil {
				mod(e)
			}
		})
	}
	for i, x := range []*event.Event{
		self(1, "execve", func(e *event.Event) { e.Path = "/usr/local/bin/vigil" }),
		self(2, "bpf", func(e *event.Event) { e.Args[0] = 5 }), // BPF_PROG_LOAD
		self(3, "bpf", func(e *event.Event) { e.Args[0] = 1 }), // BPF_MAP_LOOKUP_ELEM
		self(4, "perf_event_open", nil),
	} {
		if vs := e.Observe(x); len(vs) != 0 {
			t.Errorf("event %d of the engine's own process: %s", i, vs[0].Rule)
		}
	}
	// the same executable in another process of the container
	e.Observe(ev(t, 5, "execve", func(e *event.Event) { e.PID, e.TID, e.Path = 77, 77, "/usr/local/bin/vigil" }))
	vs := e.Observe(ev(t, 6, "bpf", func(e *event.Event) { e.PID, e.TID, e.Args[0] = 77, 77, 5 }))
	if len(vs) != 1 || vs[0].Rule != "bpf-syscall" {
		t.Errorf("bpf by another process running vigil's executable: %+v, want bpf-syscall", vs)
	}
	// without SelfPID the engine's own bpf is judged like any other
	if vs := newEngine(t, Config{}).Observe(self(7, "bpf", nil)); len(vs) != 1 {
		t.Errorf("no SelfPID: %d verdicts, want 1", len(vs))
	}
}
