package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"strings"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/replay"
)

const auditReplayUsage = `Usage: vigil replay --container ID [--detect [--policy FILE]... [--model MODEL]] (--audit DIR | DIR)

Verifies the log (as 'vigil audit verify --live'; --no-verify skips it),
then rebuilds one container's timeline from the audit log: its process tree with
every exec and its arguments, the files it touched, its network peers, the
verdicts and actions recorded about it, its lifecycle, and any gaps.

With --detect the container's recorded events (and resource samples) run
through the detector again, in order, exactly as they were seen live. The
verdicts it reaches are compared with the recorded ones by id (ids depend
only on the input): with the rules and model of the live run they are the
same; with other rules (--policy, --no-default) or another model (--model)
the difference is what those would have changed. Exit status: 0 when the
replayed verdicts equal the recorded ones (or without --detect), 3 when they
differ, 1 on errors, 2 on usage errors.

--container takes a container id or a prefix of it; logs of 'vigil trace'
have no container ids: use --cgroup. Without either, replay lists the
containers in the log.

Examples:
  vigil replay --container 3f2a --audit /var/lib/vigil/audit
  vigil replay --container 3f2a --detect --audit /var/lib/vigil/audit
  vigil replay --cgroup 8123 --detect --policy stricter.yaml /tmp/run.audit

Options:
`

func replayMain(args []string, out io.Writer) int {
	fs := newAuditFlags("replay", auditReplayUsage)
	var ff filterFlags
	ff.add(fs, false)
	dirFlag := fs.String("audit", "", "the audit log `DIR`")
	detect := fs.Bool("detect", false, "run the recorded events through the detector again and compare the verdicts")
	var pol auditList
	fs.Var(&pol, "policy", "extra rule `FILE` for --detect (repeatable)")
	noDef := fs.Bool("no-default", false, "with --detect: leave the embedded default rules out")
	modelPath := fs.String("model", "", "with --detect: a learned `MODEL` to apply")
	asJSON := fs.Bool("json", false, "print the timeline (and comparison) as one JSON document")
	key := fs.String("key", "", "verify the log first with the node's key `FILE` (private or .pub); default: audit.key beside DIR")
	noVerify := fs.Bool("no-verify", false, "replay without verifying the log first")
	var oldKeys auditList
	fs.Var(&oldKeys, "old-key", "an earlier node key `FILE` (.pub) accepted by the verification, after a key change (repeatable)")
	top := fs.Int("top", 40, "show at most `N` files and peers (0: all)")
	pos, st, done := parseAuditFlags(fs, args)
	if done {
		return st
	}
	dir := *dirFlag
	switch {
	case dir == "" && len(pos) == 1:
		dir = pos[0]
	case dir == "" || len(pos) > 0:
		return fail("replay: give the audit log directory once, as --audit DIR or as the argument")
	}
	if !*detect && (len(pol) > 0 || *noDef || *modelPath != "") {
		return fail("replay: --policy, --no-default and --model need --detect")
	}
	if ff.ContainerID == "" && ff.CgroupID == 0 {
		if err := replay.ListContainers(dir, out); err != nil {
			return fail("replay: %v", err)
		}
		fmt.Fprintln(os.Stderr, "vigil: replay: give --container ID or --cgroup N (the log's containers are listed above)")
		return 2
	}
	var verified *audit.Report
	var unverified string
	if !*noVerify {
		rep, err := audit.VerifyWith(dir, audit.VerifyOptions{KeyFile: *key, Live: true, OldKeys: oldKeys})
		var p *audit.Problem
		switch {
		case errors.As(err, &p):
			return fail("replay: the log does not verify: %v (replay it anyway with --no-verify)", p)
		case errors.Is(err, iofs.ErrNotExist) && *key == "":
			unverified = "not verified: no key at " + audit.DefaultKeyFile(dir) + " (give --key FILE)"
		case err != nil:
			return fail("replay: verify: %v (replay without verifying with --no-verify)", err)
		default:
			verified = &rep
		}
	}
	var eng *detector.Engine
	if *detect {
		var model *detector.Model
		var err error
		if *modelPath != "" {
			if model, err = detector.LoadModel(*modelPath); err != nil {
				return fail("replay: --model: %v", err)
			}
		}
		if eng, err = replay.NewEngine(pol, *noDef, model); err != nil {
			return fail("replay: %v", err)
		}
	}
	tl, err := replay.Build(dir, audit.Filter{ContainerID: ff.ContainerID, CgroupID: ff.CgroupID}, eng)
	if err != nil {
		return fail("replay: %v", err)
	}
	tl.Verified, tl.Unverified = verified, unverified
	if len(tl.Containers) > 1 {
		return fail("replay: --container %q matches %d containers (%s): give more of the id", ff.ContainerID, len(tl.Containers), strings.Join(tl.Containers, ", "))
	}
	if tl.Records == 0 {
		return fail("replay: no records of container %q cgroup %d in %s", ff.ContainerID, ff.CgroupID, dir)
	}
	if *asJSON {
		b, err := json.MarshalIndent(tl, "", "  ")
		if err != nil {
			return fail("replay: %v", err)
		}
		fmt.Fprintln(out, string(b))
	} else {
		w := bufio.NewWriter(out)
		tl.Print(w, *top)
		w.Flush()
	}
	if tl.Detect != nil && !tl.Detect.Same {
		return 3
	}
	return 0
}

// timeline is what 'vigil replay --json' prints.
type timeline = replay.Timeline
