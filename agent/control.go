package agent

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/control"

	"vigil.dev/vigil/agentctl"
)

// handle answers one control-socket request.
func (a *Agent) handle(_ context.Context, req agentctl.Request, _ agentctl.Peer) agentctl.Response {
	switch req.Op {
	case agentctl.OpStatus:
		return agentctl.Response{Status: a.status()}
	case agentctl.OpRegister:
		pol, err := a.reg.Register(req)
		if err != nil {
			return agentctl.Response{Error: err.Error()}
		}
		return agentctl.Response{Policy: &pol}
	case agentctl.OpUnregister:
		if req.Container == nil || req.Container.ID == "" {
			return agentctl.Response{Error: "unregister: no container id"}
		}
		if err := a.reg.Unregister(req.Container.ID); err != nil {
			return agentctl.Response{Error: err.Error()}
		}
		return agentctl.Response{}
	case agentctl.OpRelease, agentctl.OpUnfreeze:
		info, err := a.reg.Find(req.Target)
		if err != nil {
			return agentctl.Response{Error: req.Op + ": " + err.Error()}
		}
		t := a.targetOf(info)
		var done []string
		if req.Op == agentctl.OpUnfreeze {
			r, err := a.ctl.Unfreeze(t)
			if err != nil {
				return agentctl.Response{Error: "unfreeze: " + err.Error()}
			}
			done = append(done, describe(r.Action, r.Detail))
		} else {
			rs, err := a.ctl.Release(t)
			for _, r := range rs {
				done = append(done, describe(r.Action, r.Detail))
			}
			if err != nil {
				return agentctl.Response{Error: "release: " + err.Error(), Done: done}
			}
		}
		if len(done) == 0 {
			done = []string{"nothing was in force on " + info.Meta.Name}
		}
		return agentctl.Response{Done: done}
	case agentctl.OpReload:
		changed, err := a.reload(true)
		if err != nil {
			return agentctl.Response{Error: "reload: " + err.Error(), Done: changed}
		}
		return agentctl.Response{Done: changed}
	}
	return agentctl.UnknownOp(req.Op)
}

func describe[A ~string](action A, detail string) string {
	if detail == "" {
		return "undone: " + string(action)
	}
	return fmt.Sprintf("undone: %s (%s)", action, detail)
}

func (a *Agent) status() *agentctl.Status {
	st := &agentctl.Status{Since: a.started}
	st.Connected, st.Connections = a.reg.Connected()
	st.Runtime = a.reg.Runtime()
	// The tracer's counters of every tracked cgroup in one pass, for the
	// containers and the held counts.
	tracked, err := a.mon.Tracked()
	if err != nil {
		tracked = nil
	}
	st.Containers, st.Finished = a.reg.ContainersWith(tracked)
	if a.eng != nil {
		for i := range st.Containers {
			if c := &st.Containers[i]; c.CgroupID != 0 {
				c.Model = a.eng.ModelStatus(c.CgroupID)
			}
		}
	}
	st.Rejected = a.reg.Rejected()
	ps := a.pl.Stats()
	st.Events, st.Verdicts, st.Lost, st.QueueDropped, st.AuditErrors = ps.Events, ps.Verdicts, ps.Lost, ps.QueueDropped, ps.AuditErrors
	st.Gaps, st.QueueDepth, st.HookOnly = ps.Gaps, ps.QueueDepth, a.cfg.HookOnly
	if a.events != nil {
		if err := a.events.Err(); err != nil {
			st.EventsError = err.Error()
		}
	}
	a.outputStatus(st)
	st.NotifyOpen, st.NotifyFds, st.NotifyAnswer = a.server.Stats()
	st.Actions = a.actions.Load()
	for _, s := range a.ctl.InForce() {
		st.InForce = append(st.InForce, inForce(s)...)
	}
	sort.Slice(st.InForce, func(i, j int) bool {
		if st.InForce[i].CgroupID != st.InForce[j].CgroupID {
			return st.InForce[i].CgroupID < st.InForce[j].CgroupID
		}
		return st.InForce[i].Action < st.InForce[j].Action
	})
	st.DecisionP50, st.DecisionP99, st.DeliveryP50, st.DeliveryP99 = ps.DecisionP50, ps.DecisionP99, ps.DeliveryP50, ps.DeliveryP99
	a.actionLat.Range(func(k, v any) bool {
		s := v.(*actionStat)
		st.ActionStats = append(st.ActionStats, agentctl.ActionStat{Action: string(k.(control.Action)), Count: s.lat.Count(),
			Failed: s.failed.Load(), P50: s.lat.Quantile(.5), P99: s.lat.Quantile(.99)})
		return true
	})
	sort.Slice(st.ActionStats, func(i, j int) bool { return st.ActionStats[i].Action < st.ActionStats[j].Action })
	st.Reloads = a.reloads.Load()
	a.reloadMu.Lock()
	st.ReloadError = a.reloadErr
	a.reloadMu.Unlock()
	st.Held = a.held(tracked, err)
	if a.eng != nil {
		ss := a.smp.snapshot()
		st.Sampling = &agentctl.Sampling{Hot: ss.Hot, Suspect: ss.Suspect, Idle: ss.Idle, Budget: a.smp.cfg.Budget,
			FullEvery: a.smp.cfg.Every, IdleEvery: a.smp.cfg.IdleEvery, Samples: ss.Samples, Deferred: ss.Deferred, OldestAge: ss.IdleAge,
			CPUBudget: a.smp.cfg.CPU, CPU: ss.CPU, CPUTime: ss.CPUTime, StatCost: ss.StatCost, FullCost: ss.FullCost,
			FullPeriod: ss.FullPeriod, IdlePeriod: ss.IdlePeriod}
	}
	return st
}

// held counts what the agent holds per container (tracer list, detector,
// audit writer) and its goroutines and fds, so that leaks show.
// tracked is the tracer's list as status read it (err its error).
func (a *Agent) held(tracked map[uint64]bpf.Counters, err error) *agentctl.Held {
	h := &agentctl.Held{Goroutines: runtime.NumGoroutine(), FDs: -1}
	if err == nil {
		h.Tracked = len(tracked)
	}
	if a.eng != nil {
		h.Detector = a.eng.Cgroups()
	}
	if a.aud != nil {
		h.Audit = a.aud.Stats().Cgroups
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		h.FDs = len(fds) - 1 // the directory's own
	}
	return h
}

// ContainerStatus is one container in `vigil status`.
type ContainerStatus = agentctl.ContainerStatus

// inForce lists what one container has in force.
func inForce(s control.State) []agentctl.InForce {
	var out []agentctl.InForce
	add := func(action string, since time.Time, detail string) {
		out = append(out, agentctl.InForce{CgroupID: s.CgroupID, ContainerID: s.ContainerID, Action: action, Since: since, Detail: detail})
	}
	if th := s.Throttle; th != nil {
		add(string(control.ActThrottle), th.Since, fmt.Sprintf("shares %d quota %dus/%dus until %s unless it goes on",
			th.Applied.Shares, th.Applied.QuotaUs, th.Applied.PeriodUs, th.RestoreAt().Format(time.TimeOnly)))
	}
	if d := s.DenySyscall; d != nil {
		add(string(control.ActDenySyscall), d.Since, fmt.Sprintf("%s with %s", strings.Join(d.Syscalls, ","), d.Errno))
	}
	if d := s.DenyConnect; d != nil {
		add(string(control.ActDenyConnect), d.Since, fmt.Sprintf("%v until %s unless it goes on", d.Rule, d.RestoreAt().Format(time.TimeOnly)))
	}
	if !s.FrozenSince.IsZero() {
		add(string(control.ActFreeze), s.FrozenSince, "")
	}
	if !s.KilledAt.IsZero() {
		add(string(control.ActKill), s.KilledAt, "")
	}
	return out
}
