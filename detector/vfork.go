package detector

import "vigil.dev/vigil/event"

// A child made by vfork (posix_spawn, Python's subprocess, the JVM's
// jspawnhelper) runs and execs while its parent waits inside vfork, so
// the child's exec reaches the engine before the parent's vfork returns
// and tells who the child is: at its exec the child has no parent's
// executable, sockets on its stdio or uids. The engine keeps the exec of
// a process no fork has introduced (procState.held) and judges it again
// when the fork that made the process returns (rejudgeHeld).

// holdExec keeps a copy of a successful exec of p for judging again
// once p's fork is seen.
func (p *procState) holdExec(ev *event.Event) {
	h := *ev
	h.Path, h.Path2 = cloneString(ev.Path), cloneString(ev.Path2)
	h.Argv = make([]string, len(ev.Argv))
	for i, a := range ev.Argv {
		h.Argv[i] = cloneString(a)
	}
	if len(ev.Env) > 0 {
		h.Env = make([]string, len(ev.Env))
		for i, a := range ev.Env {
			h.Env[i] = cloneString(a)
		}
	}
	h.PathUser, h.AddrUser, h.Addr = "", event.Addr{}, event.Addr{}
	p.held = &h
}

// takeHeld returns the exec a fork just put in context (at most one per
// event), and forgets it.
func (ps *procs) takeHeld() *event.Event {
	h := ps.rejudge
	ps.rejudge = nil
	return h
}

// rejudgeHeld runs the exec rules again on a held exec, now that the
// process's lineage is known. Rules that fired the first time are
// throttled (the same time); rate rules counted it then.
func (sh *shard) rejudgeHeld(rs *ruleSet, cg *cgState, ev *event.Event) []Verdict {
	if ev.Nr < 0 || int(ev.Nr) > maxNativeNr {
		return nil
	}
	rules := rs.byNr[ev.Nr]
	if len(rules) == 0 {
		return nil
	}
	var out []Verdict
	t := eventTime(ev)
	ctx := &sh.ctx
	ctx.ev, ctx.proc, ctx.written, ctx.pathUser = ev, cg.procs.get(ev.PID, false), &cg.written, ""
	for _, r := range rules {
		if r.rate != nil || (r.cond != nil && !r.cond.eval(ctx)) {
			continue
		}
		if cg.throttled(procRuleKey{rule: int32(r.idx), pid: ev.PID}, t, r.throttle) {
			continue
		}
		out = append(out, r.verdict(cg, ev, ev, ctx.proc, t, "judged again when its parent's fork returned"))
	}
	ctx.ev, ctx.proc, ctx.written = nil, nil, nil
	return out
}
