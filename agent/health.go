package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"vigil.dev/vigil/bpf"
)

// staleAfter is how long a loop may make no progress before /healthz
// fails.
const staleAfter = 20 * time.Second

// heartbeat says whether the agent's two loops make progress: the
// pipeline's worker answers a sync (sent every second), and the tracer's
// reader hands over batches while the tracer writes records for it. An
// idle node, whose tracer writes nothing, is alive.
type heartbeat struct {
	mu    sync.Mutex
	stale time.Duration
	// synced is when the worker last answered; batch when the reader last
	// handed over a batch; readerDone that the reader returned.
	synced     time.Time
	batch      time.Time
	readerDone bool
	// offered is the tracer's count of records written or dropped for a
	// full ring, per cgroup, at the last tick; lastTick that tick's time;
	// waiting when a tick first saw new records offered with no batch
	// since the tick before (zero while none wait).
	offered  map[uint64]uint64
	lastTick time.Time
	waiting  time.Time
}

func newHeartbeat(now time.Time, stale time.Duration) *heartbeat {
	return &heartbeat{stale: stale, synced: now, lastTick: now}
}

// handed records a batch handed over by the reader (once per drain of the
// ring, not per event).
func (h *heartbeat) handed(now time.Time) {
	h.mu.Lock()
	h.batch = now
	h.mu.Unlock()
}

// sync records an answer of the pipeline's worker.
func (h *heartbeat) sync(now time.Time) {
	h.mu.Lock()
	h.synced = now
	h.mu.Unlock()
}

// stopped records that the tracer's reader returned.
func (h *heartbeat) stopped() {
	h.mu.Lock()
	h.readerDone = true
	h.mu.Unlock()
}

// tick takes the tracer's count of records offered to the ring (written,
// or dropped because it was full) per tracked cgroup. Only the growth of
// a cgroup already seen at the last tick counts: a cgroup tracked anew
// (or kept by a pinned tracer across a restart) brings its old count.
func (h *heartbeat) tick(now time.Time, offered map[uint64]uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	grew := false
	for cg, n := range offered {
		if prev, ok := h.offered[cg]; ok && n > prev {
			grew = true
		}
	}
	switch {
	case h.batch.After(h.lastTick):
		h.waiting = time.Time{} // the reader took records since the last tick
	case grew && h.waiting.IsZero():
		h.waiting = now
	}
	h.offered, h.lastTick = offered, now
}

// check is nil while both loops make progress.
func (h *heartbeat) check(now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	if h.readerDone {
		errs = append(errs, errors.New("the tracer's reader stopped"))
	} else if !h.waiting.IsZero() && now.Sub(h.waiting) > h.stale {
		errs = append(errs, fmt.Errorf("the tracer wrote records %s ago that its reader has not taken", now.Sub(h.waiting).Round(time.Second)))
	}
	if d := now.Sub(h.synced); d > h.stale {
		errs = append(errs, fmt.Errorf("the pipeline's worker has not answered for %s", d.Round(time.Second)))
	}
	return errors.Join(errs...)
}

// heartbeatLoop syncs with the pipeline's worker every second and reads
// the tracer's counters every second (longer with many containers: see
// counterPeriod) until ctx is done (also for the registry and the
// samples). A stuck worker blocks only the
// sync goroutine; the reader's ticks go on.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				a.pl.Sync()
				a.hb.sync(time.Now())
			}
		}
	}()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a.readCounters(now)
			t.Reset(counterPeriod(time.Since(now)))
		}
	}
}

// counterPeriod is the wait before the next read of the tracer's counters
// after one that took took: a second, or longer when the read took more
// than 1/counterShare of it (the tracer reads each tracked cgroup's
// counters on its own, about 20 µs each here: with 10,000 containers a
// read a second would take a fifth of a core), up to half of staleAfter
// (the heartbeat's ticks must come sooner than that).
func counterPeriod(took time.Duration) time.Duration {
	return min(max(time.Second, counterShare*took), staleAfter/2)
}

// counterShare: the counters' reads take at most 1/20 of the agent's time
// on one core.
const counterShare = 20

// readCounters reads the tracer's counters of every tracked cgroup once:
// the heartbeat's offered records, the registry's last counters and the
// throttled counts the samples carry.
func (a *Agent) readCounters(now time.Time) {
	counters, err := a.mon.Tracked()
	if err != nil {
		return
	}
	offered := make(map[uint64]uint64, len(counters))
	throttled := make(map[uint64]uint64, len(counters))
	for cg, n := range counters {
		offered[cg] = n.Emitted + n.Dropped - min(n.Throttled, n.Dropped)
		if n.Throttled > 0 {
			throttled[cg] = n.Throttled
		}
	}
	a.hb.tick(now, offered)
	a.throttled.Store(&throttled)
	if a.smp != nil {
		a.smp.counters(now, counters)
	}
	if a.reg != nil {
		a.reg.RefreshWith(counters)
	}
	if a.sweeps++; a.sweeps%auditSweepEvery == 0 {
		a.sweepAudit(counters)
	}
}

// auditSweepEvery is how many heartbeats pass between two sweeps of the
// audit writer's per-cgroup state.
const auditSweepEvery = 10

// sweepAudit forgets the audit writer's counters of cgroups that the
// tracer no longer follows and did not follow at the last sweep either:
// those an audit log reopened at start carried over from containers that
// are gone (a container that stops is forgotten by the pipeline; one that
// lives on across a restart is still tracked). Two sweeps apart, so that a
// container finishing just now is left to the pipeline.
func (a *Agent) sweepAudit(tracked map[uint64]bpf.Counters) {
	if a.aud == nil {
		return
	}
	stale := map[uint64]bool{}
	for _, cg := range a.aud.Held() {
		if _, live := tracked[cg]; live || cg == 0 {
			continue
		}
		if a.staleAudit[cg] {
			a.aud.Forget(cg)
		} else {
			stale[cg] = true
		}
	}
	a.staleAudit = stale
}

// ready is nil when the agent serves its purpose: its tracer reads, the
// runtime reaches it (over NRI, or through the OCI hook on the control
// socket with --hook-only), and its outputs can write.
func (a *Agent) ready() error {
	var errs []error
	if !a.tracing.Load() {
		errs = append(errs, errors.New("the tracer's reader is not running"))
	}
	if a.cfg.HookOnly {
		if !a.serving.Load() {
			errs = append(errs, fmt.Errorf("hook-only: the control socket %s is not serving registrations", a.cfg.ControlSocket))
		}
	} else if connected, _ := a.reg.Connected(); !connected {
		errs = append(errs, errors.New("not connected to the runtime over NRI (without NRI, run with --hook-only and the OCI hook)"))
	}
	if err := a.outputsHealthy(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
