package detector

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// EngineVersion is the version of the rule language this engine reads. A
// rule file's required_engine_version may not be newer.
const EngineVersion = "1.0.0"

// Maturities are the maturity levels a rule may declare, most trusted first
// (as Falco's rules do).
var Maturities = []string{"stable", "incubating", "sandbox", "deprecated"}

// exceptionComps are the comparisons an exception field may use.
const exceptionComps = "=, !=, in, glob, startswith, endswith, contains, pmatch (strings); =, !=, in, <, <=, >, >= (numbers)"

// checkEngineVersion refuses a file that needs a newer engine.
func checkEngineVersion(c *compiler, v *yaml.Node) error {
	need, ok := parseVersion(v.Value)
	if v.Kind != yaml.ScalarNode || !ok {
		return c.errf(v, "required_engine_version: %q is not a version; want MAJOR[.MINOR[.PATCH]] like %s", v.Value, EngineVersion)
	}
	have, _ := parseVersion(EngineVersion)
	for i := range need {
		if need[i] != have[i] {
			if need[i] > have[i] {
				return c.errf(v, "required_engine_version %s: this file needs a newer rule engine than this vigil's (%s)", v.Value, EngineVersion)
			}
			break
		}
	}
	return nil
}

func parseVersion(s string) ([3]int, bool) {
	var out [3]int
	parts := strings.Split(strings.TrimPrefix(s, "v"), ".")
	if len(parts) == 0 || len(parts) > 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, false
		}
		out[i] = n
	}
	return out, true
}

func hasKey(n *yaml.Node, key string) bool {
	if n == nil || n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// ruleMeta reads a rule's tags and maturity.
func ruleMeta(c *compiler, d *ruleDef) (tags []string, maturity string, err error) {
	n := d.node
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "tags":
			if v.Kind != yaml.SequenceNode {
				return nil, "", c.errf(v, "rule %q: tags: want a list of words (MITRE ATT&CK ids like T1611, topics like container), got %s", d.name, kindName(v))
			}
			for _, t := range v.Content {
				if t.Kind != yaml.ScalarNode || t.Value == "" || strings.ContainsAny(t.Value, " \t,") {
					return nil, "", c.errf(t, "rule %q: tags: %q: a tag is one word without spaces or commas", d.name, t.Value)
				}
				tags = append(tags, t.Value)
			}
		case "maturity":
			ok := false
			for _, m := range Maturities {
				ok = ok || m == v.Value
			}
			if !ok {
				return nil, "", c.errf(v, "rule %q: maturity %q: unknown, use one of %s", d.name, v.Value, strings.Join(Maturities, ", "))
			}
			maturity = v.Value
		}
	}
	return tags, maturity, nil
}

// patchHead reads an entry that changes an earlier rule (override: or
// append: true): only exceptions and enabled may be changed.
func patchHead(c *compiler, d *ruleDef, override, appendKey *yaml.Node) error {
	d.patch = true
	d.excMode = "append"
	if appendKey != nil {
		var b bool
		if appendKey.Kind != yaml.ScalarNode || appendKey.Decode(&b) != nil || !b {
			return c.errf(appendKey, "rule %q: append: want true (it appends the entry's exceptions to the earlier rule), got %q", d.name, appendKey.Value)
		}
	}
	if override != nil {
		if override.Kind != yaml.MappingNode {
			return c.errf(override, "rule %q: override: want a mapping like {exceptions: append}, got %s", d.name, kindName(override))
		}
		for i := 0; i < len(override.Content); i += 2 {
			k, v := override.Content[i], override.Content[i+1]
			switch k.Value {
			case "exceptions":
				if v.Value != "append" && v.Value != "replace" {
					return c.errf(v, "rule %q: override: exceptions: %q: use append or replace", d.name, v.Value)
				}
				d.excMode = v.Value
				if !hasKey(d.node, "exceptions") {
					return c.errf(k, "rule %q: override names exceptions but the entry has no exceptions", d.name)
				}
			case "enabled":
				if v.Value != "replace" {
					return c.errf(v, "rule %q: override: enabled: %q: use replace", d.name, v.Value)
				}
			default:
				return c.errf(k, "rule %q: override: %q cannot be changed; allowed: exceptions (append or replace), enabled (replace)", d.name, k.Value)
			}
		}
	}
	n := d.node
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "rule", "sample", "enabled", "override", "append":
		case "exceptions":
			d.excNodes = append(d.excNodes, excNode{file: c.file, node: v, replace: d.excMode == "replace"})
		default:
			return c.errf(k, "rule %q: an entry that changes an earlier rule (override or append) may only give exceptions and enabled, not %q; to change %q, define the rule again in full", d.name, k.Value, k.Value)
		}
	}
	return nil
}

// patchRule applies a changing entry to the earlier rule.
func patchRule(c *compiler, old, d *ruleDef) error {
	if old.sample != d.sample {
		kind := "an event rule (rule: NAME)"
		if old.sample {
			kind = "a sample rule (sample: NAME)"
		}
		return c.errf(d.node, "rule %q: the earlier rule of that name is %s", d.name, kind)
	}
	if d.setOn {
		old.off = d.off
	}
	old.excNodes = append(old.excNodes, d.excNodes...)
	return nil
}

// excDef is one named exception: a tuple of fields and the tuples of
// values that silence the rule.
type excDef struct {
	name   string
	fields []string
	comps  []string
	single bool // fields was one name: values are single items
	values []excValue
}

type excValue struct {
	file  string
	items []*yaml.Node
}

// compileExceptions compiles the rule's exceptions (its own, then those
// later files appended) into one condition that holds when any value
// tuple matches; nil when there is none.
func compileExceptions(c *compiler, d *ruleDef) (cond, error) {
	var order []*excDef
	byName := map[string]*excDef{}
	add := func(file string, n *yaml.Node, own bool) error {
		saved := c.file
		c.file = file
		defer func() { c.file = saved }()
		if n.Kind != yaml.SequenceNode {
			return c.errf(n, "rule %q: exceptions: want a list of {name, fields, comps, values}, got %s", d.name, kindName(n))
		}
		for _, it := range n.Content {
			x, err := parseException(c, d.name, it)
			if err != nil {
				return err
			}
			old := byName[x.name]
			switch {
			case old == nil && x.fields == nil:
				return c.errf(it, "rule %q: exception %q: no exception of that name to append to; give fields to define it", d.name, x.name)
			case old == nil:
				byName[x.name] = x
				order = append(order, x)
			case own:
				return c.errf(it, "rule %q: exception %q is defined twice", d.name, x.name)
			default:
				if x.fields != nil && (strings.Join(x.fields, ",") != strings.Join(old.fields, ",") || strings.Join(x.comps, ",") != strings.Join(old.comps, ",")) {
					return c.errf(it, "rule %q: exception %q: appended values must use the fields and comps of the original (%s)", d.name, x.name, strings.Join(old.fields, ", "))
				}
				for _, v := range x.values {
					if err := checkTuple(c, d.name, old, v.items, it); err != nil {
						return err
					}
				}
				old.values = append(old.values, x.values...)
			}
		}
		return nil
	}
	for i := 0; i < len(d.node.Content); i += 2 {
		if d.node.Content[i].Value == "exceptions" {
			if err := add(d.file, d.node.Content[i+1], true); err != nil {
				return nil, err
			}
		}
	}
	for _, en := range d.excNodes {
		if en.replace {
			order, byName = nil, map[string]*excDef{}
		}
		if err := add(en.file, en.node, false); err != nil {
			return nil, err
		}
	}
	var out anyCond
	for _, x := range order {
		for _, v := range x.values {
			saved := c.file
			c.file = v.file
			var tuple allCond
			for i, f := range x.fields {
				fc, err := c.exceptionField(d.name, x.name, f, x.comps[i], v.items[i])
				if err != nil {
					c.file = saved
					return nil, err
				}
				tuple = append(tuple, fc)
			}
			c.file = saved
			out = append(out, tuple)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func parseException(c *compiler, rule string, n *yaml.Node) (*excDef, error) {
	if n.Kind != yaml.MappingNode {
		return nil, c.errf(n, "rule %q: an exception is a mapping {name, fields, comps, values}, got %s", rule, kindName(n))
	}
	x := &excDef{}
	var valuesNode *yaml.Node
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "name":
			x.name = v.Value
		case "fields":
			if v.Kind == yaml.ScalarNode {
				x.fields, x.single = []string{v.Value}, true
				break
			}
			if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
				return nil, c.errf(v, "rule %q: exception fields: want a field name or a list of them, got %s", rule, kindName(v))
			}
			for _, f := range v.Content {
				if !exceptionFieldKnown(f.Value) {
					return nil, c.errf(f, "rule %q: exception field %q: unknown; allowed: %s", rule, f.Value, exceptionFieldNames())
				}
				x.fields = append(x.fields, f.Value)
			}
		case "comps":
			if v.Kind == yaml.ScalarNode {
				x.comps = []string{v.Value}
				break
			}
			if v.Kind != yaml.SequenceNode {
				return nil, c.errf(v, "rule %q: exception comps: want a list, one per field, got %s", rule, kindName(v))
			}
			for _, cp := range v.Content {
				x.comps = append(x.comps, cp.Value)
			}
		case "values":
			valuesNode = v
		default:
			return nil, c.errf(k, "rule %q: exception: unknown key %q; allowed: name, fields, comps, values", rule, k.Value)
		}
	}
	if x.name == "" {
		return nil, c.errf(n, "rule %q: an exception needs a name", rule)
	}
	if x.single && !exceptionFieldKnown(x.fields[0]) {
		return nil, c.errf(n, "rule %q: exception field %q: unknown; allowed: %s", rule, x.fields[0], exceptionFieldNames())
	}
	if x.fields != nil {
		if x.comps == nil {
			for range x.fields {
				x.comps = append(x.comps, "=")
			}
		}
		if len(x.comps) != len(x.fields) {
			return nil, c.errf(n, "rule %q: exception %q: %d comps for %d fields; give one comparison per field", rule, x.name, len(x.comps), len(x.fields))
		}
	} else if x.comps != nil {
		return nil, c.errf(n, "rule %q: exception %q: comps without fields", rule, x.name)
	}
	if valuesNode != nil {
		if valuesNode.Kind != yaml.SequenceNode {
			return nil, c.errf(valuesNode, "rule %q: exception %q: values: want a list of tuples like [[/usr/bin/x, /etc/y]], got %s", rule, x.name, kindName(valuesNode))
		}
		for _, t := range valuesNode.Content {
			if t.Kind == yaml.SequenceNode && !(len(x.fields) == 1 && x.comps[0] == "in") {
				x.values = append(x.values, excValue{file: c.file, items: t.Content})
			} else {
				x.values = append(x.values, excValue{file: c.file, items: []*yaml.Node{t}})
			}
		}
		if x.fields != nil {
			for _, v := range x.values {
				if err := checkTuple(c, rule, x, v.items, valuesNode); err != nil {
					return nil, err
				}
			}
		}
	}
	return x, nil
}

func checkTuple(c *compiler, rule string, x *excDef, items []*yaml.Node, at *yaml.Node) error {
	if len(items) != len(x.fields) {
		return c.errf(at, "rule %q: exception %q: a value has %d items for the %d fields %s", rule, x.name, len(items), len(x.fields), strings.Join(x.fields, ", "))
	}
	return nil
}

func exceptionFieldKnown(f string) bool {
	_, s := strFields[f]
	_, n := numFields[f]
	return s || n || f == "argv" || f == "env" || f == "proc.aexe"
}

func exceptionFieldNames() string {
	var n []string
	for k := range strFields {
		n = append(n, k)
	}
	for k := range numFields {
		n = append(n, k)
	}
	n = append(n, "argv", "env", "proc.aexe")
	sortStrings(n)
	return strings.Join(n, ", ")
}

// exceptionField compiles one field of an exception tuple. Path fields
// compare the path the kernel used (not the process's own spelling): an
// exception never holds on a string the process chose alone.
func (c *compiler) exceptionField(rule, exc, field, comp string, v *yaml.Node) (cond, error) {
	bad := func(format string, a ...any) error {
		return c.errf(v, "rule %q: exception %q: field %s: %s", rule, exc, field, fmt.Sprintf(format, a...))
	}
	var items []string
	if comp == "in" {
		var err error
		if items, err = c.scalars(v); err != nil {
			return nil, err
		}
	} else {
		if v.Kind != yaml.ScalarNode {
			return nil, bad("comparison %q takes one value, got %s (use in for a list)", comp, kindName(v))
		}
		items = []string{v.Value}
	}
	if get, ok := numFields[field]; ok {
		var m numMatcher
		var vals []int64
		for _, s := range items {
			x, err := parseNumber(s)
			if err != nil {
				return nil, bad("%v", err)
			}
			vals = append(vals, x)
		}
		switch comp {
		case "=", "in":
			m.in = vals
		case "!=":
			m.notIn = vals
		case "<", "<=", ">", ">=":
			m.ops = []numOp{{op: map[string]byte{"<": '<', "<=": 'l', ">": '>', ">=": 'g'}[comp], val: vals[0]}}
		default:
			return nil, bad("comparison %q is not for numbers; allowed: =, !=, in, <, <=, >, >=", comp)
		}
		return &numCond{get: get, m: m}, nil
	}
	var m strMatcher
	negate := false
	switch comp {
	case "=":
		m.eq = items
	case "!=":
		m.eq, negate = items, true
	case "in", "glob":
		for _, s := range items {
			m.addGlob(s)
		}
	case "startswith":
		m.prefixes = items
	case "endswith":
		m.suffixes = items
	case "contains":
		m.contains = items
	case "pmatch":
		for _, s := range items {
			s = strings.TrimSuffix(s, "/")
			m.eq = append(m.eq, s)
			m.prefixes = append(m.prefixes, s+"/")
		}
	default:
		return nil, bad("comparison %q: unknown; allowed: %s", comp, exceptionComps)
	}
	var x cond
	switch field {
	case "argv":
		x = &argvCond{m: m}
	case "env":
		x = &envCond{m: m}
	case "proc.aexe":
		x = &ancCond{m: m}
	default:
		x = &strCond{field: field, get: strFields[field], m: m}
	}
	if negate {
		return notCond{x}, nil
	}
	return x, nil
}
