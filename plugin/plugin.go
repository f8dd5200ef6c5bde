// Package plugin is vigil's NRI plugin and container registry: it learns
// about containers from containerd (or CRI-O) through NRI (or from the OCI
// hook), applies the annotation contract at CreateContainer (seccomp
// profile, CPU shares), tracks the container's cgroup in the eBPF tracer at
// StartContainer (before the workload's first instruction), enriches events
// with container metadata, untracks at stop/remove and tells the agent
// through the callbacks it was built with. Run keeps the NRI connection up
// and UpdateCPU changes a running container's CPU through the runtime.
//
// It needs root, a cgroup v2 hierarchy (pure or hybrid) and the runtime's
// NRI socket.
package plugin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/seccomp"
)

// Tracer is what the plugin needs of the eBPF tracer (*bpf.Monitor).
type Tracer interface {
	Track(cgroupID uint64) error
	Untrack(cgroupID uint64) (bpf.Counters, error)
	Counters(cgroupID uint64) (bpf.Counters, error)
	Tracked() (map[uint64]bpf.Counters, error)
}

// Notifier is what the plugin needs of the seccomp notify Server.
type Notifier interface {
	SetPolicy(id string, p *seccomp.Policy)
	// RestorePolicy sets the answers of a container found running, unless
	// the notify fd keeper gave back the ones it was created with.
	RestorePolicy(id string, p *seccomp.Policy)
	// Forget drops a removed container's policy and its dynamic denies.
	Forget(id string)
}

// Config of the Plugin.
type Config struct {
	Node         annotations.NodeConfig
	CgroupRoot   string // cgroup v2 mount: /sys/fs/cgroup or /sys/fs/cgroup/unified
	ListenerPath string // the notify Server's socket
	// CgroupID maps a cgroup directory to its id (bpf.CgroupID by default).
	CgroupID func(dir string) (uint64, error)
	// CgroupOf is a process's cgroup v2 path ("0::" of /proc/PID/cgroup by
	// default), to check an OCI hook's registration.
	CgroupOf func(pid int) (string, error)
	// PidOf finds the init process of a container whose runtime gives
	// neither a cgroups path nor a pid over NRI (CRI-O run with
	// _CRIO_ROOTLESS): the child of its conmon by default.
	PidOf func(containerID string) (int, error)
	// Callbacks tell the agent about monitored containers.
	Callbacks Callbacks
}

// Callbacks are the agent's hooks into the registry, given at
// construction. Each may be nil. They run on the NRI (or control socket)
// goroutine and must not block for long.
type Callbacks struct {
	// Started: a monitored container is tracked; its workload has not run.
	Started func(c Info)
	// Running: a monitored container found running (Synchronize after a
	// restart); its workload has exec'd already.
	Running func(c Info)
	// Stopped: a monitored container stopped, with the tracer's final
	// counters.
	Stopped func(c Info, final bpf.Counters)
	// CPUHeld reports whether a response in force (a throttle) holds the
	// container's CPU: new priority bounds then leave its CPU shares alone.
	CPUHeld func(c Info) bool
}

// Info is the registry's view of one container.
type Info struct {
	Meta   *event.Container
	Policy annotations.Policy
	// CgroupID and CgroupDir are the tracked cgroup v2 (0 and "" until
	// tracked); CgroupsPath is the runtime's cgroupsPath.
	CgroupID    uint64
	CgroupDir   string
	CgroupsPath string
	// Hook says the container came through the OCI hook, not NRI.
	Hook  bool
	State string
}

// Plugin handles NRI requests. Its handlers are short: the decisions are
// made by pure functions (parsePolicy, buildAdjustment, CgroupDir).
type Plugin struct {
	cfg     Config
	nodeCfg atomic.Pointer[annotations.NodeConfig]
	tracer  Tracer
	notify  Notifier
	log     *logrus.Logger

	mu       sync.RWMutex
	byID     map[string]*container
	byCgroup map[uint64]*container
	final    []ContainerStatus // last stopped containers with final counters
	pending  map[string]time.Time
	rejected []string // containers whose adjustment did not arrive (validator?)
	// last holds each tracked cgroup's counters as of the last Refresh: the
	// kernel frees a cgroup's counters with the cgroup, which a runtime may
	// remove before vigil hears that the container stopped.
	last map[uint64]bpf.Counters
	// stub is the NRI connection while Run has one (UpdateCPU uses it);
	// starting is the one being set up (Configure reads its NRI version).
	stub     atomic.Pointer[nriStub]
	starting atomic.Pointer[nriStub]
	// rt is the runtime as of the last Configure (nil before: seccomp
	// policies are then sent as if the runtime took them).
	rt       atomic.Pointer[RuntimeInfo]
	connMu   sync.Mutex
	conn     bool
	connects int
	// catchUp is how long to wait for the reader before rebuilding the
	// counters of a container whose cgroup is already gone.
	catchUp time.Duration
	// retireAfter is how long a removed container's cgroup still resolves
	// to its metadata (its last events may still be in the ring).
	retireAfter time.Duration
	// updateCPU changes a container's CPU through the runtime (UpdateCPU;
	// tests give a fake).
	updateCPU func(containerID string, shares uint64, quota int64, period uint64) error
	// reprio runs reprioritize after SetNode: one pass at a time, and one
	// more when the configuration changed during a pass.
	reprioMu      sync.Mutex
	reprioRunning bool
	reprioAgain   bool
	reprioDone    sync.WaitGroup
}

// container is the plugin's view of one container.
type container struct {
	meta        *event.Container // shared with events: never modified after creation
	policy      annotations.Policy
	cgroupID    uint64
	cgroupDir   string
	cgroupsPath string
	hook        bool
	// runtimeSeccomp: the runtime could not take the asked seccomp profile
	// (seccompUnsupported fallback); its own applies.
	runtimeSeccomp bool
	tracked        bool
	// class is the tracing class the container holds (classFor), counted
	// against the node's bounds until it is untracked.
	class bpf.TrackOptions
	state string
	// origShares are the CPU shares the runtime gave the container before
	// its priority (0: not known, as after a restart of the agent).
	origShares uint64
	// lastSeq and gaps follow the events read (Enrich): the highest
	// sequence number and the numbers skipped (dropped records).
	lastSeq atomic.Uint64
	gaps    atomic.Uint64
}

// New returns a Plugin.
func New(cfg Config, tracer Tracer, notify Notifier, log *logrus.Logger) *Plugin {
	if cfg.CgroupID == nil {
		cfg.CgroupID = bpf.CgroupID
	}
	if cfg.CgroupOf == nil {
		cfg.CgroupOf = unifiedCgroupOf
	}
	if cfg.PidOf == nil {
		cfg.PidOf = func(id string) (int, error) { return monitorChild("/proc", id) }
	}
	p := newPlugin(cfg, tracer, notify, log)
	p.nodeCfg.Store(&cfg.Node)
	p.updateCPU = p.UpdateCPU
	return p
}

// Node is the node configuration in force.
func (p *Plugin) Node() annotations.NodeConfig { return p.node() }

// SetNode replaces the node configuration (a live reload); containers
// created from now on get it, and the containers that asked for a priority
// get the new priority bounds (through the runtime, in the background: see
// reprioritize).
func (p *Plugin) SetNode(node annotations.NodeConfig) {
	p.nodeCfg.Store(&node)
	p.reprioMu.Lock()
	defer p.reprioMu.Unlock()
	if p.reprioRunning {
		p.reprioAgain = true // the running pass may have read the old one
		return
	}
	p.reprioRunning = true
	p.reprioDone.Add(1)
	go func() {
		defer p.reprioDone.Done()
		for {
			p.reprioritize()
			p.reprioMu.Lock()
			if !p.reprioAgain {
				p.reprioRunning = false
				p.reprioMu.Unlock()
				return
			}
			p.reprioAgain = false
			p.reprioMu.Unlock()
		}
	}()
}

// reprioChange is a container's priority under new node bounds.
type reprioChange struct {
	id      string
	c       *container
	old     annotations.Policy
	pol     annotations.Policy
	warning string
	shares  uint64 // to write: the priority's, or the original ones (0: not known)
}

// reprioritize applies the node configuration's priority rules again to
// the created and running containers that asked for a priority, and
// changes the CPU shares of those whose priority changed through the
// runtime. The registry's lock is not held while the runtime is called; a
// container whose update fails keeps its priority, and the next reload
// tries again.
func (p *Plugin) reprioritize() {
	node := p.node()
	var changes []reprioChange
	p.mu.RLock()
	for id, c := range p.byID {
		// The OCI hook applies no priority; stopped containers keep theirs.
		if c.hook || c.policy.PriorityAsked == nil || (c.state != "created" && c.state != "running") {
			continue
		}
		pol, w := node.ApplyPriority(c.policy, c.meta.Namespace)
		if pol.Priority == c.policy.Priority && pol.PrioritySet == c.policy.PrioritySet {
			continue
		}
		ch := reprioChange{id: id, c: c, old: c.policy, pol: pol, warning: w, shares: c.origShares}
		if pol.PrioritySet {
			ch.shares = annotations.CPUShares(pol.Priority)
		}
		changes = append(changes, ch)
	}
	p.mu.RUnlock()
	sort.Slice(changes, func(i, j int) bool { return changes[i].id < changes[j].id })
	for _, ch := range changes {
		p.applyPriority(ch)
	}
}

// applyPriority changes one container's CPU shares for its new priority
// and records the priority once the runtime took it.
func (p *Plugin) applyPriority(ch reprioChange) {
	log := p.log.WithFields(logrus.Fields{"pod": ch.c.meta.Namespace + "/" + ch.c.meta.Pod, "container": ch.c.meta.Name,
		"id": short(ch.id), "priority": ch.pol.Priority, "was": ch.old.Priority, "shares": ch.shares})
	if ch.warning != "" {
		log = log.WithField("reason", ch.warning)
	}
	if cb := p.cfg.Callbacks.CPUHeld; cb != nil && cb(p.infoOf(ch.c)) {
		log.Warn("new priority bounds not applied: a response holds the container's CPU")
		return
	}
	if ch.shares == 0 {
		log.Warn("the node no longer applies this container's priority, but its CPU shares from before are not known: they stay until it restarts")
		return
	}
	if err := p.updateCPU(ch.id, ch.shares, 0, 0); err != nil {
		log.WithError(err).Error("cannot apply the node's new priority bounds")
		return
	}
	p.mu.Lock()
	if p.byID[ch.id] == ch.c {
		ch.c.policy.Priority, ch.c.policy.PrioritySet = ch.pol.Priority, ch.pol.PrioritySet
	}
	p.mu.Unlock()
	log.Info("priority changed by the node configuration: CPU shares updated through the runtime")
}

// TrackedContainers lists the containers whose cgroups are tracked.
func (p *Plugin) TrackedContainers() []Info {
	p.mu.RLock()
	cs := make([]*container, 0, len(p.byCgroup))
	for _, c := range p.byCgroup {
		if c.tracked {
			cs = append(cs, c)
		}
	}
	p.mu.RUnlock()
	out := make([]Info, len(cs))
	for i, c := range cs {
		out[i] = p.infoOf(c)
	}
	return out
}

// Runtime is the runtime connected over NRI (nil before the first
// Configure).
func (p *Plugin) Runtime() *RuntimeInfo {
	if rt := p.rt.Load(); rt != nil {
		c := *rt
		return &c
	}
	return nil
}

// node is the node configuration in force (the file's, or the runtime's
// NRI plugin configuration when it sent one).
func (p *Plugin) node() annotations.NodeConfig { return *p.nodeCfg.Load() }

// Configure takes the plugin configuration the runtime passes (from
// /etc/nri/conf.d/10-vigil.conf in the pre-registered mode): the same YAML
// as /etc/vigil/config.yaml, which it then replaces. Empty keeps the file's.
// It comes before Synchronize, which applies it to the runtime's containers.
func (p *Plugin) Configure(_ context.Context, config, runtime, version string) (api.EventMask, error) {
	nriVersion := ""
	if st := p.starting.Load(); st != nil {
		nriVersion = st.s.RuntimeNRIVersion()
	}
	rt := runtimeCaps(runtime, version, nriVersion)
	p.rt.Store(&rt)
	log := p.log.WithFields(logrus.Fields{"runtime": runtime, "version": version, "nri": nriVersion, "seccomp": rt.Seccomp})
	log.Info("configured by the runtime")
	if !rt.Seccomp {
		log.WithField("node", "seccompUnsupported: "+cmp.Or(p.node().SeccompUnsupported, annotations.SeccompUnsupportedFallback)).
			Warn("the runtime cannot take seccomp policies through NRI: " + rt.SeccompWhy + "; containers asking for a seccomp profile get the runtime's own, or are rejected, as the node says")
	}
	if strings.TrimSpace(config) == "" {
		return 0, nil
	}
	node, err := loadNodeConfig([]byte(config))
	if err != nil {
		return 0, fmt.Errorf("vigil: NRI plugin configuration: %w", err)
	}
	p.nodeCfg.Store(&node)
	return 0, nil
}

// loadNodeConfig parses a node configuration and adds the named seccomp
// profiles of its profile directory: the one path for the file and NRI.
func loadNodeConfig(data []byte) (annotations.NodeConfig, error) {
	node, err := annotations.ParseNodeConfig(data)
	if err != nil {
		return node, err
	}
	return WithProfiles(node)
}

// WithProfiles adds the names of the node's profile directory to
// node.Profiles: the one place the file, NRI and the agent's reloads list it.
func WithProfiles(node annotations.NodeConfig) (annotations.NodeConfig, error) {
	names, err := seccomp.ListNamed(node.ProfileDir)
	if err != nil {
		return node, err
	}
	node.Profiles = append(slices.Clone(node.Profiles), names...)
	return node, nil
}

func newPlugin(cfg Config, tracer Tracer, notify Notifier, log *logrus.Logger) *Plugin {
	return &Plugin{cfg: cfg, tracer: tracer, notify: notify, log: log,
		byID: map[string]*container{}, byCgroup: map[uint64]*container{}, pending: map[string]time.Time{},
		last: map[uint64]bpf.Counters{}, retireAfter: 5 * time.Second, catchUp: 250 * time.Millisecond}
}

// Refresh records the tracked cgroups' counters (see Plugin.last).
func (p *Plugin) Refresh() {
	all, err := p.tracer.Tracked()
	if err != nil {
		return
	}
	p.RefreshWith(all)
}

// RefreshWith is Refresh with the tracer's counters already read (the
// agent reads them once a second for its heartbeat: one pass over the
// tracked cgroups serves both).
func (p *Plugin) RefreshWith(all map[uint64]bpf.Counters) {
	p.mu.Lock()
	for id := range p.last {
		if _, ok := all[id]; !ok {
			delete(p.last, id)
		}
	}
	for id, c := range all {
		p.last[id] = c
	}
	p.mu.Unlock()
}

// retire drops cgroup id → c after the grace period.
func (p *Plugin) retire(id uint64, c *container) {
	time.AfterFunc(p.retireAfter, func() {
		p.mu.Lock()
		if p.byCgroup[id] == c {
			delete(p.byCgroup, id)
		}
		p.mu.Unlock()
	})
}

func (p *Plugin) logFor(pod *api.PodSandbox, ctr *api.Container) *logrus.Entry {
	return p.log.WithFields(logrus.Fields{"pod": pod.GetNamespace() + "/" + pod.GetName(), "container": containerName(ctr), "id": short(ctr.GetId())})
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func (p *Plugin) seccompOptions() seccomp.Options {
	return seccomp.Options{ListenerPath: p.cfg.ListenerPath, ProfileDir: p.node().ProfileDir}
}

// CreateContainer applies the annotation contract: a bad value fails the
// creation with the error that names key, value and allowed values.
func (p *Plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	log := p.logFor(pod, ctr)
	pol, err := parsePolicy(pod, ctr, p.node())
	if err != nil {
		log.WithError(err).Warn("rejecting container: bad vigil annotation")
		return nil, nil, err
	}
	for _, w := range pol.Warnings {
		log.Warn(w)
	}
	build := pol
	if rt := p.rt.Load(); rt != nil {
		var warning string
		if build, warning, err = seccompUnsupported(pol, *rt, p.node()); err != nil {
			log.WithError(err).Error("rejecting container")
			return nil, nil, err
		} else if warning != "" {
			log.Warn(warning)
		}
	}
	adj, prof, err := buildAdjustment(build, ctr, p.seccompOptions())
	if err != nil {
		log.WithError(err).Error("rejecting container")
		return nil, nil, err
	}
	if prof != nil && prof.Policy != nil {
		p.notify.SetPolicy(ctr.GetId(), prof.Policy)
	}
	c := &container{meta: ptr(containerMeta(pod, ctr)), policy: pol, state: "created",
		origShares: ctr.GetLinux().GetResources().GetCpu().GetShares().GetValue(), runtimeSeccomp: build.Seccomp != pol.Seccomp}
	p.mu.Lock()
	p.byID[ctr.GetId()] = c
	if prof != nil {
		p.pending[ctr.GetId()] = time.Now()
	}
	p.mu.Unlock()
	log.WithFields(logrus.Fields{"monitor": pol.Monitor, "forced": pol.Forced, "seccomp": pol.Seccomp, "priority": pol.Priority, "mode": pol.Mode}).Info("container created")
	return adj, nil, nil
}

func ptr[T any](v T) *T { return &v }

// PostCreateContainer checks that vigil's seccomp policy is the one the
// container got (another plugin or a validator may have changed it).
func (p *Plugin) PostCreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.mu.Lock()
	_, wanted := p.pending[ctr.GetId()]
	delete(p.pending, ctr.GetId())
	c := p.byID[ctr.GetId()]
	p.mu.Unlock()
	// Runtimes that do not pass a container's seccomp policy to plugins
	// (CRI-O 1.34, containerd before 2026) leave nothing to check here.
	if got := ctr.GetLinux().GetSeccompPolicy(); wanted && c != nil && c.policy.Seccomp == seccomp.Notify && got != nil && got.GetListenerPath() != p.cfg.ListenerPath {
		p.logFor(pod, ctr).WithField("listener", got.GetListenerPath()).
			Error("container runs without vigil's notify listener: another NRI plugin (or the runtime) replaced vigil's seccomp policy")
	}
	return nil
}

// StartContainer tracks a monitored container's cgroup: the workload has not
// run yet, so tracing starts before its first instruction.
func (p *Plugin) StartContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	log := p.logFor(pod, ctr)
	p.mu.RLock()
	c := p.byID[ctr.GetId()]
	p.mu.RUnlock()
	if c == nil {
		// Created while the agent was away: decide now.
		pol, err := parsePolicy(pod, ctr, p.node())
		if err != nil {
			log.WithError(err).Warn("bad vigil annotation on a container created while vigil was away; not monitored")
			return nil
		}
		c = &container{meta: ptr(containerMeta(pod, ctr)), policy: pol, origShares: ctr.GetLinux().GetResources().GetCpu().GetShares().GetValue(),
			runtimeSeccomp: p.seccompByRuntime(pol)}
		p.mu.Lock()
		p.byID[ctr.GetId()] = c
		p.mu.Unlock()
	}
	p.mu.Lock()
	delete(p.pending, ctr.GetId())
	c.state = "running"
	p.mu.Unlock()
	if !c.policy.Monitor {
		return nil
	}
	if err := p.track(c, ctr); err != nil {
		log.WithError(err).Error("cannot monitor container")
		return err
	}
	log.WithField("cgroup", c.cgroupID).Info("tracking container")
	if cb := p.cfg.Callbacks.Started; cb != nil {
		cb(p.infoOf(c))
	}
	return nil
}

// track resolves the container's cgroup and tracks it.
func (p *Plugin) track(c *container, ctr *api.Container) error {
	cgroupsPath, err := p.cgroupsPathOf(ctr)
	if err != nil {
		return fmt.Errorf("vigil: %w", err)
	}
	dir, err := CgroupDir(p.cfg.CgroupRoot, cgroupsPath)
	if err != nil {
		return fmt.Errorf("vigil: %w", err)
	}
	id, err := p.cfg.CgroupID(dir)
	if err != nil {
		return fmt.Errorf("vigil: %w", err)
	}
	if err := p.trackClass(c, id); err != nil {
		return fmt.Errorf("vigil: %w", err)
	}
	if n, err := p.tracer.Counters(id); err == nil {
		// Tracked before (pinned tracer, agent restart): start from there.
		c.lastSeq.Store(n.Seen)
		c.gaps.Store(n.Dropped)
	}
	p.mu.Lock()
	c.cgroupID, c.cgroupDir, c.cgroupsPath, c.tracked = id, dir, cgroupsPath, true
	p.byCgroup[id] = c
	p.mu.Unlock()
	return nil
}

// StopContainer untracks the container and logs its final counters.
func (p *Plugin) StopContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) ([]*api.ContainerUpdate, error) {
	p.finish(pod, ctr, "stopped")
	return nil, nil
}

// RemoveContainer forgets the container.
func (p *Plugin) RemoveContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.finish(pod, ctr, "removed")
	p.notify.Forget(ctr.GetId())
	p.mu.Lock()
	if _, pending := p.pending[ctr.GetId()]; pending {
		// Created with a seccomp adjustment, never started nor post-created:
		// the runtime refused the adjustment.
		p.rejected = append(p.rejected, ctr.GetId())
		if len(p.rejected) > keepFinal {
			p.rejected = p.rejected[len(p.rejected)-keepFinal:]
		}
		delete(p.pending, ctr.GetId())
		p.logFor(pod, ctr).Error("container removed before it started: if its creation failed with a validation error, containerd's NRI default validator " +
			`rejects seccomp adjustments (plugins."io.containerd.nri.v1.nri".default_validator reject_*_seccomp_adjustment); allow them for vigil`)
	}
	if c := p.byID[ctr.GetId()]; c != nil && p.byCgroup[c.cgroupID] == c {
		p.retire(c.cgroupID, c)
	}
	delete(p.byID, ctr.GetId())
	p.mu.Unlock()
	return nil
}

const keepFinal = 256

func (p *Plugin) finish(pod *api.PodSandbox, ctr *api.Container, state string) {
	p.mu.Lock()
	c := p.byID[ctr.GetId()]
	if c == nil {
		p.mu.Unlock()
		return
	}
	c.state = state
	wasTracked := c.tracked
	c.tracked = false
	c.class = bpf.TrackOptions{}
	p.mu.Unlock()
	if !wasTracked {
		return
	}
	counters, err := p.tracer.Untrack(c.cgroupID)
	log := p.logFor(pod, ctr).WithField("cgroup", c.cgroupID)
	switch {
	case errors.Is(err, bpf.ErrNotTracked):
		// The runtime removed the cgroup first and the kernel freed its
		// counters with it. Rebuild them from the last refresh and from the
		// events' sequence numbers, once the reader has caught up.
		go func() {
			time.Sleep(p.catchUp)
			p.finalize(c, p.rebuiltCounters(c), log.WithField("counters", "rebuilt"), state)
		}()
		return
	case err != nil:
		log.WithError(err).Error("untrack container")
	}
	p.finalize(c, counters, log, state)
}

// rebuiltCounters estimates a gone cgroup's final counters: the larger of
// the last refreshed kernel counters and what the events showed (the last
// sequence number is the number of syscalls seen up to it; gaps are drops).
// Drops after the last event read are not visible this way.
func (p *Plugin) rebuiltCounters(c *container) bpf.Counters {
	p.mu.RLock()
	last := p.last[c.cgroupID]
	p.mu.RUnlock()
	seen := max(last.Seen, c.lastSeq.Load())
	dropped := min(max(last.Dropped, c.gaps.Load()), seen)
	return bpf.Counters{Seen: seen, Emitted: seen - dropped, Dropped: dropped}
}

// finalize records a stopped container's final counters.
func (p *Plugin) finalize(c *container, counters bpf.Counters, log *logrus.Entry, state string) {
	p.mu.Lock()
	delete(p.last, c.cgroupID)
	p.mu.Unlock()
	log.WithFields(logrus.Fields{"seen": counters.Seen, "emitted": counters.Emitted, "dropped": counters.Dropped}).Info("container " + state + ": final counters")
	st := p.statusOf(c, counters)
	if cb := p.cfg.Callbacks.Stopped; cb != nil {
		cb(p.infoOf(c), counters)
	}
	p.mu.Lock()
	p.final = append(p.final, st)
	if len(p.final) > keepFinal {
		p.final = p.final[len(p.final)-keepFinal:]
	}
	p.mu.Unlock()
}

// Synchronize rebuilds the plugin's view from the runtime's containers
// (at every (re)connection): running monitored containers are tracked again
// (a pinned tracer keeps their counters) and their notify answers set.
func (p *Plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	podByID := map[string]*api.PodSandbox{}
	for _, pod := range pods {
		podByID[pod.GetId()] = pod
	}
	keep := map[uint64]bool{}
	p.mu.Lock()
	// Containers the OCI hook registered are not the runtime's to list: keep
	// them across a resync.
	byID, byCgroup := map[string]*container{}, map[uint64]*container{}
	// The containers tracked before: those gone since are finished below.
	before := map[uint64]*container{}
	for _, c := range p.byCgroup {
		if c.tracked {
			before[c.cgroupID] = c
		}
	}
	for id, c := range p.byID {
		if c.hook {
			byID[id] = c
			if c.tracked {
				byCgroup[c.cgroupID] = c
				keep[c.cgroupID] = true
			}
		}
	}
	p.byID, p.byCgroup, p.pending = byID, byCgroup, map[string]time.Time{}
	p.mu.Unlock()
	for _, ctr := range ctrs {
		pod := podByID[ctr.GetPodSandboxId()]
		log := p.logFor(pod, ctr)
		pol, err := parsePolicy(pod, ctr, p.node())
		if err != nil {
			log.WithError(err).Warn("synchronize: bad vigil annotation; not monitored")
			continue
		}
		c := &container{meta: ptr(containerMeta(pod, ctr)), policy: pol, state: stateName(ctr.GetState()), runtimeSeccomp: p.seccompByRuntime(pol)}
		if pol.Seccomp != "" {
			if prof, err := seccomp.Build(pol.Seccomp, p.seccompOptions()); err == nil && prof.Policy != nil {
				p.notify.RestorePolicy(ctr.GetId(), prof.Policy)
			}
		}
		p.mu.Lock()
		p.byID[ctr.GetId()] = c
		p.mu.Unlock()
		if pol.Monitor && ctr.GetState() == api.ContainerState_CONTAINER_RUNNING {
			if err := p.track(c, ctr); err != nil {
				log.WithError(err).Error("synchronize: cannot monitor container")
				continue
			}
			keep[c.cgroupID] = true
			if cb := p.cfg.Callbacks.Running; cb != nil {
				cb(p.infoOf(c))
			}
			log.WithField("cgroup", c.cgroupID).Info("tracking container (synchronized)")
		}
	}
	// Cgroups the pinned tracer still follows for containers that are gone.
	if tracked, err := p.tracer.Tracked(); err == nil {
		for id := range tracked {
			if !keep[id] {
				n, err := p.tracer.Untrack(id)
				if err == nil {
					p.log.WithFields(logrus.Fields{"cgroup": id, "seen": n.Seen, "dropped": n.Dropped}).Info("untracked a cgroup whose container is gone")
				}
				if c := before[id]; c != nil && err == nil {
					// It stopped while the runtime's connection was down: finish it
					// like a stop (final counters, lifecycle, state dropped).
					p.mu.Lock()
					c.tracked, c.state = false, "stopped"
					p.mu.Unlock()
					p.finalize(c, n, p.log.WithField("cgroup", id), "stopped")
				}
			}
		}
	}
	p.log.WithFields(logrus.Fields{"pods": len(pods), "containers": len(ctrs), "tracked": len(keep)}).Info("synchronized with the runtime")
	return nil, nil
}

func stateName(s api.ContainerState) string {
	switch s {
	case api.ContainerState_CONTAINER_CREATED:
		return "created"
	case api.ContainerState_CONTAINER_RUNNING:
		return "running"
	case api.ContainerState_CONTAINER_STOPPED:
		return "stopped"
	case api.ContainerState_CONTAINER_PAUSED:
		return "paused"
	}
	return "unknown"
}

// Shutdown is called when the runtime shuts down.
func (p *Plugin) Shutdown(context.Context) {
	p.log.Info("runtime is shutting down")
}

// Enrich sets ev.Container from the cgroup → container map. The pointer is
// shared and never modified: copy the struct to keep it past the callback.
// It also follows each container's sequence numbers (see rebuiltCounters);
// it is called from the one goroutine that processes the tracer's events.
func (p *Plugin) Enrich(ev *event.Event) { p.EnrichRun(unsafe.Slice(ev, 1)) }

// EnrichRun is Enrich for a run of events of one cgroup (run[0]'s): one
// look-up in the map for all of them, and the container's sequence
// counters updated once (the pipeline's worker hands its batches over in
// such runs).
func (p *Plugin) EnrichRun(run []event.Event) {
	if len(run) == 0 {
		return
	}
	p.mu.RLock()
	c := p.byCgroup[run[0].CgroupID]
	var meta *event.Container
	if c != nil {
		meta = c.meta
	}
	p.mu.RUnlock()
	for i := range run {
		run[i].Container = meta
	}
	if c == nil {
		return
	}
	prev := c.lastSeq.Load()
	last, gaps := prev, uint64(0)
	for i := range run {
		if s := run[i].Seq; s > last {
			gaps += s - last - 1
			last = s
		}
	}
	if last > prev {
		c.gaps.Add(gaps)
		c.lastSeq.Store(last)
	}
}

// ContainerStatus is one container in `vigil status`.
type ContainerStatus = agentctl.ContainerStatus

func (p *Plugin) statusOf(c *container, n bpf.Counters) ContainerStatus {
	p.mu.RLock()
	defer p.mu.RUnlock()
	seccompProfile := c.policy.Seccomp
	if (c.hook || c.runtimeSeccomp) && seccompProfile != "" {
		// The OCI hook cannot change a created container's seccomp policy:
		// show what is in force, not what was asked for.
		seccompProfile = "(runtime's)"
	}
	return ContainerStatus{Container: *c.meta, State: c.state, Monitor: c.policy.Monitor, Forced: c.policy.Forced,
		Seccomp: seccompProfile, Mode: string(c.policy.Mode), Policy: c.policy.PolicyName, Priority: c.policy.Priority,
		CgroupID: c.cgroupID, Tracked: c.tracked, Seen: n.Seen, Emitted: n.Emitted, Dropped: n.Dropped, Throttled: n.Throttled, Hook: c.hook,
		Class: classString(c.class), Stopped: p.stoppedBy(c)}
}

// infoOf copies a container's registry entry.
func (p *Plugin) infoOf(c *container) Info {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return Info{Meta: c.meta, Policy: c.policy, CgroupID: c.cgroupID, CgroupDir: c.cgroupDir,
		CgroupsPath: c.cgroupsPath, Hook: c.hook, State: c.state}
}

// Lookup finds the container of a tracked cgroup (also shortly after it
// stopped, while its last events may still be read).
func (p *Plugin) Lookup(cgroupID uint64) (Info, bool) {
	p.mu.RLock()
	c := p.byCgroup[cgroupID]
	p.mu.RUnlock()
	if c == nil {
		return Info{}, false
	}
	return p.infoOf(c), true
}

// Find finds a container by its id, a unique prefix of its id, or its
// name (for vigil release and unfreeze).
func (p *Plugin) Find(target string) (Info, error) {
	if target == "" {
		return Info{}, errors.New("no container named: give its id, an id prefix or its name")
	}
	p.mu.RLock()
	var found []*container
	if c := p.byID[target]; c != nil {
		found = []*container{c}
	} else {
		for id, c := range p.byID {
			if strings.HasPrefix(id, target) || c.meta.Name == target {
				found = append(found, c)
			}
		}
	}
	p.mu.RUnlock()
	switch len(found) {
	case 0:
		return Info{}, fmt.Errorf("no container %q known to the agent (see 'vigil status')", target)
	case 1:
		return p.infoOf(found[0]), nil
	}
	return Info{}, fmt.Errorf("%q names %d containers: give more of the id", target, len(found))
}

// Containers lists the known containers with live counters, sorted by
// namespace, pod, name; then the last finished ones with final counters.
func (p *Plugin) Containers() (live, finished []ContainerStatus) {
	return p.ContainersWith(nil)
}

// ContainersWith is Containers with the tracked cgroups' counters already
// read (the tracer's Tracked: one pass over them, not one read per
// container); a tracked container missing from all is read on its own.
func (p *Plugin) ContainersWith(all map[uint64]bpf.Counters) (live, finished []ContainerStatus) {
	p.mu.RLock()
	cs := make([]*container, 0, len(p.byID))
	for _, c := range p.byID {
		if c.state != "stopped" || c.tracked {
			cs = append(cs, c) // stopped ones are listed with their final counters
		}
	}
	finished = append(finished, p.final...)
	p.mu.RUnlock()
	live = make([]ContainerStatus, 0, len(cs))
	for _, c := range cs {
		var n bpf.Counters
		p.mu.RLock()
		tracked, id := c.tracked, c.cgroupID
		p.mu.RUnlock()
		if tracked {
			var ok bool
			if n, ok = all[id]; !ok {
				n, _ = p.tracer.Counters(id)
			}
		}
		live = append(live, p.statusOf(c, n))
	}
	sort.Slice(live, func(i, j int) bool {
		a, b := live[i], live[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Pod != b.Pod {
			return a.Pod < b.Pod
		}
		return a.Name < b.Name
	})
	return live, finished
}

// Rejected lists containers whose seccomp adjustment the runtime refused.
func (p *Plugin) Rejected() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return append([]string(nil), p.rejected...)
}

// Register tracks a container announced by the OCI hook (runtimes without
// NRI). The hook runs after the runtime fixed the container's spec, so only
// monitoring applies: a seccomp profile cannot be injected this way.
//
// The request is checked against what the runtime made, so that a caller
// cannot make vigil track (or put its metadata on) a cgroup that is not the
// container's: the bundle's config.json must name the same cgroups path,
// the container's init process must be in that cgroup, the id must not be
// a container the runtime manages over NRI, and the cgroup must not be
// another container's.
func (p *Plugin) Register(req agentctl.Request) (annotations.Policy, error) {
	if req.Container == nil || req.Container.ID == "" {
		return annotations.Policy{}, errors.New("register: no container id")
	}
	meta := *req.Container
	// The node is the agent's to say, not the hook's.
	meta.Node = NodeName()
	if err := p.checkRegistration(req); err != nil {
		return annotations.Policy{}, fmt.Errorf("register %s: %w", short(meta.ID), err)
	}
	p.mu.RLock()
	old := p.byID[meta.ID]
	p.mu.RUnlock()
	if old != nil {
		if !old.hook {
			return annotations.Policy{}, fmt.Errorf("register %s: the runtime manages this container over NRI", short(meta.ID))
		}
		if old.cgroupsPath == req.CgroupsPath {
			return old.policy, nil // the same registration again
		}
		return annotations.Policy{}, fmt.Errorf("register %s: already registered with another cgroup", short(meta.ID))
	}
	pol, err := annotations.Parse(nil, req.Annotations, meta.Name, meta.Namespace, meta.Image, p.node())
	if err != nil {
		return annotations.Policy{}, err
	}
	if pol.Seccomp != "" {
		pol.Warnings = append(pol.Warnings, fmt.Sprintf("seccomp profile %q not applied: the OCI hook cannot change a created container's seccomp policy (use NRI)", pol.Seccomp))
	}
	c := &container{meta: &meta, policy: pol, state: "running", hook: true, cgroupsPath: req.CgroupsPath}
	if pol.Monitor {
		dir, err := CgroupDir(p.cfg.CgroupRoot, req.CgroupsPath)
		if err != nil {
			return pol, fmt.Errorf("vigil: %w", err)
		}
		if id, err := p.cfg.CgroupID(dir); err == nil {
			p.mu.RLock()
			other := p.byCgroup[id]
			p.mu.RUnlock()
			if other != nil && other.meta.ID != meta.ID {
				return annotations.Policy{}, fmt.Errorf("register %s: cgroup %s belongs to container %s", short(meta.ID), req.CgroupsPath, short(other.meta.ID))
			}
		}
	}
	p.mu.Lock()
	p.byID[meta.ID] = c
	p.mu.Unlock()
	if pol.Monitor {
		ctr := &api.Container{Id: meta.ID, Linux: &api.LinuxContainer{CgroupsPath: req.CgroupsPath}}
		if err := p.track(c, ctr); err != nil {
			return pol, err
		}
		p.log.WithFields(logrus.Fields{"container": meta.Name, "id": short(meta.ID), "cgroup": c.cgroupID}).Info("tracking container (OCI hook)")
		if cb := p.cfg.Callbacks.Started; cb != nil {
			cb(p.infoOf(c))
		}
	}
	return pol, nil
}

// checkRegistration checks a hook's request against the runtime's own
// bundle and the container's init process.
func (p *Plugin) checkRegistration(req agentctl.Request) error {
	if req.Bundle == "" || !filepath.IsAbs(req.Bundle) {
		return fmt.Errorf("bundle %q: the hook must pass the absolute bundle path from the runtime's state", req.Bundle)
	}
	data, err := os.ReadFile(filepath.Join(req.Bundle, "config.json"))
	if err != nil {
		return fmt.Errorf("read the bundle's config.json: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("decode the bundle's config.json: %w", err)
	}
	if spec.Linux == nil || spec.Linux.CgroupsPath != req.CgroupsPath {
		want := ""
		if spec.Linux != nil {
			want = spec.Linux.CgroupsPath
		}
		return fmt.Errorf("cgroups path %q is not the bundle's (%q)", req.CgroupsPath, want)
	}
	if req.PID <= 0 {
		return errors.New("no init pid: the hook must pass the pid from the runtime's state")
	}
	dir, err := CgroupDir(p.cfg.CgroupRoot, req.CgroupsPath)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(p.cfg.CgroupRoot, dir)
	if err != nil {
		return err
	}
	got, err := p.cfg.CgroupOf(req.PID)
	if err != nil {
		return err
	}
	if got != "/"+filepath.ToSlash(rel) {
		return fmt.Errorf("the container's init process %d is in cgroup %q, not %q", req.PID, got, "/"+rel)
	}
	return nil
}

// unifiedCgroupOf is a process's cgroup v2 path (the "0::" line).
func unifiedCgroupOf(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", fmt.Errorf("cgroup of the container's init process: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			return path, nil
		}
	}
	return "", fmt.Errorf("process %d has no cgroup v2 path", pid)
}

// Unregister stops tracking a container registered by the OCI hook; the
// runtime's own (NRI) containers cannot be unregistered this way.
func (p *Plugin) Unregister(id string) error {
	p.mu.RLock()
	c := p.byID[id]
	p.mu.RUnlock()
	if c == nil {
		return nil
	}
	if !c.hook {
		return fmt.Errorf("unregister %s: the runtime manages this container over NRI", short(id))
	}
	pod := &api.PodSandbox{Name: c.meta.Pod, Namespace: c.meta.Namespace}
	ctr := &api.Container{Id: id, Name: c.meta.Name}
	p.finish(pod, ctr, "stopped")
	p.mu.Lock()
	if p.byCgroup[c.cgroupID] == c {
		p.retire(c.cgroupID, c)
	}
	delete(p.byID, id)
	p.mu.Unlock()
	return nil
}
