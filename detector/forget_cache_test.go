package detector

import (
	"testing"

	"vigil.dev/vigil/event"
)

// TestForgetThenSameCgroup: the shard remembers the state of the cgroup
// of its last event; a Forget of that cgroup must drop it too, so the
// cgroup's next event starts afresh (here: before its first exec again).
func TestForgetThenSameCgroup(t *testing.T) {
	e := newEngine(t, Config{FromFirstExec: true, Shards: 1})
	bpfEv := func(seq int) *event.Event { return ev(t, seq, "bpf", func(e *event.Event) { e.Ret = -1 }) }
	e.Observe(ev(t, 1, "execve", func(e *event.Event) { e.Path = "/bin/loader" }))
	if vs := e.Observe(bpfEv(2)); len(vs) != 1 || vs[0].Rule != "bpf-syscall" {
		t.Fatalf("after exec: %d verdicts, want bpf-syscall", len(vs))
	}
	e.Forget(7)
	if vs := e.Observe(bpfEv(3)); len(vs) != 0 {
		t.Fatalf("forgotten cgroup, no exec since: %s", vs[0].Rule)
	}
	e.Observe(ev(t, 4, "execve", func(e *event.Event) { e.Path = "/bin/loader" }))
	if vs := e.Observe(bpfEv(5)); len(vs) != 1 {
		t.Fatalf("after a new exec: %d verdicts, want 1", len(vs))
	}
}
