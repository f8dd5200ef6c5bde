package detector

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"vigil.dev/vigil/event"
)

// SeccompProfile is an OCI runtime-spec seccomp section (LinuxSeccomp),
// which is also the profile file format of docker, podman and the kubelet's
// Localhost profiles.
type SeccompProfile struct {
	DefaultAction   string           `json:"defaultAction"`
	DefaultErrnoRet *uint            `json:"defaultErrnoRet,omitempty"`
	Architectures   []string         `json:"architectures,omitempty"`
	Syscalls        []SeccompSyscall `json:"syscalls,omitempty"`
}

// SeccompSyscall is one rule of a SeccompProfile.
type SeccompSyscall struct {
	Names  []string `json:"names"`
	Action string   `json:"action"`
}

// runtimeNeeds are the syscalls the container runtime itself makes after
// the filter is installed and before the workload runs (runc installs the
// filter, then execs the workload).
var runtimeNeeds = []string{"execve", "exit", "exit_group", "rt_sigreturn"}

// Profile builds the smallest seccomp profile that allows every syscall the
// model saw (plus the few the runtime needs to start the workload) and
// fails everything else with EPERM. Names that no ABI knows (sys_<nr>) are
// returned in skipped.
func (m *Model) Profile(abi event.ABI) (p SeccompProfile, skipped []string) {
	if abi == "" {
		abi = event.NativeABI()
	}
	allow := map[string]bool{}
	for _, n := range runtimeNeeds {
		allow[n] = true
	}
	for i, n := range m.Vocab {
		if m.Unigram[i] == 0 && m.HasSeq {
			continue
		}
		if _, ok := abi.Nr(n); ok && !strings.HasPrefix(n, "sys_") {
			allow[n] = true
			continue
		}
		skipped = append(skipped, n)
	}
	names := make([]string, 0, len(allow))
	for n := range allow {
		if _, ok := abi.Nr(n); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	eperm := uint(1)
	p = SeccompProfile{DefaultAction: "SCMP_ACT_ERRNO", DefaultErrnoRet: &eperm,
		Architectures: seccompArches(abi),
		Syscalls:      []SeccompSyscall{{Names: names, Action: "SCMP_ACT_ALLOW"}}}
	return p, skipped
}

func seccompArches(abi event.ABI) []string {
	switch abi {
	case event.ARM64:
		return []string{"SCMP_ARCH_AARCH64"}
	case event.I386:
		return []string{"SCMP_ARCH_X86"}
	}
	return []string{"SCMP_ARCH_X86_64"}
}

// ProfileJSON is Profile as indented JSON.
func (m *Model) ProfileJSON(abi event.ABI) ([]byte, []string, error) {
	p, skipped := m.Profile(abi)
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, nil, fmt.Errorf("profile: %w", err)
	}
	return append(b, '\n'), skipped, nil
}
