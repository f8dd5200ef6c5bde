package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/nri/pkg/api"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/annotations"
)

// RuntimeInfo is what the plugin knows of the runtime it is connected to.
type RuntimeInfo = agentctl.RuntimeInfo

// seccompMinNRI is the first NRI release whose container adjustments carry
// a seccomp policy. A runtime built with an older NRI drops that field of
// vigil's adjustment without a word: the container then runs with the
// runtime's own profile, and the notify listener is never connected.
const seccompMinNRI = "0.10.0"

// runtimeCaps decides what the runtime can apply from what it reports at
// Configure: its name, version and the NRI version it was built with (which
// recent runtimes report, and the NRI stub otherwise infers from its table
// of runtime releases). CRI-O before 1.35 never applies them: the v1.34.0
// module is built with NRI v0.9.1-0.20250219030224-e597e7849f24, although
// NRI's table says v0.10.0 for it. Without an NRI version, containerd 2.2
// and later (NRI v0.10) apply seccomp policies; other runtimes are assumed
// not to, so that no container depends on a listener it will not get.
func runtimeCaps(name, version, nriVersion string) RuntimeInfo {
	rt := RuntimeInfo{Name: name, Version: version}
	if v, ok := parseVersion(version); ok && name == "cri-o" && compareVersion(v, [3]int{1, 35, 0}) < 0 {
		rt.NRIVersion = nriVersion
		if _, ok := parseVersion(nriVersion); !ok {
			rt.NRIVersion = ""
		}
		rt.SeccompWhy = fmt.Sprintf("cri-o %s is built with NRI v0.9 (CRI-O 1.34.0's go.mod), which drops the seccomp policy of NRI adjustments", version)
		return rt
	}
	if v, ok := parseVersion(nriVersion); ok {
		rt.NRIVersion = nriVersion
		min, _ := parseVersion(seccompMinNRI)
		rt.Seccomp = compareVersion(v, min) >= 0
		if rt.Seccomp {
			rt.SeccompWhy = fmt.Sprintf("the runtime's NRI %s takes seccomp policies (since v%s)", nriVersion, seccompMinNRI)
		} else {
			rt.SeccompWhy = fmt.Sprintf("the runtime's NRI %s predates seccomp policies in adjustments (v%s)", nriVersion, seccompMinNRI)
		}
		return rt
	}
	if strings.EqualFold(name, "containerd") {
		if v, ok := parseVersion(version); ok && compareVersion(v, [3]int{2, 2, 0}) >= 0 {
			rt.Seccomp = true
			rt.SeccompWhy = fmt.Sprintf("containerd %s (2.2 and later ship NRI v%s or newer)", version, seccompMinNRI)
			return rt
		}
	}
	rt.SeccompWhy = fmt.Sprintf("%s %s does not report its NRI version and is not known to apply seccomp policies from NRI", name, version)
	return rt
}

// parseVersion reads "v1.2.3", "1.2.3" or "1.2.3-rc.1+meta" (the pre-release
// and build parts are ignored).
func parseVersion(s string) ([3]int, bool) {
	var v [3]int
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

func compareVersion(a, b [3]int) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// seccompUnsupported decides what to do with a container whose policy asks
// for a seccomp profile the runtime cannot take through NRI. With the
// node's seccompUnsupported "fallback" (the default) the container runs
// with the runtime's own seccomp profile (what its pod asked the runtime
// for): it returns the policy to build the adjustment from, with no seccomp
// profile, and the warning to log. With "reject" it returns the error that
// fails the container's creation.
func seccompUnsupported(pol annotations.Policy, rt RuntimeInfo, node annotations.NodeConfig) (annotations.Policy, string, error) {
	if pol.Seccomp == "" || rt.Seccomp {
		return pol, "", nil
	}
	what := fmt.Sprintf("vigil: seccomp profile %q cannot be applied: %s", pol.Seccomp, rt.SeccompWhy)
	if node.SeccompUnsupported == annotations.SeccompUnsupportedReject {
		return pol, "", fmt.Errorf(`%s; the node's seccompUnsupported is %q (allowed values: %q runs the container with the runtime's own seccomp profile, %q)`,
			what, node.SeccompUnsupported, annotations.SeccompUnsupportedFallback, annotations.SeccompUnsupportedReject)
	}
	out := pol
	out.Seccomp = ""
	return out, what + "; the container runs with the runtime's own seccomp profile (node seccompUnsupported: fallback)", nil
}

// CRI-O's annotations on every container (github.com/cri-o/cri-o
// pkg/annotations): its NRI leaves Container.Name empty unless the
// Kubernetes label io.kubernetes.container.name was copied into the
// annotations, and has no Image field.
const (
	crioMetadata = "io.kubernetes.cri-o.Metadata" // {"name":"app","attempt":0}
	crioImage    = "io.kubernetes.cri-o.Image"    // the image as the container spec names it
	crioImageAlt = "io.kubernetes.cri-o.ImageName"
)

// containerName is the container's name: NRI's, or CRI-O's metadata.
func containerName(ctr *api.Container) string {
	if n := ctr.GetName(); n != "" {
		return n
	}
	var md struct {
		Name string `json:"name"`
	}
	if s := ctr.GetAnnotations()[crioMetadata]; s != "" && json.Unmarshal([]byte(s), &md) == nil {
		return md.Name
	}
	return ""
}

// errNoPid: the runtime gave no pid and none was found.
var errNoPid = errors.New("no pid from the runtime and no container monitor (conmon) naming the container")

// monitorChild finds the init process of a container that a per-container
// monitor runs (CRI-O's conmon, started with "-c ID" or "--cid ID"): the
// monitor's child. It reads proc (normally /proc).
func monitorChild(proc, id string) (int, error) {
	if id == "" {
		return 0, errNoPid
	}
	ents, err := os.ReadDir(proc)
	if err != nil {
		return 0, fmt.Errorf("find the container's pid: %w", err)
	}
	var pids []int
	monitor := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pids = append(pids, pid)
		if monitor == 0 {
			if cmd, err := os.ReadFile(filepath.Join(proc, e.Name(), "cmdline")); err == nil && namesContainer(cmd, id) {
				monitor = pid
			}
		}
	}
	if monitor == 0 {
		return 0, errNoPid
	}
	for _, pid := range pids {
		if ppid, err := parentOf(proc, pid); err == nil && ppid == monitor {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("the container's monitor (pid %d) has no child", monitor)
}

// namesContainer reports whether a NUL-separated command line is a
// container monitor's for id: conmon with "-c ID", "--cid ID" or "--cid=ID".
func namesContainer(cmdline []byte, id string) bool {
	args := strings.Split(string(bytes.TrimRight(cmdline, "\x00")), "\x00")
	if len(args) == 0 || filepath.Base(args[0]) != "conmon" {
		return false
	}
	for i, a := range args {
		if a == "--cid="+id {
			return true
		}
		if (a == "-c" || a == "--cid") && i+1 < len(args) && args[i+1] == id {
			return true
		}
	}
	return false
}

// parentOf reads a process's parent pid from /proc/PID/stat (the field
// after the parenthesised comm, which may itself hold spaces or ')').
func parentOf(proc string, pid int) (int, error) {
	data, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat of %d: no comm", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("stat of %d: short", pid)
	}
	return strconv.Atoi(f[1])
}

// seccompByRuntime reports whether a container of this policy runs with the
// runtime's own seccomp profile because the runtime cannot take vigil's.
func (p *Plugin) seccompByRuntime(pol annotations.Policy) bool {
	rt := p.rt.Load()
	return pol.Seccomp != "" && rt != nil && !rt.Seccomp
}

// cgroupsPathOf is the container's cgroups path: the runtime's, or, when
// it gives none (CRI-O run with _CRIO_ROOTLESS clears it), the cgroup v2
// path of the container's init process: the pid NRI gives (containerd), or
// the one found through the container's monitor (CRI-O's conmon). At
// StartContainer the init process exists and waits for the runtime's start:
// the workload has not run yet.
func (p *Plugin) cgroupsPathOf(ctr *api.Container) (string, error) {
	if cp := ctr.GetLinux().GetCgroupsPath(); cp != "" {
		return cp, nil
	}
	pid := int(ctr.GetPid())
	if pid <= 0 {
		if p.cfg.PidOf == nil {
			return "", errors.New("cgroups path: empty, and no pid from the runtime")
		}
		var err error
		if pid, err = p.cfg.PidOf(ctr.GetId()); err != nil {
			return "", fmt.Errorf("cgroups path: empty: %w", err)
		}
	}
	if p.cfg.CgroupOf == nil {
		return "", errors.New("cgroups path: empty")
	}
	path, err := p.cfg.CgroupOf(pid)
	if err != nil {
		return "", fmt.Errorf("cgroups path: empty; cgroup of the container's pid %d: %w", pid, err)
	}
	return path, nil
}
