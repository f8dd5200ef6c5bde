package detector

import (
	"testing"

	"vigil.dev/vigil/event"
)

// filterProbes are paths built from every literal of the rules' filters
// (each head and tail as it is, extended, cut short by a byte, under
// another directory), plus ordinary ones.
func filterProbes(rs *ruleSet) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, p := range []string{"", "/", "x", "./f1.txt", "/tmp/a", "/dev/shm/x/f1.txt", "/proc", "/proc/", "/procx/1",
		"/etc", "/etc/passwd", "/var/run/docker.sock", "/run/containerd/containerd.sock", "/root/.bash_history"} {
		add(p)
	}
	for _, fs := range rs.pre {
		for _, f := range fs {
			if f == nil {
				continue
			}
			var lits []string
			lits = append(lits, f.heads...)
			lits = append(lits, f.tails...)
			for _, a := range f.other {
				lits = append(lits, a.head, a.tail)
			}
			for _, l := range lits {
				add(l)
				add(l + "x")
				add(l + "/y")
				add("/a/b" + l)
				if len(l) > 1 {
					add(l[:len(l)-1])
				}
			}
		}
	}
	return out
}

// TestPathFilterNeverHidesAMatch: for every rule and syscall it names,
// and every probe path as path, path2, unix address or the process's own
// spelling, a rule whose condition holds passes its filter: the filters
// only skip rules that cannot match.
func TestPathFilterNeverHidesAMatch(t *testing.T) {
	e := newEngine(t, Config{})
	rs := e.rs.Load()
	probes := filterProbes(rs)
	checked, held, filtered := 0, 0, 0
	var ctx evalCtx
	for nr, rules := range rs.byNr {
		for i, r := range rules {
			f := rs.pre[nr][i]
			if f == nil || r.cond == nil {
				continue
			}
			filtered++
			for _, p := range probes {
				for variant := 0; variant < 4; variant++ {
					ev := event.Event{Nr: int32(nr), Args: [6]uint64{0, 0o4777 | 0x241, 0x241, 0, 0, 0}, Ret: 3}
					ctx = evalCtx{ev: &ev}
					switch variant {
					case 0:
						ev.Path = p
					case 1:
						ev.Path, ctx.pathUser = "/elsewhere/file", p
					case 2:
						ev.Path, ev.Path2 = "/elsewhere/file", p
					case 3:
						ev.Addr = event.Addr{Family: event.AFUnix, Path: p}
					}
					checked++
					if !r.cond.eval(&ctx) {
						continue
					}
					held++
					if !f.pass(&ctx, rs.comps.eventBits(&ctx)) {
						t.Errorf("rule %s, syscall %s: condition holds for path %q (variant %d) but the filter skips it",
							r.name, event.SyscallName(nr), p, variant)
					}
				}
			}
		}
	}
	if filtered < 50 || held < 100 {
		t.Fatalf("only %d filtered rules, %d probes held (of %d): the probes do not exercise the filters", filtered, held, checked)
	}
	t.Logf("%d filtered (rule, syscall) pairs, %d probes, %d held", filtered, checked, held)
}

// TestPathFilterSkips: on the recorded tar-rm stream most rule
// evaluations are skipped by the filters.
func TestPathFilterSkips(t *testing.T) {
	e := newEngine(t, Config{})
	rs := e.rs.Load()
	evs := tarRm(t)
	var ctx evalCtx
	named, passed := 0, 0
	var procs procs
	for i := range evs {
		ev := &evs[i]
		if ev.Nr < 0 || int(ev.Nr) >= len(rs.byNr) {
			continue
		}
		if n := normalize(ev, &procs, &pathBuf{}); n.changed {
			c := *ev
			c.Path, c.Path2 = n.path, n.path2
			ev = &c
		}
		if procTracked[ev.Nr] {
			procs.update(ev)
		}
		ctx = evalCtx{ev: ev}
		for j := range rs.byNr[ev.Nr] {
			named++
			if f := rs.pre[ev.Nr][j]; f == nil || f.pass(&ctx, rs.comps.eventBits(&ctx)) {
				passed++
			}
		}
	}
	if named == 0 || passed*4 > named {
		t.Fatalf("%d of %d rule evaluations pass the filters; want under a quarter", passed, named)
	}
	t.Logf("%d of %d rule evaluations pass the filters", passed, named)
}

// TestPathCompsLookup: every interned component is found by its own bit,
// also when components share a hash, and others are not.
func TestPathCompsLookup(t *testing.T) {
	var pc pathComps
	names := []string{"proc", "sys", "dev", "etc", "var", "run", "tmp", "home", "root", "usr"}
	// components that share compHash with each other
	for i := 0; len(names) < 64 && i < 1000; i++ {
		a := string([]byte{'a' + byte(i%26), 'x', 'a' + byte(i/26%26)})
		names = append(names, a)
	}
	bits := map[string]uint64{}
	collisions := 0
	for _, n := range names {
		b, ok := pc.add(n)
		if !ok {
			break
		}
		bits[n] = b
	}
	for h := range pc.collide {
		if pc.collide[h] {
			collisions++
		}
	}
	if collisions == 0 {
		t.Fatal("no hash shared by two components: the test does not exercise the fallback")
	}
	for n, b := range bits {
		if got := pc.bit(n); got != b {
			t.Errorf("bit(%q) = %x, want %x", n, got, b)
		}
	}
	for _, n := range []string{"", "pro", "procs", "opt", "lib", "zzz", "ax"} {
		if _, in := bits[n]; !in && pc.bit(n) != 0 {
			t.Errorf("bit(%q) = %x for a component never added", n, pc.bit(n))
		}
	}
	if _, ok := pc.add("one-too-many"); ok && len(pc.names) > 64 {
		t.Fatal("more than 64 components interned")
	}
}

// TestRuleMasksAsPass: for every syscall's rules and every probe path as
// path, path2, unix address or the process's own spelling (and the short
// and empty paths whose tail hash is every bit), the masks leave out only
// rules whose filter says no; and on the tar-rm streams they leave out
// most rules without a call to their filter.
func TestRuleMasksAsPass(t *testing.T) {
	e := newEngine(t, Config{})
	rs := e.rs.Load()
	probes := append(filterProbes(rs), "", "/", "a")
	withMasks := 0
	for nr, rules := range rs.byNr {
		m := rs.masks[nr]
		if m == nil {
			for _, f := range rs.pre[nr] {
				if f != nil && len(rules) <= 64 {
					t.Fatalf("syscall %s has filters and no masks", event.SyscallName(nr))
				}
			}
			continue
		}
		withMasks++
		for _, p := range probes {
			for variant := 0; variant < 4; variant++ {
				ev := event.Event{Nr: int32(nr), Path: "/elsewhere/file"}
				ctx := evalCtx{ev: &ev}
				switch variant {
				case 0:
					ev.Path = p
				case 1:
					ctx.pathUser = p
				case 2:
					ev.Path2 = p
				case 3:
					ev.Addr = event.Addr{Family: event.AFUnix, Path: p}
				}
				b := rs.comps.eventBits(&ctx)
				cand := m.candidates(&ctx, b)
				for i, f := range rs.pre[nr] {
					if cand&(1<<i) == 0 && (f == nil || f.pass(&ctx, b)) {
						t.Fatalf("syscall %s, rule %s, path %q (variant %d): left out, but its filter passes",
							event.SyscallName(nr), rules[i].name, p, variant)
					}
				}
			}
		}
	}
	if withMasks < 10 {
		t.Fatalf("only %d syscalls with masks", withMasks)
	}
	// on tar-rm, most rules of a path syscall are left out at once
	named, left := 0, 0
	for _, evs := range [][]event.Event{tarRm(t), tarRmRel(t)} {
		for i := range evs {
			ev := &evs[i]
			if ev.Nr < 0 || int(ev.Nr) >= len(rs.masks) || rs.masks[ev.Nr] == nil {
				continue
			}
			ctx := evalCtx{ev: ev}
			cand := rs.masks[ev.Nr].candidates(&ctx, rs.comps.eventBits(&ctx))
			for j := range rs.byNr[ev.Nr] {
				named++
				if cand&(1<<j) == 0 {
					left++
				}
			}
		}
	}
	if left*2 < named {
		t.Fatalf("the masks leave out %d of %d rule evaluations on tar-rm; want most", left, named)
	}
	t.Logf("the masks leave out %d of %d rule evaluations on tar-rm", left, named)
}
