package detector

import (
	"math/bits"
	"strings"
)

// A rule whose condition can only hold, for a syscall it names, when the
// event's path starts or ends with one of a few literals ("/proc/1/root",
// "/etc/", "/dev/sd"; "/release_agent", ".sock"), or its path2 or unix
// address does, gets a pathFilter for that syscall at compile time: the engine
// skips the rule for an event that meets none of them, without evaluating
// its condition. The filter is a necessary condition derived from the
// condition itself, so a skipped rule is one that could not match:
// verdicts are the same, only cheaper. On a path-heavy stream (tar -x,
// rm -rf) most of the 20-odd rules that name openat are skipped by a test
// of the path's first component and of its last two bytes.

// pathFilter is a disjunction of necessary conditions of a rule: when
// the rule's condition holds, one of them does.
type pathFilter struct {
	heads []string // the path (or its other spelling) starts with one
	// comps is a bit per first path component (pathComps) of the heads;
	// 0 when a head does not end its first component (then any path may
	// start with it).
	comps    uint64
	tails    []string // the path ends with one
	tailBits uint64   // tailBit of every tail; all ones for a 1-byte tail
	other    []atom   // on path2 or the unix address, tested as they are
}

// pathComps interns the first path components ("proc" of /proc/1/root)
// that the filters of one rule set name, at most 64 of them.
type pathComps struct {
	names []string
	// slot holds, per compHash, 1 + the index of the one name with that
	// hash (0: none); a hash two names share sends lookups to the list.
	slot    [256]uint8
	collide [256]bool
}

// compHash hashes a component by its length and its first and last bytes.
func compHash(s string) uint8 {
	if s == "" {
		return 0
	}
	return uint8(len(s)*31 + int(s[0])*7 + int(s[len(s)-1]))
}

// bit is the component's bit, or 0 when the rule set names no such
// component.
func (pc *pathComps) bit(comp string) uint64 {
	h := compHash(comp)
	if !pc.collide[h] {
		if i := pc.slot[h]; i != 0 && pc.names[i-1] == comp {
			return 1 << (i - 1)
		}
		return 0
	}
	for i, n := range pc.names {
		if n == comp {
			return 1 << i
		}
	}
	return 0
}

// add interns comp; false when the table is full.
func (pc *pathComps) add(comp string) (uint64, bool) {
	if b := pc.bit(comp); b != 0 {
		return b, true
	}
	if len(pc.names) == 64 {
		return 0, false
	}
	pc.names = append(pc.names, comp)
	h := compHash(comp)
	if pc.slot[h] != 0 {
		pc.collide[h] = true
	} else {
		pc.slot[h] = uint8(len(pc.names))
	}
	return 1 << (len(pc.names) - 1), true
}

// firstComp is the first component of an absolute path ("proc" of
// /proc/1/root, "etc" of /etc), and whether p is absolute.
func firstComp(p string) (string, bool) {
	if len(p) == 0 || p[0] != '/' {
		return "", false
	}
	p = p[1:]
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i], true
	}
	return p, true
}

// atom is one necessary condition: field (path, path2 or unix) starts
// with head or ends with tail.
type atom struct{ field, head, tail string }

// guard is what guardOf derives: a disjunction of atoms.
type guard []atom

// tailBit hashes the last two bytes of s (all ones for shorter strings).
func tailBit(s string) uint64 {
	if len(s) < 2 {
		return ^uint64(0)
	}
	return 1 << ((uint(s[len(s)-1])*7 + uint(s[len(s)-2])) & 63)
}

// eventBits are an event's path hashes, computed once for all its rules.
type eventBits struct {
	comps, tails uint64
}

func (pc *pathComps) eventBits(ctx *evalCtx) eventBits {
	var b eventBits
	if c, ok := firstComp(ctx.ev.Path); ok {
		b.comps = pc.bit(c)
	}
	b.tails = tailBit(ctx.ev.Path)
	if ctx.pathUser != "" {
		if c, ok := firstComp(ctx.pathUser); ok {
			b.comps |= pc.bit(c)
		}
		b.tails |= tailBit(ctx.pathUser)
	}
	return b
}

// pass reports whether the event may satisfy the rule.
func (f *pathFilter) pass(ctx *evalCtx, b eventBits) bool {
	p, u := ctx.ev.Path, ctx.pathUser
	if len(f.heads) > 0 && (f.comps == 0 || f.comps&b.comps != 0) {
		for _, h := range f.heads {
			if strings.HasPrefix(p, h) || (u != "" && strings.HasPrefix(u, h)) {
				return true
			}
		}
	}
	if f.tailBits&b.tails != 0 {
		for _, t := range f.tails {
			if strings.HasSuffix(p, t) || (u != "" && strings.HasSuffix(u, t)) {
				return true
			}
		}
	}
	if ctx.ev.Path2 == "" && ctx.ev.Addr.Path == "" {
		return false // other atoms test only these, and none is empty
	}
	for i := range f.other {
		if f.other[i].holds(ctx) {
			return true
		}
	}
	return false
}

func (a *atom) holds(ctx *evalCtx) bool {
	var s string
	switch a.field {
	case "path2":
		s = ctx.ev.Path2
	case "unix":
		s = ctx.ev.Addr.Path
	}
	return a.match(s)
}

func (a *atom) match(s string) bool {
	if a.head != "" {
		return strings.HasPrefix(s, a.head)
	}
	return strings.HasSuffix(s, a.tail)
}

// newPathFilter derives the filter of a rule with condition c for events
// of syscall nr, or nil when the condition does not confine them so. A
// filter without atoms passes nothing: c never holds for nr.
func newPathFilter(c cond, nr int32, pc *pathComps) *pathFilter {
	if c == nil {
		return nil
	}
	g, ok := guardOf(c, nr)
	if !ok {
		return nil
	}
	f := &pathFilter{}
	exact := true
	for _, a := range g {
		switch {
		case a.field == "path" && a.head != "":
			f.heads = append(f.heads, a.head)
			comp, ok := headComp(a.head)
			var b uint64
			if ok {
				b, ok = pc.add(comp)
			}
			exact = exact && ok
			f.comps |= b
		case a.field == "path":
			f.tails = append(f.tails, a.tail)
			f.tailBits |= tailBit(a.tail)
		default:
			f.other = append(f.other, a)
		}
	}
	if !exact {
		f.comps = 0
	}
	return f
}

// headComp is the first component every path starting with head has, and
// whether head fixes it (it goes past its first component, like /proc/ or
// /etc/shadow). A head that stops inside its first component (/proc, /pr)
// fixes none: /process starts with it too.
func headComp(h string) (string, bool) {
	if len(h) < 2 || h[0] != '/' {
		return "", false
	}
	i := strings.IndexByte(h[1:], '/')
	if i < 0 {
		return "", false
	}
	return h[1 : 1+i], true
}

// guardOf returns atoms one of which holds whenever c holds for an event
// of syscall nr (none: c never holds for it), and false when c has no
// such atoms. Syscall tests are decided for nr here, not left as atoms.
func guardOf(c cond, nr int32) (guard, bool) {
	switch x := c.(type) {
	case *strCond:
		if x.field != "path" && x.field != "path2" && x.field != "unix" {
			return nil, false
		}
		return matcherAtoms(x.field, &x.m)
	case *nrCond:
		for _, n := range x.nrs {
			if n == nr {
				return nil, false // holds: no constraint
			}
		}
		return guard{}, true // never holds
	case allCond:
		// every part must hold: any part's atoms will do; take the
		// fewest (none: a part never holds)
		var best guard
		found := false
		for _, p := range x {
			if g, ok := guardOf(p, nr); ok && (!found || len(g) < len(best)) {
				best, found = g, true
			}
		}
		return best, found
	case anyCond:
		// one part must hold: the atoms of every part
		all := guard{}
		for _, p := range x {
			g, ok := guardOf(p, nr)
			if !ok {
				return nil, false
			}
			all = append(all, g...)
		}
		return all, true
	}
	return nil, false
}

// matcherAtoms is an atom per pattern of m (its literal head, else its
// literal tail), and false when a pattern has neither (a substring, a
// glob with wildcards at both ends, an empty string).
func matcherAtoms(field string, m *strMatcher) (guard, bool) {
	if len(m.contains) > 0 {
		return nil, false
	}
	var g guard
	for _, s := range m.eq {
		g = append(g, atom{field: field, head: s})
	}
	for _, s := range m.prefixes {
		g = append(g, atom{field: field, head: s})
	}
	for _, s := range m.suffixes {
		g = append(g, atom{field: field, tail: s})
	}
	for i := range m.globs {
		if h := m.globs[i].head; h != "" {
			g = append(g, atom{field: field, head: h})
		} else {
			g = append(g, atom{field: field, tail: m.globs[i].tail})
		}
	}
	for _, a := range g {
		if a.head == "" && a.tail == "" {
			return nil, false
		}
	}
	return g, true
}

// ruleMasks sorts the rules of one syscall (a bit per rule, in byNr order)
// by what their filters need, so that an event's path hashes pick the
// rules whose filter may pass in a few table look-ups, and the rest are
// skipped without a call: a rule left out is one whose filter's pass
// says no (TestRuleMasksAsPass).
type ruleMasks struct {
	always  uint64     // no filter, or heads that fix no first component
	other   uint64     // atoms on path2 or the unix address
	anyTail uint64     // a tail of any bit
	comps   [64]uint64 // per pathComps bit: the rules with a head below it
	tails   [64]uint64 // per tail bit: the rules with a tail of that bit
}

// newRuleMasks returns the masks of a syscall's filters, or nil when none
// has a filter or there are more than 64 rules (every rule is then tried).
func newRuleMasks(pres []*pathFilter) *ruleMasks {
	if len(pres) > 64 {
		return nil
	}
	m := &ruleMasks{}
	filtered := false
	for i, f := range pres {
		bit := uint64(1) << i
		if f == nil {
			m.always |= bit
			continue
		}
		filtered = true
		if len(f.heads) > 0 {
			if f.comps == 0 {
				m.always |= bit
			}
			for c := f.comps; c != 0; c &= c - 1 {
				m.comps[bits.TrailingZeros64(c)] |= bit
			}
		}
		if len(f.tails) > 0 {
			m.anyTail |= bit
			for t := f.tailBits; t != 0; t &= t - 1 {
				m.tails[bits.TrailingZeros64(t)] |= bit
			}
		}
		if len(f.other) > 0 {
			m.other |= bit
		}
	}
	if !filtered {
		return nil
	}
	return m
}

// candidates are the rules whose filter may pass an event with bits b:
// the others' pass is false.
func (m *ruleMasks) candidates(ctx *evalCtx, b eventBits) uint64 {
	c := m.always
	for x := b.comps; x != 0; x &= x - 1 {
		c |= m.comps[bits.TrailingZeros64(x)]
	}
	if b.tails == ^uint64(0) {
		c |= m.anyTail
	} else {
		for x := b.tails; x != 0; x &= x - 1 {
			c |= m.tails[bits.TrailingZeros64(x)]
		}
	}
	if ctx.ev.Path2 != "" || ctx.ev.Addr.Path != "" {
		c |= m.other
	}
	return c
}
