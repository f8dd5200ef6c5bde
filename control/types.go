// Package control is vigil's response ladder: a policy maps detector
// verdicts (class, severity, rule, score, repeat count) to actions per
// container mode, and a Controller runs the actions (throttle CPU, deny
// notified syscalls, deny connections in the kernel, freeze, kill), audits
// them, undoes what can be undone after a quiet period (with hysteresis) or
// on request, and remembers what is in force across agent restarts.
//
// The policy and decision logic is pure; the edges to the kernel and the
// runtime are behind Actuator (CgroupActuator is the cgroup-file one).
package control

import (
	"net/netip"
	"syscall"
	"time"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/event"
)

// Action is one step of the response ladder.
type Action string

// The actions, from the mildest.
const (
	// ActAlert only reports (the verdict is the alert).
	ActAlert Action = "alert"
	// ActThrottle lowers the container's CPU shares/weight and, for CPU
	// abuse, sets a CFS quota; restored after a quiet period.
	ActThrottle Action = "throttle"
	// ActDenySyscall makes the seccomp notify server answer the
	// container's notified syscalls with an errno from then on.
	ActDenySyscall Action = "deny-syscall"
	// ActDenyConnect refuses connections (connect, sendmsg) to the
	// verdict's destination, or DNS to resolvers that are not allowed, in
	// the kernel (BPF cgroup programs on the container's cgroup).
	ActDenyConnect Action = "deny-connect"
	// ActFreeze freezes every process of the container (cgroup freezer).
	ActFreeze Action = "freeze"
	// ActKillProcess kills the verdict's process (SIGKILL).
	ActKillProcess Action = "kill-process"
	// ActKill kills every process of the container (cgroup.kill).
	ActKill Action = "kill"
)

// Actions lists the actions, for help texts and errors.
var Actions = []Action{ActAlert, ActThrottle, ActDenySyscall, ActDenyConnect, ActFreeze, ActKillProcess, ActKill}

// Target is the container an action applies to, as the composition root
// (the agent's registry, or vigil trace) describes it.
type Target struct {
	CgroupID    uint64
	ContainerID string           // "" in vigil trace
	Container   *event.Container // metadata, may be nil
	Mode        annotations.Mode // learn, detect, enforce
	Policy      string           // response policy name ("default" when empty)
	// CgroupDir is the container's cgroup v2 directory (absolute), used for
	// freeze, kill and the connect programs.
	CgroupDir string
	// CgroupRel is the cgroup's path relative to each hierarchy's root
	// (the same under /sys/fs/cgroup/<controller> on a cgroup v1 or hybrid
	// host), used to find the v1 cpu and freezer controllers.
	CgroupRel string
	// ViaNRI says the container came through NRI: CPU changes go through the
	// runtime (UpdateContainers) so that its view stays right.
	ViaNRI bool
}

// CPU is a container's CPU control values. Zero fields are "unset" on
// write (left as they are) except QuotaUs, where -1 means no limit.
type CPU struct {
	Shares   uint64 `json:"shares,omitempty"`    // cgroup v1 cpu.shares (v2: converted to cpu.weight)
	QuotaUs  int64  `json:"quota_us,omitempty"`  // CFS quota per period; -1 no limit
	PeriodUs uint64 `json:"period_us,omitempty"` // CFS period
}

// ConnectRule says which destinations a container may no longer reach.
type ConnectRule struct {
	// Dest lists exact destinations (port 0 = any port of that address).
	Dest []netip.AddrPort `json:"dest,omitempty"`
	// DNSOnlyTo, when non-nil, refuses every DNS (port 53) destination that
	// is not in it: the allowed resolvers.
	DNSOnlyTo []netip.Addr `json:"dns_only_to,omitempty"`
}

// Actuator is the edge to the kernel and the runtime. Each method acts at
// once and returns when the change is in force (written and read back).
type Actuator interface {
	ReadCPU(t Target) (CPU, error)
	SetCPU(t Target, c CPU) error
	Freeze(t Target, frozen bool) error
	KillProcess(t Target, pid uint32) error
	KillContainer(t Target) error
	DenySyscalls(t Target, nrs []int32, errno syscall.Errno) error
	AllowSyscalls(t Target) error
	DenyConnect(t Target, r ConnectRule) error
	AllowConnect(t Target) error
}

// Record is one action taken (or undone), as audited: the verdict that
// caused it, what was done, when it took effect and how long it took from
// the triggering event.
type Record struct {
	Verdict     string        `json:"verdict,omitempty"` // verdict id; "" for undo by request or timer
	CgroupID    uint64        `json:"cgroup"`
	ContainerID string        `json:"container_id,omitempty"`
	Action      Action        `json:"action"`
	Undo        bool          `json:"undo,omitempty"` // restored / released
	Detail      string        `json:"detail,omitempty"`
	Error       string        `json:"error,omitempty"`
	Effective   time.Time     `json:"effective"`
	Latency     time.Duration `json:"latency_ns,omitempty"` // triggering event → in force
}
