package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"vigil.dev/vigil/agent"
)

// version and commit are set at link time by `make build`
// (-ldflags "-X main.version=... -X main.commit=..."); when empty, the
// module's build info says what it knows.
var version, commit string

func init() {
	register("version", "print vigil's version, commit and Go version", runVersion)
}

const versionUsage = `Usage: vigil version

Prints the version of this binary (from 'git describe' when built with
'make build', else the module's version), the commit it was built from
(marked modified when the tree had uncommitted changes) and the Go version.

`

func runVersion(args []string) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.Usage = usageFunc(fs, versionUsage)
	if status, done := parseFlags(fs, args); done {
		return status
	}
	if fs.NArg() > 0 {
		return fail("version: unexpected argument %q", fs.Arg(0))
	}
	printVersion(os.Stdout, buildInfo())
	return 0
}

func printVersion(w io.Writer, b agent.BuildInfo) {
	fmt.Fprintf(w, "vigil %s\n", b.Version)
	c := b.Commit
	if c == "" {
		c = "unknown"
	}
	if b.Modified {
		c += " (modified)"
	}
	fmt.Fprintf(w, "commit %s\n", c)
	fmt.Fprintf(w, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// buildInfo is what this binary knows of its build.
func buildInfo() agent.BuildInfo {
	bi, _ := debug.ReadBuildInfo()
	return buildOf(bi, version, commit)
}

// buildOf prefers the link-time version and commit; else the module's
// version and the VCS settings Go records (none with -buildvcs=false).
func buildOf(bi *debug.BuildInfo, version, commit string) agent.BuildInfo {
	b := agent.BuildInfo{Version: version, Commit: commit}
	if bi != nil {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
		if b.Version == "" {
			b.Version = bi.Main.Version
		}
	}
	if strings.HasSuffix(b.Version, "-dirty") {
		b.Modified = true
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	return b
}
