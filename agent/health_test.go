package agent

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/rotate"
	"vigil.dev/vigil/plugin"
)

func TestHeartbeat(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		name string
		run  func(h *heartbeat)
		now  int
		want string // "" alive, else a part of the error
	}{
		{"just started", func(h *heartbeat) {}, 5, ""},
		{"idle node, worker answers", func(h *heartbeat) {
			for s := 1; s <= 60; s++ {
				h.sync(at(s))
				h.tick(at(s), map[uint64]uint64{7: 100})
			}
		}, 60, ""},
		{"worker stuck", func(h *heartbeat) { h.sync(at(1)) }, 30, "pipeline's worker has not answered for 29s"},
		{"reader stopped", func(h *heartbeat) { h.sync(at(1)); h.stopped() }, 2, "reader stopped"},
		{"reader keeps up", func(h *heartbeat) {
			for s := 1; s <= 60; s++ {
				h.sync(at(s))
				h.handed(at(s).Add(-time.Millisecond))
				h.tick(at(s), map[uint64]uint64{7: uint64(100 * s)})
			}
		}, 60, ""},
		{"reader stuck while records come", func(h *heartbeat) {
			h.handed(at(0))
			for s := 1; s <= 30; s++ {
				h.sync(at(s))
				h.tick(at(s), map[uint64]uint64{7: uint64(100 * s)})
			}
		}, 30, "records 28s ago that its reader has not taken"},
		{"first record after a quiet hour", func(h *heartbeat) {
			h.handed(at(0))
			for s := 1; s <= 3600; s++ {
				h.sync(at(s))
				n := uint64(100)
				if s >= 3599 {
					n = 101
				}
				if s == 3600 {
					h.handed(at(s).Add(-time.Millisecond))
				}
				h.tick(at(s), map[uint64]uint64{7: n})
			}
		}, 3600, ""},
		{"new cgroup with a pinned count", func(h *heartbeat) {
			for s := 1; s <= 30; s++ {
				h.sync(at(s))
				m := map[uint64]uint64{7: 100}
				if s > 2 {
					m[8] = 5000 // kept by the pinned tracer, read before
				}
				h.tick(at(s), m)
			}
		}, 30, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHeartbeat(t0, staleAfter)
			tc.run(h)
			err := h.check(at(tc.now))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("check: %v, want alive", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("check: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestProbes: /healthz and /readyz in each state the agent can be in.
func TestProbes(t *testing.T) {
	full, err := rotate.Open("/dev/full", rotate.Options{Logf: t.Logf})
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	full.Write([]byte("{}\n"))
	newAgent := func(cfg Config) *Agent {
		a := &Agent{cfg: cfg, log: quietLog(), hb: newHeartbeat(time.Now(), staleAfter)}
		a.reg = plugin.New(plugin.Config{CgroupRoot: t.TempDir()}, &fakeTracer{tracked: map[uint64]bpf.Counters{}}, nopNotifier{}, a.log)
		a.metrics = newMetrics(a.status, BuildInfo{})
		return a
	}
	for _, tc := range []struct {
		name           string
		cfg            Config
		tracing, serve bool
		stale          bool
		health, ready  string // "" ok, else a part of the body
	}{
		{"starting", Config{HookOnly: true}, false, false, false, "", "tracer's reader is not running"},
		{"hook-only, serving", Config{HookOnly: true}, true, true, false, "", ""},
		{"hook-only, control socket gone", Config{HookOnly: true, ControlSocket: "/run/x.sock"}, true, false, false, "", "control socket /run/x.sock is not serving"},
		{"NRI, not connected", Config{}, true, true, false, "", "not connected to the runtime over NRI"},
		{"output cannot write", Config{HookOnly: true, Events: full}, true, true, false, "", "events output /dev/full"},
		{"worker stuck", Config{HookOnly: true}, true, true, true, "pipeline's worker has not answered", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAgent(tc.cfg)
			a.tracing.Store(tc.tracing)
			a.serving.Store(tc.serve)
			if tc.stale {
				a.hb = newHeartbeat(time.Now().Add(-time.Minute), staleAfter)
			}
			srv := httptest.NewServer(a.httpHandler())
			defer srv.Close()
			for path, want := range map[string]string{"/healthz": tc.health, "/readyz": tc.ready} {
				resp, err := http.Get(srv.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				var b strings.Builder
				_, _ = io.Copy(&b, resp.Body)
				resp.Body.Close()
				switch {
				case want == "" && resp.StatusCode != http.StatusOK:
					t.Errorf("%s: %s %q, want ok", path, resp.Status, b.String())
				case want != "" && (resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(b.String(), want)):
					t.Errorf("%s: %s %q, want 503 with %q", path, resp.Status, b.String(), want)
				}
			}
		})
	}
}

// TestReadCountersServesAll: one read of the tracer's counters gives the
// samples each cgroup's throttled count (and the heartbeat and the
// registry theirs).
func TestReadCountersServesAll(t *testing.T) {
	tr := &fakeTracer{tracked: map[uint64]bpf.Counters{
		7: {Seen: 100, Emitted: 90, Dropped: 10, Throttled: 4},
		8: {Seen: 5, Emitted: 5},
	}}
	reg := plugin.New(plugin.Config{}, tr, nil, quietLog())
	a := &Agent{mon: &idleMonitor{fakeTracer: *tr}, reg: reg, hb: newHeartbeat(time.Now(), staleAfter)}
	a.readCounters(time.Now())
	th := a.throttled.Load()
	if th == nil || (*th)[7] != 4 || (*th)[8] != 0 {
		t.Fatalf("throttled counts %v, want cgroup 7: 4 and none for 8", th)
	}
	tr.tracked[7] = bpf.Counters{Seen: 200, Emitted: 180, Dropped: 20, Throttled: 9}
	a.readCounters(time.Now())
	if th := a.throttled.Load(); (*th)[7] != 9 {
		t.Errorf("throttled count of cgroup 7 after a second read: %d, want 9", (*th)[7])
	}
}

// TestSweepAuditForgetsGoneCgroups: the audit writer's counters of cgroups
// the tracer does not follow are forgotten at the second sweep that finds
// them (an audit log reopened at start carries over those of containers
// that are gone); tracked cgroups and the agent's own records stay.
func TestSweepAuditForgetsGoneCgroups(t *testing.T) {
	dir := t.TempDir()
	w, err := audit.Open(audit.Options{Dir: filepath.Join(dir, "log"), KeyFile: filepath.Join(dir, "key"), Fsync: audit.FsyncNever,
		Logf: func(string, ...any) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Append(audit.KindAgent, 0, "", audit.Agent{Event: "start"})
	for cg := uint64(5); cg <= 7; cg++ {
		w.AppendEvent(&event.Event{CgroupID: cg, Seq: 1, Nr: 39})
	}
	held := func() map[uint64]bool {
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		m := map[uint64]bool{}
		for _, cg := range w.Held() {
			m[cg] = true
		}
		return m
	}
	a := &Agent{aud: w}
	tracked := map[uint64]bpf.Counters{5: {}}
	a.sweepAudit(tracked)
	if h := held(); !h[6] || !h[7] {
		t.Fatalf("first sweep forgot %v: a cgroup is forgotten only when two sweeps find it untracked", h)
	}
	a.sweepAudit(tracked)
	if h := held(); h[6] || h[7] || !h[5] || !h[0] {
		t.Errorf("after the second sweep the writer holds %v, want 0 and 5 only", h)
	}
}

func TestCounterPeriod(t *testing.T) {
	for _, tc := range []struct{ took, want time.Duration }{
		{time.Millisecond, time.Second},
		{50 * time.Millisecond, time.Second},
		{200 * time.Millisecond, 4 * time.Second},
		{5 * time.Second, staleAfter / 2},
	} {
		if got := counterPeriod(tc.took); got != tc.want {
			t.Errorf("counterPeriod(%v) = %v, want %v", tc.took, got, tc.want)
		}
	}
}
