// Package agentctl is the agent's control socket: the protocol (one JSON
// Request per connection, answered by one Response), the server side that
// checks who is calling, and the client used by `vigil status`, `vigil
// release`, `vigil unfreeze`, `vigil reload` and the OCI hook. It is the
// one copy of the protocol.
package agentctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/event"
)

// DefaultSocket is where the agent listens.
const DefaultSocket = "/run/vigil/vigil.sock"

// The operations.
const (
	OpStatus     = "status"
	OpRegister   = "register"   // OCI hook: a container was created
	OpUnregister = "unregister" // OCI hook: a container stopped
	OpRelease    = "release"    // undo every action in force on a container
	OpUnfreeze   = "unfreeze"   // thaw a frozen container
	OpReload     = "reload"     // reload rules, policies, model and node config now
)

// Ops lists the operations, for errors.
var Ops = []string{OpStatus, OpRegister, OpUnregister, OpRelease, OpUnfreeze, OpReload}

// Request is one call on the control socket.
type Request struct {
	Op string `json:"op"`
	// For register/unregister (the OCI hook mode): the container, its
	// cgroups path and annotations, and, from the runtime's state, its bundle
	// and init pid, which the agent checks them against.
	Container   *event.Container  `json:"container,omitempty"`
	CgroupsPath string            `json:"cgroups_path,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Bundle      string            `json:"bundle,omitempty"`
	PID         int               `json:"pid,omitempty"`
	// Target names a container for release/unfreeze: its id (or a unique
	// prefix of it), or its name.
	Target string `json:"target,omitempty"`
}

// Response answers a Request.
type Response struct {
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
	// Policy is what the agent decided for a registered container.
	Policy *annotations.Policy `json:"policy,omitempty"`
	// Done lists what release/unfreeze/reload did, one line each.
	Done []string `json:"done,omitempty"`
}

// RuntimeInfo is what the agent knows of the runtime it is connected to,
// from NRI's Configure.
type RuntimeInfo struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	NRIVersion string `json:"nri_version,omitempty"` // "" when the runtime does not say
	// Seccomp says whether the runtime applies the seccomp policy of an NRI
	// adjustment; SeccompWhy says how that was decided.
	Seccomp    bool   `json:"seccomp"`
	SeccompWhy string `json:"seccomp_why"`
}

// Status is what `vigil status` shows.
type Status struct {
	Since       time.Time `json:"since"`
	Connected   bool      `json:"connected"`
	Connections int       `json:"connections"`
	// Runtime is the runtime connected over NRI and what it can apply.
	Runtime      *RuntimeInfo      `json:"runtime,omitempty"`
	Containers   []ContainerStatus `json:"containers"`
	Finished     []ContainerStatus `json:"finished,omitempty"`
	Rejected     []string          `json:"rejected,omitempty"`
	Events       uint64            `json:"events"`
	EventsError  string            `json:"events_error,omitempty"`
	NotifyOpen   int               `json:"notify_open"`
	NotifyFds    uint64            `json:"notify_fds"`
	NotifyAnswer uint64            `json:"notify_decisions"`
	AuditErrors  uint64            `json:"audit_errors,omitempty"`
	Verdicts     uint64            `json:"verdicts"`
	// Lost counts records that never reached the pipeline (tracer drops
	// and queue drops, as gaps); QueueDropped the queue's share.
	Lost         uint64 `json:"lost"`
	QueueDropped uint64 `json:"queue_dropped"`
	// Gaps counts the gap records (runs of lost records); QueueDepth is
	// the batches waiting for the pipeline's worker now.
	Gaps       uint64 `json:"gaps,omitempty"`
	QueueDepth int    `json:"queue_depth,omitempty"`
	// HookOnly says the agent runs without NRI: containers come through
	// the OCI hook only.
	HookOnly bool `json:"hook_only,omitempty"`
	// Actions counts actions run; InForce lists what is in force now.
	Actions uint64    `json:"actions"`
	InForce []InForce `json:"in_force,omitempty"`
	// ActionStats are per action: how many ran and how long from the
	// triggering event to in force.
	ActionStats []ActionStat `json:"action_stats,omitempty"`
	// DecisionP99 is the detector's time per event, DeliveryP99 the time
	// from an event's kernel timestamp to its decision (sampled).
	DecisionP99 time.Duration `json:"decision_p99_ns"`
	DeliveryP99 time.Duration `json:"delivery_p99_ns"`
	DecisionP50 time.Duration `json:"decision_p50_ns,omitempty"`
	DeliveryP50 time.Duration `json:"delivery_p50_ns,omitempty"`
	// Reloads counts live reloads; ReloadError is the last rejected one.
	Reloads     uint64 `json:"reloads"`
	ReloadError string `json:"reload_error,omitempty"`
	// Outputs are the output files (--events, --decisions): what they
	// wrote, the lines they could not write, and why while they cannot.
	Outputs []OutputStatus `json:"outputs,omitempty"`
	// AuditLost counts records the audit log could not keep (disk full
	// beyond its on-full policy, write errors); AuditFull is true while its
	// disk is full; AuditBytes is what it wrote since the agent started.
	AuditLost uint64 `json:"audit_lost"`
	// AuditStalls counts the appends that waited for the audit writer
	// (its bounded hand-off was full: a slow disk; nothing was dropped).
	AuditStalls uint64 `json:"audit_stalls,omitempty"`
	// Webhook counts what the alert webhook did (nil without one).
	Webhook *WebhookStatus `json:"webhook,omitempty"`
	// AuditHead is the audit log's signed chain head (what `vigil audit
	// verify --head` and an anchor compare against); nil without a log.
	AuditHead  *AuditHead `json:"audit_head,omitempty"`
	AuditFull  bool       `json:"audit_full,omitempty"`
	AuditBytes int64      `json:"audit_bytes,omitempty"`
	// Held counts what the agent holds per container and its own
	// goroutines and fds: each goes back to its level before when the
	// containers stop.
	Held *Held `json:"held,omitempty"`
	// Sampling is how the containers' CPU and thread counts are read for
	// the resource rules (nil without a detector).
	Sampling *Sampling `json:"sampling,omitempty"`
}

// Sampling is the agent's sampling of the containers' cgroup files: hot
// and suspect containers at the full rate, idle ones less often, within a
// budget of CPU time and one of files read a second.
type Sampling struct {
	Hot     int `json:"hot"`
	Suspect int `json:"suspect"`
	Idle    int `json:"idle"`
	// Budget is the samples a second at most; FullEvery and IdleEvery the
	// periods of the hot and the idle containers while it allows them.
	Budget    int           `json:"budget_per_s"`
	FullEvery time.Duration `json:"full_every_ns"`
	IdleEvery time.Duration `json:"idle_every_ns"`
	// Samples counts the samples taken; Deferred the due samples a tick
	// left for a later one for the budget; OldestAge is the longest time
	// since a container's last sample at the last tick.
	Samples   uint64        `json:"samples"`
	Deferred  uint64        `json:"deferred"`
	OldestAge time.Duration `json:"oldest_age_ns"`
	// CPUBudget is the share of a core the sampling may spend
	// (--sample-cpu); CPU what it spent, smoothed over about 10 s, and
	// CPUTime in all; StatCost and FullCost the smoothed cost of an idle
	// sample (cpu.stat) and of a hot one (three files).
	CPUBudget float64       `json:"cpu_budget_cores"`
	CPU       float64       `json:"cpu_cores"`
	CPUTime   time.Duration `json:"cpu_time_ns"`
	StatCost  time.Duration `json:"stat_cost_ns"`
	FullCost  time.Duration `json:"full_cost_ns"`
	// FullPeriod and IdlePeriod are the longest times between two samples
	// of a hot or suspect container and of an idle one in the last 10-20 s.
	FullPeriod time.Duration `json:"worst_full_period_ns"`
	IdlePeriod time.Duration `json:"worst_idle_period_ns"`
}

// Held is what the agent holds now.
type Held struct {
	// Tracked is the cgroups the tracer's list names (what a restarted
	// agent would take up again).
	Tracked int `json:"tracked"`
	// Detector and Audit are the cgroups the detector and the audit
	// writer keep state for.
	Detector int `json:"detector"`
	Audit    int `json:"audit"`
	// Goroutines and FDs are the agent process's.
	Goroutines int `json:"goroutines"`
	FDs        int `json:"fds"`
}

// OutputStatus is one output file of the agent.
type OutputStatus struct {
	Name      string `json:"name"` // "events" or "decisions"
	Path      string `json:"path"`
	Bytes     uint64 `json:"bytes"`
	LostLines uint64 `json:"lost_lines"`
	Rotations uint64 `json:"rotations"`
	// Error is why the file cannot be written now ("" while it can); the
	// output tries again and counts the lines it loses meanwhile.
	Error string `json:"error,omitempty"`
}

// ContainerStatus is one container in `vigil status`.
type ContainerStatus struct {
	event.Container
	State    string `json:"state"`
	Monitor  bool   `json:"monitor"`
	Forced   bool   `json:"forced,omitempty"`
	Seccomp  string `json:"seccomp,omitempty"`
	Mode     string `json:"mode,omitempty"`
	Policy   string `json:"policy,omitempty"`
	Priority int    `json:"priority"`
	CgroupID uint64 `json:"cgroup_id,omitempty"`
	Tracked  bool   `json:"tracked"`
	Seen     uint64 `json:"seen"`
	Emitted  uint64 `json:"emitted"`
	Dropped  uint64 `json:"dropped"`
	// Throttled counts the dropped records that were over the container's
	// tracing budget (its own flood), not lost to a full ring.
	Throttled uint64 `json:"throttled,omitempty"`
	// Hook says the container came through the OCI hook (no NRI).
	Hook bool `json:"hook,omitempty"`
	// Class is the tracing class the container holds ("realtime",
	// "block", both, or empty for the normal class); Stopped counts the
	// stop signals the block class sent its processes (a stop the kernel
	// has not yet begun is sent again by each of the process's threads
	// that write a record meanwhile, so one stop may count more than once).
	Class   string `json:"class,omitempty"`
	Stopped uint64 `json:"stopped,omitempty"`
	// Model says how the learned model judges the container: "model
	// NAME", or "rules only: ..." with the reason (no model for its
	// workload); empty when the agent runs without a model.
	Model string `json:"model,omitempty"`
}

// InForce is one action in force on a container.
type InForce struct {
	CgroupID    uint64    `json:"cgroup"`
	ContainerID string    `json:"container_id,omitempty"`
	Action      string    `json:"action"`
	Since       time.Time `json:"since"`
	Detail      string    `json:"detail,omitempty"`
}

// WebhookStatus is the alert webhook's counters.
type WebhookStatus struct {
	Sent      uint64 `json:"sent"`
	Retries   uint64 `json:"retries"`
	Dropped   uint64 `json:"dropped"`
	Failed    uint64 `json:"failed"`
	LastError string `json:"last_error,omitempty"`
}

// AuditHead is the last head the audit log wrote to disk.
type AuditHead struct {
	Segment uint64    `json:"segment"`
	Index   uint64    `json:"index"` // the last record's stream index
	Hash    string    `json:"hash"`  // hex chain hash of the last frame
	Time    time.Time `json:"time"`
}

// ActionStat is one action's count and latency.
type ActionStat struct {
	Action string        `json:"action"`
	Count  uint64        `json:"count"`
	Failed uint64        `json:"failed"`
	P50    time.Duration `json:"p50_ns"`
	P99    time.Duration `json:"p99_ns"`
}

// Peer is who called, from the socket's credentials (SO_PEERCRED).
type Peer struct {
	PID int32
	UID uint32
	GID uint32
}

// Handler answers one request.
type Handler func(ctx context.Context, req Request, peer Peer) Response

// Listen opens the control socket at path, mode 0600 (root only); a stale
// socket is replaced.
func Listen(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// Serve answers requests on ln until it is closed. Callers that are not
// root (uid 0) are refused, whatever the socket's mode.
func Serve(ctx context.Context, ln *net.UnixListener, h Handler) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			peer, err := peerOf(c)
			if err != nil {
				_ = json.NewEncoder(c).Encode(Response{Error: "control socket: " + err.Error()})
				return
			}
			if peer.UID != 0 {
				_ = json.NewEncoder(c).Encode(Response{Error: fmt.Sprintf("control socket: uid %d refused: only root may call the agent", peer.UID)})
				return
			}
			var req Request
			if err := json.NewDecoder(c).Decode(&req); err != nil {
				_ = json.NewEncoder(c).Encode(Response{Error: "bad request: " + err.Error()})
				return
			}
			_ = json.NewEncoder(c).Encode(h(ctx, req, peer))
		}()
	}
}

func peerOf(c *net.UnixConn) (Peer, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if cerr != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", cerr)
	}
	return Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}

// UnknownOp is the answer to an operation the agent does not know.
func UnknownOp(op string) Response {
	return Response{Error: fmt.Sprintf("unknown op %q (allowed: %v)", op, Ops)}
}

// Call sends one request to the agent's control socket.
func Call(socket string, req Request) (*Response, error) {
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connect to the agent at %s (is 'vigil agent' running?): %w", socket, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, fmt.Errorf("send to the agent: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("read the agent's answer: %w", err)
	}
	if resp.Error != "" {
		return &resp, errors.New(resp.Error)
	}
	return &resp, nil
}
