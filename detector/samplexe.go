package detector

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// exeGate is a sample rule's unless_exes: the rule holds only while the
// cgroup runs a process these executables do not account for. A process
// is accounted for when the executable of its last execve matches and
// that file was not written inside the container (a miner dropped as
// /tmp/cc1 is not a compiler), and it did not map for execution a file
// the container wrote (a miner loaded as a shared object into
// /usr/bin/sleep by LD_PRELOAD, an openssl engine, sqlite3's .load). A
// process whose exec vigil never saw is not accounted for, and neither
// is a cgroup with no process known.
type exeGate struct{ m strMatcher }

func compileExeGate(c *compiler, name string, v *yaml.Node) (*exeGate, error) {
	m, err := c.strMatcher(v)
	if err != nil {
		return nil, fmt.Errorf("rule %q: unless_exes: %w", name, err)
	}
	return &exeGate{m: m}, nil
}

// unaccounted returns a process of cg the gate does not account for, as
// "pid N (exe)" for the verdict, and whether there is one.
func (g *exeGate) unaccounted(cg *cgState) (string, bool) {
	who, found, seen := "", false, false
	cg.procs.l.each(func(pid uint32, p *procState) {
		seen = true
		if found {
			return
		}
		if p.exe == "" || !g.m.match(p.exe) {
			who, found = fmt.Sprintf("pid %d (%s)", pid, orUnknown(p.exe)), true
			return
		}
		if _, written := cg.written.writer(p.exe); written {
			who, found = fmt.Sprintf("pid %d (%s, written in the container)", pid, p.exe), true
			return
		}
		if p.lin.code != "" {
			who, found = fmt.Sprintf("pid %d (%s, running %s, written in the container)", pid, p.exe, p.lin.code), true
		}
	})
	if !seen {
		return "no process known", true
	}
	return who, found
}

func orUnknown(exe string) string {
	if exe == "" {
		return "exec not seen"
	}
	return exe
}
