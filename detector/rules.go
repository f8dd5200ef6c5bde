package detector

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"vigil.dev/vigil/event"
)

//go:embed rules/default.yaml
var defaultRulesFS embed.FS

// DefaultRulesName is how errors and verdicts name the embedded rule set.
const DefaultRulesName = "default.yaml"

// DefaultRules returns the text of the embedded default rule set.
func DefaultRules() []byte {
	b, err := defaultRulesFS.ReadFile("rules/default.yaml")
	if err != nil {
		panic("detector: embedded default rules missing: " + err.Error())
	}
	return b
}

// rule is a compiled event rule.
type rule struct {
	idx      int
	name     string
	src      string // file:line
	class    Class
	severity Severity
	score    float64
	desc     string
	message  string
	nrs      []int
	cond     cond // nil: every event of nrs
	rate     *rateSpec
	throttle int64 // ns between two verdicts of this rule for one process
	tags     []string
	maturity string
}

type rateSpec struct {
	count      uint32
	window     int64 // ns
	perProcess bool
}

// sampleRule is a compiled resource rule.
type sampleRule struct {
	idx      int
	name     string
	src      string
	class    Class
	severity Severity
	score    float64
	desc     string
	tests    []sampleTest
	sustain  int64 // ns the tests must hold
	throttle int64
	unless   *exeGate // unless_exes: nil, or the executables that do not count
	tags     []string
	maturity string
}

type sampleTest struct {
	field int  // index in sampleFields
	op    byte // '<', 'l', '>', 'g'
	val   float64
}

var sampleFields = []string{"cpu_cores", "cpu_demand", "cpu_wait", "syscall_rate", "syscalls_per_cpu_second", "threads", "baseline_ratio", "throttled_per_second", "periodic_conns"}

// Indexes of sampleFields in sampleVals.
const (
	sfCPUCores = iota
	sfCPUDemand
	sfCPUWait
	sfSyscallRate
	sfSyscallsPerCPUSecond
	sfThreads
	sfBaselineRatio
	sfThrottledPerSecond
	sfPeriodicConns
	nSampleFields
)

// sampleVals are the values of sampleFields over a window (0: unknown).
type sampleVals [nSampleFields]float64

// ruleSet is one compiled generation of rules, swapped atomically by Reload.
type ruleSet struct {
	gen  uint64
	byNr [][]*rule // native syscall number -> rules naming it
	// pre holds, per byNr entry, the rule's filter for that syscall
	// (prefilter.go): nil, or what the event must pass first
	pre     [][]*pathFilter
	masks   []*ruleMasks // per byNr entry: which rules an event's path hashes leave (prefilter.go)
	rules   []*rule
	samples []*sampleRule
	model   *Model
	online  *onlineModel
	comps   pathComps // the first path components the rules' filters name
}

// ruleSource is a rule file's text and name.
type ruleSource struct {
	name string
	data []byte
}

func loadSources(cfg Config) ([]ruleSource, error) {
	var srcs []ruleSource
	if !cfg.NoDefaultRules {
		srcs = append(srcs, ruleSource{name: DefaultRulesName, data: DefaultRules()})
	}
	for _, f := range cfg.RuleFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read rule file: %w", err)
		}
		srcs = append(srcs, ruleSource{name: f, data: b})
	}
	for i, b := range cfg.RuleTexts {
		srcs = append(srcs, ruleSource{name: "rules#" + strconv.Itoa(i+1), data: b})
	}
	return srcs, nil
}

type ruleDef struct {
	file   string
	node   *yaml.Node
	name   string
	sample bool
	off    bool
	// patch: the entry changes an earlier rule of the same name (enabled,
	// appended or replaced exceptions) instead of replacing it.
	patch    bool
	setOn    bool      // a patch that says enabled
	excMode  string    // a patch's override of exceptions: "append" or "replace"
	excNodes []excNode // exceptions added to the rule by later files, in order
}

// excNode is an exceptions list of a rule file, with the file's name.
type excNode struct {
	file    string
	node    *yaml.Node
	replace bool // override: {exceptions: replace}: drop the exceptions before
}

// compileRules parses every source (later ones override lists, macros and
// rules of the same name), then compiles the rules.
func compileRules(srcs []ruleSource, extraLists map[string][]string) (*ruleSet, error) {
	lists := map[string]*listDef{}
	macros := map[string]*macroDef{}
	var defs []*ruleDef
	byName := map[string]*ruleDef{}
	for _, src := range srcs {
		var doc yaml.Node
		dec := yaml.NewDecoder(bytes.NewReader(src.data))
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				continue
			}
			return nil, fmt.Errorf("%s: %w", src.name, err)
		}
		if len(doc.Content) == 0 {
			continue
		}
		root := doc.Content[0]
		c := &compiler{file: src.name}
		if root.Kind != yaml.MappingNode {
			return nil, c.errf(root, "a rule file is a mapping with the keys lists, macros and rules, got %s", kindName(root))
		}
		for i := 0; i < len(root.Content); i += 2 {
			k, v := root.Content[i], root.Content[i+1]
			switch k.Value {
			case "lists":
				if err := parseLists(c, v, lists); err != nil {
					return nil, err
				}
			case "macros":
				if v.Kind != yaml.MappingNode {
					return nil, c.errf(v, "macros: want a mapping of name: condition, got %s", kindName(v))
				}
				for j := 0; j < len(v.Content); j += 2 {
					macros[v.Content[j].Value] = &macroDef{file: src.name, node: v.Content[j+1]}
				}
			case "rules":
				if v.Kind != yaml.SequenceNode {
					return nil, c.errf(v, "rules: want a list of rules, got %s", kindName(v))
				}
				for _, rn := range v.Content {
					d, err := ruleHead(c, rn)
					if err != nil {
						return nil, err
					}
					old, ok := byName[d.name]
					if d.patch && !ok && d.excNodes == nil && d.excMode == "" {
						d.patch = false // a lone enabled with no earlier rule: as before, a rule of its own
					}
					if d.patch {
						if !ok {
							return nil, c.errf(rn, "rule %q: no earlier rule of that name to change (append, override and a lone enabled change a rule of an earlier file)", d.name)
						}
						if err := patchRule(c, old, d); err != nil {
							return nil, err
						}
						continue
					}
					if ok {
						*old = *d // a later file replaces a rule in place
						continue
					}
					byName[d.name] = d
					defs = append(defs, d)
				}
			case "required_engine_version":
				if err := checkEngineVersion(c, v); err != nil {
					return nil, err
				}
			default:
				return nil, c.errf(k, "unknown top-level key %q; allowed: required_engine_version, lists, macros, rules", k.Value)
			}
		}
	}
	for name, items := range extraLists {
		l := lists[name]
		if l == nil {
			l = &listDef{file: "config"}
			lists[name] = l
		}
		l.items = append(l.items, items...)
	}
	rs := &ruleSet{byNr: make([][]*rule, maxNativeNr+1), pre: make([][]*pathFilter, maxNativeNr+1)}
	for _, d := range defs {
		if d.off {
			continue
		}
		c := &compiler{file: d.file, lists: lists, macros: macros}
		if d.sample {
			sr, err := compileSample(c, d)
			if err != nil {
				return nil, err
			}
			sr.idx = len(rs.samples)
			rs.samples = append(rs.samples, sr)
			continue
		}
		r, err := compileRule(c, d)
		if err != nil {
			return nil, err
		}
		r.idx = len(rs.rules)
		rs.rules = append(rs.rules, r)
		for _, nr := range r.nrs {
			rs.byNr[nr] = append(rs.byNr[nr], r)
			rs.pre[nr] = append(rs.pre[nr], newPathFilter(r.cond, int32(nr), &rs.comps))
		}
	}
	rs.masks = make([]*ruleMasks, len(rs.pre))
	for nr, pres := range rs.pre {
		rs.masks[nr] = newRuleMasks(pres)
	}
	return rs, nil
}

func parseLists(c *compiler, v *yaml.Node, lists map[string]*listDef) error {
	if v.Kind != yaml.MappingNode {
		return c.errf(v, "lists: want a mapping of name: [items], got %s", kindName(v))
	}
	for j := 0; j < len(v.Content); j += 2 {
		k, items := v.Content[j], v.Content[j+1]
		appendTo := false
		if items.Kind == yaml.MappingNode {
			if len(items.Content) != 2 || items.Content[0].Value != "append" {
				return c.errf(items, "list %q: want [items] or {append: [items]}", k.Value)
			}
			appendTo = true
			items = items.Content[1]
		}
		if items.Kind != yaml.SequenceNode {
			return c.errf(items, "list %q: want a list of values, got %s", k.Value, kindName(items))
		}
		var vals []string
		for _, it := range items.Content {
			if it.Kind != yaml.ScalarNode {
				return c.errf(it, "list %q: items are values, got %s", k.Value, kindName(it))
			}
			if strings.HasPrefix(it.Value, "$") { // a list may include another
				inner, ok := lists[it.Value[1:]]
				if !ok {
					return c.errf(it, "list %q is not defined (define it before %q)", it.Value[1:], k.Value)
				}
				vals = append(vals, inner.items...)
				continue
			}
			vals = append(vals, it.Value)
		}
		if old, ok := lists[k.Value]; ok && appendTo {
			old.items = append(old.items, vals...)
			continue
		}
		lists[k.Value] = &listDef{file: c.file, line: k.Line, items: vals}
	}
	return nil
}

var ruleKeys = map[string]bool{"rule": true, "sample": true, "class": true, "severity": true, "desc": true,
	"message": true, "syscalls": true, "when": true, "rate": true, "throttle": true, "enabled": true,
	"score": true, "for": true, "tags": true, "maturity": true, "exceptions": true, "unless_exes": true}

const ruleKeyList = "rule, sample, class, severity, desc, message, syscalls, when, exceptions, rate, for, unless_exes, throttle, score, tags, maturity, enabled"

func ruleHead(c *compiler, n *yaml.Node) (*ruleDef, error) {
	if n.Kind != yaml.MappingNode {
		return nil, c.errf(n, "a rule is a mapping (rule: name, class: ..., syscalls: [...], when: ...), got %s", kindName(n))
	}
	d := &ruleDef{file: c.file, node: n}
	hasEnabled, others := false, false
	var override, appendKey *yaml.Node
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "rule":
			d.name = v.Value
		case "sample":
			d.name, d.sample = v.Value, true
		case "enabled":
			var b bool
			if err := v.Decode(&b); err != nil {
				return nil, c.errf(v, "enabled: want true or false, got %q", v.Value)
			}
			d.off = !b
			hasEnabled, d.setOn = true, true
		case "override":
			override = v
		case "append":
			appendKey = v
		default:
			others = true
		}
	}
	if d.name == "" {
		return nil, c.errf(n, "rule without a name: give it `rule: NAME` (event rule) or `sample: NAME` (resource rule)")
	}
	switch {
	case override != nil || appendKey != nil:
		if err := patchHead(c, d, override, appendKey); err != nil {
			return nil, err
		}
	case hasEnabled && !others:
		d.patch = true // `- {rule: NAME, enabled: false}` switches a rule off or on
	}
	return d, nil
}

func compileCommon(c *compiler, d *ruleDef) (class Class, sev Severity, score float64, desc, msg string, throttle int64, err error) {
	throttle = int64(10 * time.Second)
	if d.node == nil {
		return class, sev, score, desc, msg, throttle, fmt.Errorf("%s: rule %q: only changed (append/override) but never defined", d.file, d.name)
	}
	seen := map[string]bool{}
	n := d.node
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		seen[k.Value] = true
		switch k.Value {
		case "class":
			if class, err = parseClass(v.Value); err != nil {
				return class, sev, score, desc, msg, throttle, c.errf(v, "rule %q: %v", d.name, err)
			}
		case "severity":
			if sev, err = ParseSeverity(v.Value); err != nil {
				return class, sev, score, desc, msg, throttle, c.errf(v, "rule %q: %v", d.name, err)
			}
		case "desc":
			desc = v.Value
		case "message":
			msg = v.Value
		case "score":
			if score, err = strconv.ParseFloat(v.Value, 64); err != nil || score < 0 {
				return class, sev, score, desc, msg, throttle, c.errf(v, "rule %q: score %q: want a number >= 0", d.name, v.Value)
			}
		case "throttle":
			dur, perr := time.ParseDuration(v.Value)
			if perr != nil || dur < 0 {
				return class, sev, score, desc, msg, throttle, c.errf(v, "rule %q: throttle %q: want a duration like 10s or 0s", d.name, v.Value)
			}
			throttle = int64(dur)
		default:
			if !ruleKeys[k.Value] {
				return class, sev, score, desc, msg, throttle, c.errf(k, "rule %q: unknown key %q; allowed: %s", d.name, k.Value, ruleKeyList)
			}
		}
	}
	for _, req := range []string{"class", "severity"} {
		if !seen[req] {
			return class, sev, score, desc, msg, throttle, c.errf(n, "rule %q: missing %q", d.name, req)
		}
	}
	if score == 0 {
		score = float64(sev) / 4
	}
	if msg == "" {
		msg = desc
	}
	if msg == "" {
		msg = d.name
	}
	return class, sev, score, desc, msg, throttle, nil
}

func compileRule(c *compiler, d *ruleDef) (*rule, error) {
	r := &rule{name: d.name, src: fmt.Sprintf("%s:%d", d.file, d.node.Line)}
	var err error
	if r.class, r.severity, r.score, r.desc, r.message, r.throttle, err = compileCommon(c, d); err != nil {
		return nil, err
	}
	if r.tags, r.maturity, err = ruleMeta(c, d); err != nil {
		return nil, err
	}
	exc, err := compileExceptions(c, d)
	if err != nil {
		return nil, err
	}
	n := d.node
	hasSyscalls := false
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "syscalls":
			hasSyscalls = true
			names, err := c.scalars(v)
			if err != nil {
				return nil, err
			}
			if len(names) == 0 {
				return nil, c.errf(v, "rule %q: syscalls is empty", d.name)
			}
			if r.nrs, err = c.syscallNrs(v, names); err != nil {
				return nil, err
			}
		case "when":
			if r.cond, err = c.cond(v); err != nil {
				return nil, err
			}
		case "rate":
			if r.rate, err = parseRate(c, d.name, v); err != nil {
				return nil, err
			}
		case "for":
			return nil, c.errf(k, "rule %q: `for` belongs to sample rules; event rules use rate: {count, window}", d.name)
		case "unless_exes":
			return nil, c.errf(k, "rule %q: unless_exes belongs to sample rules; event rules test exe in when", d.name)
		}
	}
	if !hasSyscalls {
		return nil, c.errf(n, "rule %q: missing \"syscalls\": every event rule names the syscalls it looks at (that is how it is dispatched)", d.name)
	}
	if exc != nil {
		// the rule's condition first: exceptions cost only when it holds
		if r.cond == nil {
			r.cond = notCond{exc}
		} else {
			r.cond = allCond{r.cond, notCond{exc}}
		}
	}
	return r, nil
}

func parseRate(c *compiler, name string, v *yaml.Node) (*rateSpec, error) {
	if v.Kind != yaml.MappingNode {
		return nil, c.errf(v, "rule %q: rate: want {count: N, window: DURATION, per: process|container}", name)
	}
	rs := &rateSpec{}
	for i := 0; i < len(v.Content); i += 2 {
		k, x := v.Content[i], v.Content[i+1]
		switch k.Value {
		case "count":
			n, err := strconv.ParseUint(x.Value, 10, 32)
			if err != nil || n < 1 {
				return nil, c.errf(x, "rule %q: rate count %q: want an integer >= 1", name, x.Value)
			}
			rs.count = uint32(n)
		case "window":
			d, err := time.ParseDuration(x.Value)
			if err != nil || d <= 0 {
				return nil, c.errf(x, "rule %q: rate window %q: want a positive duration like 1s", name, x.Value)
			}
			rs.window = int64(d)
		case "per":
			switch x.Value {
			case "process":
				rs.perProcess = true
			case "container":
			default:
				return nil, c.errf(x, "rule %q: rate per %q: use process or container", name, x.Value)
			}
		default:
			return nil, c.errf(k, "rule %q: rate: unknown key %q; allowed: count, window, per", name, k.Value)
		}
	}
	if rs.count == 0 || rs.window == 0 {
		return nil, c.errf(v, "rule %q: rate needs both count and window", name)
	}
	return rs, nil
}

func compileSample(c *compiler, d *ruleDef) (*sampleRule, error) {
	r := &sampleRule{name: d.name, src: fmt.Sprintf("%s:%d", d.file, d.node.Line)}
	var err error
	var msg string
	if r.class, r.severity, r.score, r.desc, msg, r.throttle, err = compileCommon(c, d); err != nil {
		return nil, err
	}
	if r.tags, r.maturity, err = ruleMeta(c, d); err != nil {
		return nil, err
	}
	if len(d.excNodes) > 0 || hasKey(d.node, "exceptions") {
		return nil, c.errf(d.node, "rule %q: exceptions belong to event rules (rule: NAME); a sample rule has no event fields to match", d.name)
	}
	if r.desc == "" {
		r.desc = msg
	}
	n := d.node
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "for":
			dur, err := time.ParseDuration(v.Value)
			if err != nil || dur < 0 {
				return nil, c.errf(v, "rule %q: for %q: want a duration like 3s", d.name, v.Value)
			}
			r.sustain = int64(dur)
		case "unless_exes":
			if r.unless, err = compileExeGate(c, d.name, v); err != nil {
				return nil, err
			}
		case "when":
			if v.Kind != yaml.MappingNode {
				return nil, c.errf(v, "rule %q: when: want a mapping of %s: {gt|ge|lt|le: N}", d.name, strings.Join(sampleFields, "|"))
			}
			for j := 0; j < len(v.Content); j += 2 {
				fk, fv := v.Content[j], v.Content[j+1]
				fi := slices.Index(sampleFields, fk.Value)
				if fi < 0 {
					return nil, c.errf(fk, "rule %q: unknown sample field %q; allowed: %s", d.name, fk.Value, strings.Join(sampleFields, ", "))
				}
				if fv.Kind != yaml.MappingNode {
					return nil, c.errf(fv, "rule %q: %s: want {gt|ge|lt|le: N}", d.name, fk.Value)
				}
				for m := 0; m < len(fv.Content); m += 2 {
					ok, ov := fv.Content[m], fv.Content[m+1]
					op := map[string]byte{"lt": '<', "le": 'l', "gt": '>', "ge": 'g'}[ok.Value]
					if op == 0 {
						return nil, c.errf(ok, "rule %q: %s: test %q: use gt, ge, lt or le", d.name, fk.Value, ok.Value)
					}
					val, err := strconv.ParseFloat(ov.Value, 64)
					if err != nil {
						return nil, c.errf(ov, "rule %q: %s: %q is not a number", d.name, fk.Value, ov.Value)
					}
					r.tests = append(r.tests, sampleTest{field: fi, op: op, val: val})
				}
			}
		case "syscalls", "rate":
			return nil, c.errf(k, "rule %q: %q belongs to event rules (rule: NAME); sample rules use when and for", d.name, k.Value)
		}
	}
	if len(r.tests) == 0 {
		return nil, c.errf(n, "rule %q: a sample rule needs when: {cpu_cores: {ge: N}, ...}", d.name)
	}
	return r, nil
}

// render fills {field} placeholders of a message from the event, its
// process and the cgroup's written files (w may be nil).
func render(msg string, ev *event.Event, p *procState, w *writtenFiles) string {
	if !strings.Contains(msg, "{") {
		return msg
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '{')
		if i < 0 {
			b.WriteString(msg)
			break
		}
		j := strings.IndexByte(msg[i:], '}')
		if j < 0 {
			b.WriteString(msg)
			break
		}
		b.WriteString(msg[:i])
		key := msg[i+1 : i+j]
		switch key {
		case "syscall":
			b.WriteString(ev.Name())
		case "path":
			b.WriteString(ev.Path)
		case "path2":
			b.WriteString(ev.Path2)
		case "addr":
			b.WriteString(ev.Addr.String())
		case "comm":
			b.WriteString(ev.Comm)
		case "pid":
			b.WriteString(strconv.FormatUint(uint64(ev.PID), 10))
		case "ret":
			b.WriteString(strconv.FormatInt(ev.Ret, 10))
		case "errno":
			b.WriteString(event.ErrnoName(ev.Errno()))
		case "argv":
			b.WriteString(strings.Join(ev.Argv, " "))
		case "env":
			b.WriteString(strings.Join(ev.Env, " "))
		case "clone_flags":
			if f, ok := ev.CloneFlagsOf(); ok {
				b.WriteString("0x" + strconv.FormatUint(f, 16))
			}
		case "exe":
			if p != nil && p.exe != "" {
				b.WriteString(p.exe)
			} else {
				b.WriteString("?")
			}
		case "proc.pexe":
			if p != nil && p.lin.anc[0] != "" {
				b.WriteString(p.lin.anc[0])
			} else {
				b.WriteString("?")
			}
		case "fd_path":
			if p != nil {
				b.WriteString(p.fdPath(int32(ev.Args[0])))
			}
		case "exe_writer":
			wr := ""
			if w != nil {
				wr, _ = w.writer(ev.Path)
			}
			if wr == "" {
				wr = "?"
			}
			b.WriteString(wr)
		case "arg0", "arg1", "arg2", "arg3", "arg4", "arg5":
			b.WriteString("0x" + strconv.FormatUint(ev.Args[key[3]-'0'], 16))
		default:
			b.WriteString(msg[i : i+j+1])
		}
		msg = msg[i+j+1:]
	}
	return b.String()
}
