package detector

import (
	"net/netip"
	"strings"
)

// strMatcher matches a string against any of several patterns. A glob's
// '*' matches any run of characters, '/' included, and '?' one character.
type strMatcher struct {
	eq       []string
	globs    []globPat
	prefixes []string
	suffixes []string
	contains []string
	// except, when set, takes back what the patterns matched: a string
	// matches when a pattern does and no exception does. Each string is
	// judged on its own, so a harmless entry beside a harmful one does not
	// excuse it (env LD_PRELOAD=libjemalloc.so LD_AUDIT=/tmp/x.so).
	except *strMatcher
}

func (m *strMatcher) match(s string) bool {
	if !m.matchAny(s) {
		return false
	}
	return m.except == nil || !m.except.match(s)
}

// matchAny is whether any of the patterns matches s (exceptions aside).
func (m *strMatcher) matchAny(s string) bool {
	for _, p := range m.eq {
		if s == p {
			return true
		}
	}
	for _, p := range m.prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	for _, p := range m.suffixes {
		if strings.HasSuffix(s, p) {
			return true
		}
	}
	for _, p := range m.contains {
		if strings.Contains(s, p) {
			return true
		}
	}
	for i := range m.globs {
		if m.globs[i].match(s) {
			return true
		}
	}
	return false
}

// addGlob files a pattern under the cheapest test that decides it.
func (m *strMatcher) addGlob(p string) {
	wild := strings.IndexAny(p, "*?")
	switch {
	case wild < 0:
		m.eq = append(m.eq, p)
	case wild == len(p)-1 && p[wild] == '*':
		m.prefixes = append(m.prefixes, p[:wild])
	case wild == 0 && p[0] == '*' && !strings.ContainsAny(p[1:], "*?"):
		m.suffixes = append(m.suffixes, p[1:])
	case len(p) >= 2 && p[0] == '*' && p[len(p)-1] == '*' && !strings.ContainsAny(p[1:len(p)-1], "*?"):
		m.contains = append(m.contains, p[1:len(p)-1])
	default:
		m.globs = append(m.globs, newGlobPat(p))
	}
}

// globPat is a glob with the literal parts every match must have: its
// head (before the first wildcard), its tail (after the last) and its
// longest literal run. Checking them first turns most misses into a
// prefix, suffix or substring test.
type globPat struct {
	p, head, tail, lit string
}

func newGlobPat(p string) globPat {
	g := globPat{p: p}
	first, last := strings.IndexAny(p, "*?"), strings.LastIndexAny(p, "*?")
	if first < 0 {
		g.head = p
		return g
	}
	g.head, g.tail = p[:first], p[last+1:]
	for _, run := range strings.FieldsFunc(p[first:last+1], func(r rune) bool { return r == '*' || r == '?' }) {
		if len(run) > len(g.lit) {
			g.lit = run
		}
	}
	return g
}

func (g *globPat) match(s string) bool {
	if !strings.HasPrefix(s, g.head) || !strings.HasSuffix(s, g.tail) {
		return false
	}
	if g.lit != "" && !strings.Contains(s, g.lit) {
		return false
	}
	return glob(g.p, s)
}

// glob reports whether s matches pattern p ('*' any run, '?' one byte).
// It runs in O(len(p)*len(s)) at worst and allocates nothing.
func glob(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// numOp is one numeric test.
type numOp struct {
	op  byte // '=', '!', '<', 'l' (<=), '>', 'g' (>=), 'a' mask any, 'A' mask all, 'n' mask none
	val int64
}

// numMatcher passes when every op passes and, if in is set, the value is
// one of in.
type numMatcher struct {
	ops   []numOp
	in    []int64
	notIn []int64
}

func (m *numMatcher) match(v int64) bool {
	for _, o := range m.ops {
		var ok bool
		switch o.op {
		case '=':
			ok = v == o.val
		case '!':
			ok = v != o.val
		case '<':
			ok = v < o.val
		case 'l':
			ok = v <= o.val
		case '>':
			ok = v > o.val
		case 'g':
			ok = v >= o.val
		case 'a':
			ok = uint64(v)&uint64(o.val) != 0
		case 'A':
			ok = uint64(v)&uint64(o.val) == uint64(o.val)
		case 'n':
			ok = uint64(v)&uint64(o.val) == 0
		}
		if !ok {
			return false
		}
	}
	if len(m.in) > 0 {
		found := false
		for _, x := range m.in {
			if x == v {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for _, x := range m.notIn {
		if x == v {
			return false
		}
	}
	return true
}

// ipMatcher matches an address against prefixes.
type ipMatcher struct{ prefixes []netip.Prefix }

func (m *ipMatcher) match(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range m.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
