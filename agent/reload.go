package agent

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/plugin"
)

// watch reloads rules, response policies, the model and the node
// configuration when one of their files changes, on SIGHUP, and on
// `vigil reload`. A bad file is rejected (its error names file and line)
// and what was in force stays.
func (a *Agent) watch(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	watchFiles(ctx, a.cfg.WatchEvery, hup, a.fingerprint, func(forced bool) { a.reload(forced) })
}

// watchFiles calls reload(true) on every signal and reload(false) when
// the files' fingerprint has changed and then held still for one look
// (looks come every interval, and half an interval apart while files
// change). A file is never loaded in the middle of being written: a
// writer that truncates and then writes (an editor, a shell's >, a config
// manager) shows an empty or short file for a moment, and loading it
// would drop every rule in it until the next change. A file that keeps
// changing is loaded once it holds still.
func watchFiles(ctx context.Context, every time.Duration, hup <-chan os.Signal, fingerprint func() string, reload func(forced bool)) {
	fast := max(every/2, time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	var s settle
	s.seen = fingerprint()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			// What the reload reads is at least as new as this look; a
			// change under way while it reads is seen at the next looks.
			s = settle{seen: fingerprint()}
			reload(true)
			t.Reset(every)
		case <-t.C:
			fp := fingerprint()
			if ctx.Err() != nil {
				return
			}
			load, moving := s.look(fp)
			if load {
				reload(false)
			}
			if moving {
				t.Reset(fast)
			} else {
				t.Reset(every)
			}
		}
	}
}

// settle tells when files that changed have held still for one look.
type settle struct {
	seen  string // the fingerprint at the previous look
	dirty bool   // a look saw a change since the last load
}

// look takes the fingerprint now. It reports whether to reload (the files
// changed since the last load and are as the previous look saw them) and
// whether they are changing (they differ from the previous look).
func (s *settle) look(fp string) (load, moving bool) {
	if fp != s.seen {
		s.seen, s.dirty = fp, true
		return false, true
	}
	if !s.dirty {
		return false, false
	}
	s.dirty = false
	return true, false
}

// watched lists the files the agent reloads from.
func (a *Agent) watched() []string {
	files := append([]string(nil), a.cfg.Detect.RuleFiles...)
	if a.cfg.Detect.Model != "" {
		files = append(files, a.cfg.Detect.Model)
	}
	if a.cfg.NodeConfigPath != "" {
		files = append(files, a.cfg.NodeConfigPath)
	}
	node := a.node()
	for _, d := range []struct{ dir, glob string }{{node.PolicyDir, "*.yaml"}, {node.ProfileDir, "*.json"}} {
		if d.dir == "" {
			continue
		}
		names, _ := filepath.Glob(filepath.Join(d.dir, d.glob))
		files = append(files, d.dir)
		files = append(files, names...)
	}
	return files
}

// fingerprint is the size, modification and change times and inode of
// every watched file.
func (a *Agent) fingerprint() string {
	var b strings.Builder
	files := a.watched()
	sort.Strings(files)
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			fmt.Fprintf(&b, "%s:-;", f)
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d", f, st.Size(), st.ModTime().UnixNano())
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			// A rewrite within the clock's granularity, or a rename of
			// another file into place, keeps size and mtime.
			fmt.Fprintf(&b, ":%d:%d.%d", sys.Ino, sys.Ctim.Sec, sys.Ctim.Nsec)
		}
		b.WriteByte(';')
	}
	return b.String()
}

func (a *Agent) node() annotations.NodeConfig { return a.reg.Node() }

// reload loads every file again; each part that loads is swapped in, each
// that fails keeps the old one. It returns what it did and the errors.
func (a *Agent) reload(forced bool) ([]string, error) {
	a.reloadRun.Lock() // the watcher and the control socket: one at a time
	defer a.reloadRun.Unlock()
	if forced {
		a.reopenOutputs() // SIGHUP and 'vigil reload': after logrotate
	}
	var done, errs []string
	{
		// The node configuration from its file (or the one the agent started
		// with), with its profile directory listed again.
		node, err := a.baseNode, error(nil)
		if a.cfg.NodeConfigPath != "" {
			node, err = annotations.LoadNodeConfig(a.cfg.NodeConfigPath)
		}
		if err == nil {
			node, err = plugin.WithProfiles(node)
		}
		if err != nil {
			errs = append(errs, err.Error())
		} else {
			a.reg.SetNode(node)
			done = append(done, fmt.Sprintf("node configuration %s (%d seccomp profiles)", a.cfg.NodeConfigPath, len(node.Profiles)))
		}
	}
	if a.eng != nil {
		if err := a.cfg.Detect.Reload(a.eng); err != nil {
			errs = append(errs, err.Error())
		} else {
			done = append(done, fmt.Sprintf("rules (%d) and model", len(a.eng.Rules())))
		}
	}
	if ps, err := control.LoadPolicies(a.node().PolicyDir); err != nil {
		errs = append(errs, "response policies: "+err.Error())
	} else {
		a.ctl.SetPolicies(ps)
		names := make([]string, 0, len(ps))
		for n := range ps {
			names = append(names, n)
		}
		sort.Strings(names)
		done = append(done, "response policies "+strings.Join(names, ", "))
	}
	a.reloads.Add(1)
	var err error
	a.reloadMu.Lock()
	a.reloadErr = ""
	if len(errs) > 0 {
		err = fmt.Errorf("%s (what was in force before stays)", strings.Join(errs, "; "))
		a.reloadErr = err.Error()
	}
	a.reloadMu.Unlock()
	why := "files changed"
	if forced {
		why = "requested"
	}
	a.pl.Note(audit.KindPolicy, 0, "", struct {
		Event  string   `json:"event"`
		Why    string   `json:"why"`
		Loaded []string `json:"loaded,omitempty"`
		Error  string   `json:"error,omitempty"`
	}{"reload", why, done, errorString(err)})
	if err != nil {
		a.log.WithError(err).Error("reload rejected a file")
	} else {
		a.log.WithField("loaded", done).Info("reloaded (" + why + ")")
	}
	return done, err
}
