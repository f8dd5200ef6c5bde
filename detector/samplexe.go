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
// "pid N (exe)" for the verdict, and whether there is one. When the table
// holds no process, the processes that exited at or after from (the
// start of the rule's window) are judged instead: the window's CPU is
// theirs, and a container whose last known process was a compressor or a
// runtime is not unaccounted for in the samples that follow its exit.
// With none of those either, no process is known.
func (g *exeGate) unaccounted(cg *cgState, from int64) (string, bool) {
	who, found, seen := "", false, false
	cg.procs.l.each(func(pid uint32, p *procState) {
		seen = true
		if found {
			return
		}
		who, found = g.judge(cg, pid, p.exe, p.lin.code, "")
	})
	if seen {
		return who, found
	}
	exited := false
	for _, p := range cg.gone {
		if p.t < from {
			continue
		}
		exited = true
		if who, found := g.judge(cg, p.pid, p.exe, p.code, ", exited"); found {
			return who, true
		}
	}
	if !exited {
		return "no process known", true
	}
	return "", false
}

// judge reports a process (pid, the executable of its last execve, a
// written file it mapped for execution) the gate does not account for.
func (g *exeGate) judge(cg *cgState, pid uint32, exe, code, note string) (string, bool) {
	if exe == "" || !g.m.match(exe) {
		return fmt.Sprintf("pid %d (%s%s)", pid, orUnknown(exe), note), true
	}
	if _, written := cg.written.writer(exe); written {
		return fmt.Sprintf("pid %d (%s, written in the container%s)", pid, exe, note), true
	}
	if code != "" {
		return fmt.Sprintf("pid %d (%s, running %s, written in the container%s)", pid, exe, code, note), true
	}
	return "", false
}

func orUnknown(exe string) string {
	if exe == "" {
		return "exec not seen"
	}
	return exe
}
