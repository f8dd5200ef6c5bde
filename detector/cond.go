package detector

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"vigil.dev/vigil/event"
)

// evalCtx is what a condition sees: the event and the state vigil keeps
// about its process.
type evalCtx struct {
	ev   *event.Event
	proc *procState // nil when the process is unknown
	// pathUser is the path the process passed, normalised, when the tracer
	// recorded the kernel's own path and it differs ("" otherwise): path
	// conditions match either, so neither spelling evades a rule.
	pathUser string
	written  *writtenFiles // the cgroup's written files
}

// cond is a compiled condition.
type cond interface{ eval(c *evalCtx) bool }

type allCond []cond

func (a allCond) eval(c *evalCtx) bool {
	for _, x := range a {
		if !x.eval(c) {
			return false
		}
	}
	return true
}

type anyCond []cond

func (a anyCond) eval(c *evalCtx) bool {
	for _, x := range a {
		if x.eval(c) {
			return true
		}
	}
	return false
}

type notCond struct{ c cond }

func (n notCond) eval(c *evalCtx) bool { return !n.c.eval(c) }

type strCond struct {
	field string // the field's name ("path", "comm", ...)
	get   func(*evalCtx) string
	alt   func(*evalCtx) string // another spelling of the same field, or nil
	m     strMatcher
	// both makes the test pass only when the field and its other spelling
	// (when there is one) both match: set under a not, so that an
	// exemption (not: {path: /proc/self/*}) holds only when what the
	// kernel opened is exempt too. Otherwise either spelling suffices: a
	// rule fires on what the kernel opened and on what the process asked
	// for. So a process can dodge neither a rule nor its exemption by
	// spelling a path another way: /proc/self/root/proc/1/environ is
	// /proc/1/environ to the kernel.
	both bool
}

func (s *strCond) eval(c *evalCtx) bool {
	if s.both {
		k, a := s.get(c), s.alt(c)
		if a == "" || unnamed(k) {
			// one spelling, or a file the kernel could not name (nsfs)
			return s.m.match(k) || (a != "" && s.m.match(a))
		}
		return s.m.match(a) && (s.m.match(k) || sameProcEntry(k, a))
	}
	if s.m.match(s.get(c)) {
		return true
	}
	if s.alt != nil {
		if a := s.alt(c); a != "" {
			return s.m.match(a)
		}
	}
	return false
}

// unnamed reports whether the kernel gave no usable path for a file (d_path
// of a file outside the mounts it can name, such as a namespace file).
func unnamed(k string) bool { return k == "" || strings.HasPrefix(k, "(unreachable)") }

// sameProcEntry reports whether the kernel's path k is the entry the
// process named as its own, u (/proc/self/X or /proc/thread-self/X): the
// kernel names it by pid, /proc/PID/X or /proc/PID/task/TID/X, with the
// pid of the process's own pid namespace, which events do not carry. X
// must be the same entry and not a magic link to elsewhere (root, cwd,
// exe, fd/N, map_files), whose files the kernel names by their own paths.
// A process that rewrites its path in memory while the syscall runs can
// still claim /proc/self/X for another process's X: the tracer reads the
// process's spelling when the syscall returns.
func sameProcEntry(k, u string) bool {
	var rest string
	var thread bool
	if r, ok := strings.CutPrefix(u, "/proc/self/"); ok {
		rest = r
	} else if r, ok := strings.CutPrefix(u, "/proc/thread-self/"); ok {
		rest, thread = r, true
	} else {
		return false
	}
	first, _, _ := strings.Cut(rest, "/")
	switch first {
	case "", "root", "cwd", "exe", "fd", "map_files", "task", "..", ".":
		return false
	}
	kr, ok := strings.CutPrefix(k, "/proc/")
	if !ok {
		return false
	}
	pid, kr, ok := strings.Cut(kr, "/")
	if !ok || !allDigits(pid) {
		return false
	}
	if thread {
		t, ok := strings.CutPrefix(kr, "task/")
		if !ok {
			return false
		}
		var tid string
		if tid, kr, ok = strings.Cut(t, "/"); !ok || !allDigits(tid) {
			return false
		}
	}
	return kr == rest
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// altFields are the second spellings of string fields: for path, what the
// process passed when it differs from the file the kernel opened.
var altFields = map[string]func(*evalCtx) string{
	"path": func(c *evalCtx) string { return c.pathUser },
}

// argvCond passes when any argv element matches.
type argvCond struct{ m strMatcher }

func (a *argvCond) eval(c *evalCtx) bool {
	for _, s := range c.ev.Argv {
		if a.m.match(s) {
			return true
		}
	}
	return false
}

// envCond passes when any of an exec's loader variables (Event.Env)
// matches.
type envCond struct{ m strMatcher }

func (a *envCond) eval(c *evalCtx) bool {
	for _, s := range c.ev.Env {
		if a.m.match(s) {
			return true
		}
	}
	return false
}

// envAddedCond passes when any of the loader variables that an exec set
// rather than inherited (procState.envAdded) matches.
type envAddedCond struct{ m strMatcher }

func (a *envAddedCond) eval(c *evalCtx) bool {
	if c.proc == nil {
		return false
	}
	for _, s := range c.proc.envAdded {
		if a.m.match(s) {
			return true
		}
	}
	return false
}

// ancCond passes when the executable of any known ancestor matches
// (parent first).
type ancCond struct{ m strMatcher }

func (a *ancCond) eval(c *evalCtx) bool {
	if c.proc == nil {
		return false
	}
	for _, s := range c.proc.lin.anc {
		if s != "" && a.m.match(s) {
			return true
		}
	}
	return false
}

type numCond struct {
	get func(*evalCtx) (int64, bool)
	m   numMatcher
}

func (n *numCond) eval(c *evalCtx) bool {
	v, ok := n.get(c)
	return ok && n.m.match(v)
}

type boolCond struct {
	get  func(*evalCtx) bool
	want bool
}

func (b *boolCond) eval(c *evalCtx) bool { return b.get(c) == b.want }

type ipCond struct{ m ipMatcher }

func (i *ipCond) eval(c *evalCtx) bool { return i.m.match(c.ev.Addr.IP) }

type nrCond struct{ nrs []int32 }

func (n *nrCond) eval(c *evalCtx) bool {
	for _, x := range n.nrs {
		if c.ev.Nr == x {
			return true
		}
	}
	return false
}

var strFields = map[string]func(*evalCtx) string{
	"path":  func(c *evalCtx) string { return c.ev.Path },
	"path2": func(c *evalCtx) string { return c.ev.Path2 },
	"comm":  func(c *evalCtx) string { return c.ev.Comm },
	"addr":  func(c *evalCtx) string { return c.ev.Addr.String() },
	"unix":  func(c *evalCtx) string { return c.ev.Addr.Path },
	"argv0": func(c *evalCtx) string {
		if len(c.ev.Argv) > 0 {
			return c.ev.Argv[0]
		}
		return ""
	},
	"cmdline":             func(c *evalCtx) string { return strings.Join(c.ev.Argv, " ") },
	"exe":                 exeOf,
	"proc.exe":            exeOf,
	"container.id":        func(c *evalCtx) string { return ctr(c).ID },
	"container.name":      func(c *evalCtx) string { return ctr(c).Name },
	"container.image":     func(c *evalCtx) string { return ctr(c).Image },
	"container.pod":       func(c *evalCtx) string { return ctr(c).Pod },
	"container.namespace": func(c *evalCtx) string { return ctr(c).Namespace },
	"proc.pexe": func(c *evalCtx) string {
		if c.proc != nil {
			return c.proc.lin.anc[0]
		}
		return ""
	},
	"exe_writer": func(c *evalCtx) string {
		if c.written != nil {
			w, _ := c.written.writer(c.ev.Path)
			return w
		}
		return ""
	},
	"fd_path": func(c *evalCtx) string {
		if c.proc != nil {
			return c.proc.fdPath(int32(c.ev.Args[0]))
		}
		return ""
	},
}

// exeOf is the path of the process's last successful execve (inherited
// across fork), "" when vigil never saw one. Unlike comm, a process cannot
// rename it (prctl PR_SET_NAME) without executing something else.
func exeOf(c *evalCtx) string {
	if c.proc != nil {
		return c.proc.exe
	}
	return ""
}

var noContainer event.Container

func ctr(c *evalCtx) *event.Container {
	if c.ev.Container != nil {
		return c.ev.Container
	}
	return &noContainer
}

var numFields = map[string]func(*evalCtx) (int64, bool){
	"arg0": func(c *evalCtx) (int64, bool) { return int64(c.ev.Args[0]), true },
	"arg1": func(c *evalCtx) (int64, bool) { return int64(c.ev.Args[1]), true },
	"arg2": func(c *evalCtx) (int64, bool) { return int64(c.ev.Args[2]), true },
	"arg3": func(c *evalCtx) (int64, bool) { return int64(c.ev.Args[3]), true },
	"arg4": func(c *evalCtx) (int64, bool) { return int64(c.ev.Args[4]), true },
	"arg5": func(c *evalCtx) (int64, bool) { return int64(c.ev.Args[5]), true },
	"ret":  func(c *evalCtx) (int64, bool) { return c.ev.Ret, true },
	"port": func(c *evalCtx) (int64, bool) {
		if c.ev.Addr.Family == event.AFInet || c.ev.Addr.Family == event.AFInet6 {
			return int64(c.ev.Addr.Port), true
		}
		return 0, false
	},
	"family": func(c *evalCtx) (int64, bool) { return int64(c.ev.Addr.Family), c.ev.Addr.Family != 0 },
	// clone_flags: the CLONE_* flags of clone and unshare (arg0) and of
	// clone3 (its struct clone_args)
	"clone_flags": func(c *evalCtx) (int64, bool) {
		f, ok := c.ev.CloneFlagsOf()
		return int64(f), ok
	},
	"open_flags": func(c *evalCtx) (int64, bool) {
		switch c.ev.Nr {
		case nrOpen:
			return int64(c.ev.Args[1]), true
		case nrOpenat:
			return int64(c.ev.Args[2]), true
		}
		return 0, false
	},
	"proc.uid": func(c *evalCtx) (int64, bool) {
		if c.proc != nil && c.proc.uids.e >= 0 {
			return c.proc.uids.e, true
		}
		return 0, false
	},
	"proc.ruid": func(c *evalCtx) (int64, bool) {
		if c.proc != nil && c.proc.uids.r >= 0 {
			return c.proc.uids.r, true
		}
		return 0, false
	},
	"proc.suid": func(c *evalCtx) (int64, bool) {
		if c.proc != nil && c.proc.uids.s >= 0 {
			return c.proc.uids.s, true
		}
		return 0, false
	},
}

var boolFields = map[string]func(*evalCtx) bool{
	"ok":     func(c *evalCtx) bool { return c.ev.Ret >= 0 },
	"failed": func(c *evalCtx) bool { return c.ev.Ret < 0 },
	"write": func(c *evalCtx) bool {
		var fl uint64
		switch c.ev.Nr {
		case nrOpen:
			fl = c.ev.Args[1]
		case nrOpenat:
			fl = c.ev.Args[2]
		default:
			return false
		}
		return fl&(0x1|0x2|0x40|0x200|0x400) != 0
	},
	"proc.stdio_socket":    func(c *evalCtx) bool { return c.proc != nil && c.proc.stdioSocket },
	"proc.accepted":        func(c *evalCtx) bool { return c.proc != nil && c.proc.lin.accepted },
	"proc.parent_accepted": func(c *evalCtx) bool { return c.proc != nil && c.proc.lin.paccepted },
	"path_written": func(c *evalCtx) bool {
		if c.written == nil {
			return false
		}
		_, ok := c.written.writer(c.ev.Path)
		return ok
	},
	// the process runs a file the container wrote (exe of its last execve)
	"proc.exe_written": func(c *evalCtx) bool {
		if c.proc == nil || c.proc.exe == "" || c.written == nil {
			return false
		}
		_, ok := c.written.writer(c.proc.exe)
		return ok
	},
	"mem_writable": func(c *evalCtx) bool { return c.proc != nil && c.proc.lin.writable(c.ev.Args[0]) },
	// code mapped for execution from a memfd filled through its fd, or
	// mapped privately (lineage.go: memfdCode)
	"memfd_code": func(c *evalCtx) bool { return c.proc != nil && c.proc.memfdCode(c.ev) },
	// the process is ps asked to print environments (proc.go: psShowsEnv)
	"proc.shows_environ":   func(c *evalCtx) bool { return c.proc != nil && c.proc.showsEnv },
	"proc.stdio_connected": func(c *evalCtx) bool { return c.proc != nil && c.proc.stdioConn },
	// a socket the process connected out itself (not its parent) is on its stdio
	"proc.stdio_self_connected": func(c *evalCtx) bool { return c.proc != nil && c.proc.stdioOwn },
	"fd_connected": func(c *evalCtx) bool {
		return c.proc != nil && c.proc.isConnected(int64(c.ev.Args[0]))
	},
	"fd_socket": func(c *evalCtx) bool {
		return c.proc != nil && c.proc.isSocket(int64(c.ev.Args[0]))
	},
	// arg0 is the pipe the process last spliced a file's pages into
	// (lineage.go: noteSplice)
	"fd_spliced": func(c *evalCtx) bool { return c.proc != nil && c.proc.splicedInto(c.ev.Args[0]) },
}

// allFieldNames is for the error that lists the allowed keys.
func allFieldNames() string {
	var n []string
	for k := range strFields {
		n = append(n, k)
	}
	for k := range numFields {
		n = append(n, k)
	}
	for k := range boolFields {
		n = append(n, k)
	}
	n = append(n, "argv", "env", "env_added", "proc.aexe", "ip", "errno", "syscall", "all", "any", "not", "macro")
	sortStrings(n)
	return strings.Join(n, ", ")
}

var errnoByName = func() map[string]int64 {
	m := map[string]int64{}
	for i := 1; i < 4096; i++ {
		if n := event.ErrnoName(i); n != "" {
			if _, dup := m[n]; !dup {
				m[n] = int64(i)
			}
		}
	}
	return m
}()

// compiler turns YAML condition nodes into conds, resolving lists and macros.
type compiler struct {
	file   string
	lists  map[string]*listDef
	macros map[string]*macroDef
	stack  []string // macros being expanded, for cycle errors
	// neg is true while compiling under an odd number of nots, where a
	// string test with a second spelling needs both to match (strCond.both).
	neg bool
}

type listDef struct {
	file  string
	line  int
	items []string
}

type macroDef struct {
	file string
	node *yaml.Node
	done [2]cond // compiled, by polarity (index 1 under negation)
}

// posErr is an error at a place in a rule file.
type posErr struct {
	file string
	line int
	msg  string
}

func (e *posErr) Error() string { return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg) }

func (c *compiler) errf(n *yaml.Node, format string, a ...any) error {
	return &posErr{file: c.file, line: n.Line, msg: fmt.Sprintf(format, a...)}
}

func (c *compiler) cond(n *yaml.Node) (cond, error) {
	switch n.Kind {
	case yaml.SequenceNode:
		var out allCond
		for _, it := range n.Content {
			x, err := c.cond(it)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	case yaml.MappingNode:
	default:
		return nil, c.errf(n, "condition: want a mapping of field: test (or all/any/not/macro), got %s", kindName(n))
	}
	var out allCond
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		x, err := c.field(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	if len(out) == 1 {
		return out[0], nil
	}
	return out, nil
}

func (c *compiler) field(k, v *yaml.Node) (cond, error) {
	key := k.Value
	switch key {
	case "all", "any":
		if v.Kind != yaml.SequenceNode {
			return nil, c.errf(v, "%s: want a list of conditions, got %s", key, kindName(v))
		}
		var parts []cond
		for _, it := range v.Content {
			x, err := c.cond(it)
			if err != nil {
				return nil, err
			}
			parts = append(parts, x)
		}
		if key == "all" {
			return allCond(parts), nil
		}
		return anyCond(parts), nil
	case "not":
		c.neg = !c.neg
		x, err := c.cond(v)
		c.neg = !c.neg
		if err != nil {
			return nil, err
		}
		return notCond{x}, nil
	case "macro":
		names, err := c.scalars(v)
		if err != nil {
			return nil, err
		}
		var parts allCond
		for _, name := range names {
			x, err := c.macro(v, name)
			if err != nil {
				return nil, err
			}
			parts = append(parts, x)
		}
		if len(parts) == 1 {
			return parts[0], nil
		}
		return parts, nil
	case "syscall":
		names, err := c.scalars(v)
		if err != nil {
			return nil, err
		}
		nrs, err := c.syscallNrs(v, names)
		if err != nil {
			return nil, err
		}
		nc := &nrCond{}
		for _, nr := range nrs {
			nc.nrs = append(nc.nrs, int32(nr))
		}
		return nc, nil
	case "argv":
		m, err := c.strMatcher(v)
		if err != nil {
			return nil, err
		}
		return &argvCond{m: m}, nil
	case "env":
		m, err := c.strMatcher(v)
		if err != nil {
			return nil, err
		}
		return &envCond{m: m}, nil
	case "env_added":
		m, err := c.strMatcher(v)
		if err != nil {
			return nil, err
		}
		return &envAddedCond{m: m}, nil
	case "proc.aexe":
		m, err := c.strMatcher(v)
		if err != nil {
			return nil, err
		}
		return &ancCond{m: m}, nil
	case "ip":
		m, err := c.ipMatcher(v)
		if err != nil {
			return nil, err
		}
		return &ipCond{m: m}, nil
	case "errno":
		names, err := c.scalars(v)
		if err != nil {
			return nil, err
		}
		var m numMatcher
		for _, name := range names {
			n, ok := errnoByName[name]
			if !ok {
				return nil, c.errf(v, "errno: %q is not an errno name (like EPERM, EACCES, ENOENT)", name)
			}
			m.in = append(m.in, -n)
		}
		return &numCond{get: numFields["ret"], m: m}, nil
	case "family":
		names, err := c.scalars(v)
		if err != nil {
			return nil, err
		}
		var m numMatcher
		for _, name := range names {
			switch name {
			case "inet", "ipv4":
				m.in = append(m.in, event.AFInet)
			case "inet6", "ipv6":
				m.in = append(m.in, event.AFInet6)
			case "unix":
				m.in = append(m.in, event.AFUnix)
			default:
				n, err := parseNumber(name)
				if err != nil {
					return nil, c.errf(v, "family: %q: use inet, inet6, unix or a number", name)
				}
				m.in = append(m.in, n)
			}
		}
		return &numCond{get: numFields["family"], m: m}, nil
	}
	if get, ok := strFields[key]; ok {
		m, err := c.strMatcher(v)
		if err != nil {
			return nil, err
		}
		alt := altFields[key]
		return &strCond{field: key, get: get, alt: alt, m: m, both: c.neg && alt != nil}, nil
	}
	if get, ok := numFields[key]; ok {
		m, err := c.numMatcher(v)
		if err != nil {
			return nil, err
		}
		return &numCond{get: get, m: m}, nil
	}
	if get, ok := boolFields[key]; ok {
		var b bool
		if v.Kind != yaml.ScalarNode || v.Decode(&b) != nil {
			return nil, c.errf(v, "%s: want true or false, got %q", key, v.Value)
		}
		return &boolCond{get: get, want: b}, nil
	}
	return nil, c.errf(k, "unknown condition field %q; allowed: %s", key, allFieldNames())
}

func (c *compiler) macro(at *yaml.Node, name string) (cond, error) {
	m, ok := c.macros[name]
	if !ok {
		return nil, c.errf(at, "macro %q is not defined", name)
	}
	pol := 0
	if c.neg {
		pol = 1
	}
	if m.done[pol] != nil {
		return m.done[pol], nil
	}
	for _, s := range c.stack {
		if s == name {
			return nil, c.errf(at, "macro %q refers to itself (through %s)", name, strings.Join(c.stack, " -> "))
		}
	}
	c.stack = append(c.stack, name)
	saved := c.file
	c.file = m.file
	x, err := c.cond(m.node)
	c.file = saved
	c.stack = c.stack[:len(c.stack)-1]
	if err != nil {
		return nil, err
	}
	m.done[pol] = x
	return x, nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		return fmt.Sprintf("the scalar %q", n.Value)
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

// scalars reads a scalar or a list of scalars, expanding "$list" items.
func (c *compiler) scalars(n *yaml.Node) ([]string, error) {
	var raw []*yaml.Node
	switch n.Kind {
	case yaml.ScalarNode:
		raw = []*yaml.Node{n}
	case yaml.SequenceNode:
		raw = n.Content
	default:
		return nil, c.errf(n, "want a value or a list of values, got %s", kindName(n))
	}
	var out []string
	for _, it := range raw {
		if it.Kind != yaml.ScalarNode {
			return nil, c.errf(it, "want a value, got %s", kindName(it))
		}
		if strings.HasPrefix(it.Value, "$") {
			l, ok := c.lists[it.Value[1:]]
			if !ok {
				return nil, c.errf(it, "list %q is not defined", it.Value[1:])
			}
			out = append(out, l.items...)
			continue
		}
		out = append(out, it.Value)
	}
	return out, nil
}

func (c *compiler) strMatcher(n *yaml.Node) (strMatcher, error) {
	var m strMatcher
	if n.Kind != yaml.MappingNode {
		items, err := c.scalars(n)
		if err != nil {
			return m, err
		}
		for _, s := range items {
			m.addGlob(s)
		}
		return m, nil
	}
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		items, err := c.scalars(v)
		if err != nil {
			return m, err
		}
		switch k.Value {
		case "glob":
			for _, s := range items {
				m.addGlob(s)
			}
		case "eq":
			m.eq = append(m.eq, items...)
		case "prefix":
			m.prefixes = append(m.prefixes, items...)
		case "suffix":
			m.suffixes = append(m.suffixes, items...)
		case "contains":
			m.contains = append(m.contains, items...)
		case "except":
			ex, err := c.strMatcher(v)
			if err != nil {
				return m, err
			}
			m.except = &ex
		default:
			return m, c.errf(k, "string test %q: unknown, use glob, eq, prefix, suffix, contains or except", k.Value)
		}
	}
	return m, nil
}

func (c *compiler) numMatcher(n *yaml.Node) (numMatcher, error) {
	var m numMatcher
	if n.Kind != yaml.MappingNode {
		items, err := c.scalars(n)
		if err != nil {
			return m, err
		}
		for _, s := range items {
			v, err := parseNumber(s)
			if err != nil {
				return m, c.errf(n, "%v", err)
			}
			m.in = append(m.in, v)
		}
		return m, nil
	}
	ops := map[string]byte{"eq": '=', "ne": '!', "lt": '<', "le": 'l', "gt": '>', "ge": 'g',
		"mask_any": 'a', "mask_all": 'A', "mask_none": 'n'}
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		items, err := c.scalars(v)
		if err != nil {
			return m, err
		}
		var vals []int64
		for _, s := range items {
			x, err := parseNumber(s)
			if err != nil {
				return m, c.errf(v, "%s: %v", k.Value, err)
			}
			vals = append(vals, x)
		}
		switch k.Value {
		case "in":
			m.in = append(m.in, vals...)
		case "not_in":
			m.notIn = append(m.notIn, vals...)
		default:
			op, ok := ops[k.Value]
			if !ok {
				return m, c.errf(k, "number test %q: unknown, use eq, ne, lt, le, gt, ge, in, not_in, mask_any, mask_all or mask_none", k.Value)
			}
			if len(vals) != 1 {
				return m, c.errf(v, "%s: want one value, got %d", k.Value, len(vals))
			}
			m.ops = append(m.ops, numOp{op: op, val: vals[0]})
		}
	}
	return m, nil
}

func (c *compiler) ipMatcher(n *yaml.Node) (ipMatcher, error) {
	var m ipMatcher
	items, err := c.scalars(n)
	if err != nil {
		return m, err
	}
	for _, s := range items {
		p, err := parsePrefix(s)
		if err != nil {
			return m, c.errf(n, "ip: %q: want an address or a CIDR prefix like 10.0.0.0/8", s)
		}
		m.prefixes = append(m.prefixes, p)
	}
	return m, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// syscallNrs resolves names in the native ABI. A name that only other ABIs
// know (open on arm64) is skipped; a name no ABI knows is an error.
func (c *compiler) syscallNrs(at *yaml.Node, names []string) ([]int, error) {
	var out []int
	for _, name := range names {
		if nr, ok := event.SyscallNr(name); ok {
			out = append(out, nr)
			continue
		}
		known := false
		for _, a := range event.ABIs {
			if _, ok := a.Nr(name); ok {
				known = true
			}
		}
		if !known {
			return nil, c.errf(at, "syscall %q: unknown in every ABI vigil knows (%s)", name, abiList())
		}
	}
	return out, nil
}

func abiList() string {
	var s []string
	for _, a := range event.ABIs {
		s = append(s, string(a))
	}
	return strings.Join(s, ", ")
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
