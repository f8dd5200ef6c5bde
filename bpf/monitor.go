// Package bpf owns vigil's eBPF syscall tracer: the BPF C programs
// (syscalls.bpf.c), their committed bpf2go bindings, and Monitor, the small
// API the rest of vigil uses to load them, track cgroups, read events and
// read the exact per-cgroup counters.
//
// Kernel requirements: BTF (/sys/kernel/btf/vmlinux), BPF ring buffers and
// tp_btf programs on the raw syscall tracepoints (Linux 5.11+ with BTF for
// all of it; bpf_task_pt_regs needs 5.15), task storage, cgroup v2 ids.
package bpf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"vigil.dev/vigil/event"
)

// DefaultPinDir is where the agent pins the tracer's maps and links, so that
// a restarted agent picks up the same counters and ring without a gap.
const DefaultPinDir = "/sys/fs/bpf/vigil"

// Config sets up a Monitor. The zero value works: an unpinned tracer with a
// 16 MiB ring and the default wakeup policy.
type Config struct {
	// RingBytes is the ring buffer size: a power of two, at least a page.
	RingBytes int
	// PinDir pins maps and links there ("" pins nothing; the tracer then
	// lives as long as the Monitor).
	PinDir string
	// PollInterval is how often a busy reader takes the ring's records
	// (default 900 µs: p99 delivery under 1 ms at moderate rates). While
	// records flow, delivery costs the traced tasks no wakeups at all, and
	// a record waits about this long at most. Shorter means lower latency
	// and more reader wakeups competing with the workload for CPU.
	PollInterval time.Duration
	// MaxPollInterval is how far a busy reader stretches its poll interval
	// while each look finds few records (default 16 ms when PollInterval is
	// unset, else PollInterval: a fixed interval). Every look costs the
	// reader a timer and a thread wakeup, and the pipeline a hand-over
	// (another wakeup), so at tens of thousands of records per second a
	// look every few ms cost more than the records; the interval doubles
	// while a look finds fewer than pollFew records (or none) and halves
	// back while it finds more than pollMany, and after a quiet spell the
	// first look is PollInterval again. A record of the normal class then
	// waits at most MaxPollInterval (the realtime class wakes the reader).
	MaxPollInterval time.Duration
	// IdleAfter is how long the reader polls without finding a record
	// before it sleeps until the kernel wakes it (default 32 ms, or twice
	// MaxPollInterval when that is longer; at least twice MaxPollInterval).
	IdleAfter time.Duration
	// WakeInterval: the kernel wakes the reader for a record when this long
	// passed since its last wakeup (default 20 ms). Shorter than IdleAfter,
	// so the first record after a quiet spell always wakes a sleeping
	// reader at once; under load it bounds wakeups to one per interval.
	// While the reader looks on its own timer it holds these wakeups back
	// (see wakeGate): longer than MaxPollInterval, none comes while
	// records flow.
	WakeInterval time.Duration
	// WakeBytes wakes the reader early when this much is waiting
	// (default: an eighth of the ring), at most once per WakeInterval/20.
	WakeBytes int
	// IdleWait bounds one sleep of an idle reader (default 250 ms): a
	// cancelled context or Close wakes it at once, so this only bounds
	// how long a missed kernel wakeup could delay records.
	IdleWait time.Duration
	// CgroupRate is each tracked cgroup's budget of records per second
	// (default DefaultCgroupRate; negative: no budget), CgroupBurst how many
	// it may write at once (default DefaultCgroupBurst). A record over the
	// budget is the cgroup's own drop, counted as throttled, so that one
	// flooding container cannot fill the ring that all of them share.
	CgroupRate  int
	CgroupBurst int
}

// The default budget of a cgroup: a twelfth of what one reader takes
// (about 2.4M records/s), far above what busy services make (a build or
// a web server: tens of thousands per second).
const (
	DefaultCgroupRate  = 200_000
	DefaultCgroupBurst = 50_000
)

// Counters are the exact per-cgroup counts kept in the kernel. At any quiet
// moment Seen == Emitted + Dropped.
type Counters struct {
	Seen    uint64 // syscalls completed (= sequence numbers handed out)
	Emitted uint64 // records written to the ring
	Dropped uint64 // records lost because the ring was full or the cgroup over its budget
	// Throttled counts the dropped records that were over the cgroup's
	// budget: the loss was the cgroup's own flood.
	Throttled uint64
}

// Monitor is a loaded tracer.
type Monitor struct {
	cfg    Config
	objs   vigilObjects
	links  []link.Link
	ring   *ring
	dec    decoder
	reused bool

	ident    [sha256.Size]byte // identity of the programs loaded (objectIdentity)
	replaced []string          // pinned programs replaced by this Load (attach)

	closing chan struct{} // closed by Close: Run stops
	runMu   sync.Mutex    // held by Run; Close waits for it before unmapping the ring

	// realtime holds the tracked cgroups of the realtime class: while
	// there is one, the reader waits between looks for the kernel's
	// wakeup (which each realtime record forces) instead of sleeping.
	rtMu     sync.Mutex
	realtime map[uint64]struct{}
	rtCount  atomic.Int32

	gate *wakeGate // nil: the kernel's wakeups are not held back
}

// setRealtime records whether a tracked cgroup is in the realtime class.
func (m *Monitor) setRealtime(cgroupID uint64, on bool) {
	m.rtMu.Lock()
	defer m.rtMu.Unlock()
	if on {
		if m.realtime == nil {
			m.realtime = map[uint64]struct{}{}
		}
		m.realtime[cgroupID] = struct{}{}
	} else {
		delete(m.realtime, cgroupID)
	}
	m.rtCount.Store(int32(len(m.realtime)))
}

// Load checks the kernel, loads and attaches the tracer. With cfg.PinDir set
// and a tracer already pinned there, it reuses the pinned one: counters and
// ring carry on as they were, and so do the attached programs when they are
// this binary's (same object, same settings). Pinned programs of another
// object or other settings are replaced in place (see Replaced).
func Load(cfg Config) (*Monitor, error) {
	if cfg.RingBytes == 0 {
		cfg.RingBytes = 16 << 20
	}
	if cfg.RingBytes < os.Getpagesize() || cfg.RingBytes&(cfg.RingBytes-1) != 0 {
		return nil, fmt.Errorf("ring size %d: must be a power of two of at least %d bytes", cfg.RingBytes, os.Getpagesize())
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 900 * time.Microsecond
		if cfg.MaxPollInterval == 0 {
			cfg.MaxPollInterval = 16 * time.Millisecond
		}
	}
	if cfg.MaxPollInterval < cfg.PollInterval {
		cfg.MaxPollInterval = cfg.PollInterval
	}
	// The reader parks on the ring only after IdleAfter of empty looks:
	// at least two looks after the empty one that lets the kernel's
	// wakeups through again (see wakeGate), or a record written just
	// before that look's store could wait for the idle wait.
	if cfg.IdleAfter == 0 {
		cfg.IdleAfter = max(32*time.Millisecond, 2*cfg.MaxPollInterval)
	}
	if cfg.IdleAfter < 2*cfg.MaxPollInterval {
		return nil, fmt.Errorf("idle time %v: must be at least twice the longest poll interval %v, or a record written after a pause could wait for the idle reader's sleep", cfg.IdleAfter, cfg.MaxPollInterval)
	}
	if cfg.WakeInterval == 0 {
		cfg.WakeInterval = 20 * time.Millisecond
	}
	if cfg.WakeInterval >= cfg.IdleAfter {
		return nil, fmt.Errorf("wake interval %v: must be shorter than the idle time %v, or a sleeping reader could miss the first record after a pause", cfg.WakeInterval, cfg.IdleAfter)
	}
	if cfg.WakeBytes == 0 {
		cfg.WakeBytes = cfg.RingBytes / 8
	}
	if cfg.IdleWait == 0 {
		cfg.IdleWait = 250 * time.Millisecond
	}
	budgetNs, budgetTau, err := budget(cfg.CgroupRate, cfg.CgroupBurst)
	if err != nil {
		return nil, err
	}
	if err := CheckKernel(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}

	spec, err := loadVigil()
	if err != nil {
		return nil, fmt.Errorf("load bpf spec: %w", err)
	}
	spec.Maps["vigil_events"].MaxEntries = uint32(cfg.RingBytes)
	consts := map[string]uint64{
		"wake_ns":     uint64(cfg.WakeInterval),
		"wake_bytes":  uint64(cfg.WakeBytes),
		"wake_min_ns": uint64(cfg.WakeInterval / 20),
		"budget_ns":   budgetNs,
		"budget_tau":  budgetTau,
	}
	for name, v := range consts {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	opts := &ebpf.CollectionOptions{}
	if cfg.PinDir != "" {
		if err := ensureBPFFS(cfg.PinDir); err != nil {
			return nil, err
		}
		opts.Maps.PinPath = cfg.PinDir
	} else {
		for _, ms := range spec.Maps {
			ms.Pinning = ebpf.PinNone
		}
	}
	m := &Monitor{cfg: cfg, closing: make(chan struct{}), ident: objectIdentity(consts)}
	if err := spec.LoadAndAssign(&m.objs, opts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load bpf objects: verifier rejected the program:\n%+v", ve)
		}
		if cfg.PinDir != "" && strings.Contains(err.Error(), "incompatible") {
			return nil, fmt.Errorf("load bpf objects: the tracer pinned in %s was made with other settings (ring size?): stop the agent and remove %s, or use the same settings: %w", cfg.PinDir, cfg.PinDir, err)
		}
		return nil, fmt.Errorf("load bpf objects: %w", err)
	}
	if err := m.fillSysmeta(); err != nil {
		m.Close()
		return nil, err
	}
	if err := m.attach(); err != nil {
		m.Close()
		return nil, err
	}
	// A new reader knows no thread's comm yet: ask every thread to resend.
	if err := m.bumpGen(); err != nil {
		m.Close()
		return nil, err
	}
	rg, err := newRing(m.objs.VigilEvents)
	if err != nil {
		m.Close()
		return nil, err
	}
	m.ring = rg
	// The sys_exit program that runs (this load's or a pinned one's)
	// reads last_wake from its own .bss; without it the kernel's wakeups
	// go on as before (see wakeGate).
	if m.gate, err = newWakeGate(m.links[0], spec.Variables["last_wake"].Offset); err != nil {
		m.gate = nil
	}
	m.dec = newDecoder()
	return m, nil
}

var progs = []struct {
	name string
	prog func(*vigilObjects) *ebpf.Program
}{
	{"sys_exit", func(o *vigilObjects) *ebpf.Program { return o.VigilSysExit }},
	{"sched_process_exec", func(o *vigilObjects) *ebpf.Program { return o.VigilExec }},
	{"sched_process_exit", func(o *vigilObjects) *ebpf.Program { return o.VigilExit }},
	{"cgroup_rmdir", func(o *vigilObjects) *ebpf.Program { return o.VigilCgroupRmdir }},
}

// attach attaches the programs. With pinning it reuses the pinned links, so
// that a restart loses no syscall, when they run this binary's programs (the
// identity pinned beside them matches); otherwise it attaches the new
// programs and then detaches the pinned ones. Tracing links cannot swap
// their program in place (the kernel's tracing links have no update), so
// for the microseconds between the two both programs run: a syscall then
// may be counted twice, but none goes uncounted. The maps stay, and with
// them the counters.
func (m *Monitor) attach() error {
	stale := false
	if m.cfg.PinDir != "" {
		old, ok := pinnedIdentity(m.cfg.PinDir)
		stale = !ok || old != m.ident // no identity: pinned by a vigil before identities
	}
	for _, p := range progs {
		pin := ""
		var pinned link.Link
		if m.cfg.PinDir != "" {
			pin = filepath.Join(m.cfg.PinDir, "link_"+p.name)
			if l, err := link.LoadPinnedLink(pin, nil); err == nil {
				m.reused = true
				if !stale {
					m.links = append(m.links, l)
					continue
				}
				pinned = l
			}
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: p.prog(&m.objs), AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			if pinned != nil {
				pinned.Close()
			}
			return fmt.Errorf("attach %s: %w", p.name, err)
		}
		if pin != "" {
			if err := pinOver(l, pin); err != nil {
				l.Close()
				if pinned != nil {
					pinned.Close()
				}
				return fmt.Errorf("pin %s link: %w", p.name, err)
			}
		}
		if pinned != nil {
			// Its pin now names the new link: closing the last reference
			// detaches the old program.
			pinned.Close()
			m.replaced = append(m.replaced, p.name)
		}
		m.links = append(m.links, l)
	}
	if stale {
		if err := pinIdentity(m.cfg.PinDir, m.ident); err != nil {
			return err
		}
	}
	return nil
}

// identityPin names the pin, beside the maps and links, of an array map
// holding the identity of the pinned programs (objectIdentity).
const identityPin = "vigil_object"

// objectIdentity is the SHA-256 of the embedded object and the constants
// set at load: two loads with the same identity run the same programs.
func objectIdentity(consts map[string]uint64) [sha256.Size]byte {
	h := sha256.New()
	h.Write(_VigilBytes)
	names := make([]string, 0, len(consts))
	for n := range consts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "\x00%s=%d", n, consts[n])
	}
	var id [sha256.Size]byte
	h.Sum(id[:0])
	return id
}

// pinnedIdentity reads the identity pinned in pinDir; false when there is
// none (or it cannot be read).
func pinnedIdentity(pinDir string) ([sha256.Size]byte, bool) {
	var id [sha256.Size]byte
	mp, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, identityPin), nil)
	if err != nil {
		return id, false
	}
	defer mp.Close()
	if err := mp.Lookup(uint32(0), &id); err != nil {
		return id, false
	}
	return id, true
}

// pinIdentity pins a map holding id in pinDir, replacing the one there.
func pinIdentity(pinDir string, id [sha256.Size]byte) error {
	mp, err := ebpf.NewMap(&ebpf.MapSpec{Name: identityPin, Type: ebpf.Array, KeySize: 4, ValueSize: sha256.Size, MaxEntries: 1})
	if err != nil {
		return fmt.Errorf("pin tracer identity: %w", err)
	}
	defer mp.Close()
	if err := mp.Update(uint32(0), id[:], ebpf.UpdateAny); err != nil {
		return fmt.Errorf("pin tracer identity: %w", err)
	}
	if err := pinOver(mp, filepath.Join(pinDir, identityPin)); err != nil {
		return fmt.Errorf("pin tracer identity: %w", err)
	}
	return nil
}

// pinOver pins obj at path, atomically replacing what is pinned there:
// bpffs renames over an existing pin (and refuses names with a dot).
func pinOver(obj interface{ Pin(string) error }, path string) error {
	tmp := path + "_new"
	os.Remove(tmp) // left by an interrupted replacement
	if err := obj.Pin(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Reused reports whether Load found a pinned tracer and carried it on: its
// counters and ring, and its programs unless Replaced lists them.
func (m *Monitor) Reused() bool { return m.reused }

// Replaced lists the pinned programs (by tracepoint) that Load replaced
// with its own because they came from another object or other settings
// (Identity names the programs now in force).
func (m *Monitor) Replaced() []string { return m.replaced }

// Identity is the hex SHA-256 of the programs this Monitor loaded: the
// embedded object and the settings compiled into it.
func (m *Monitor) Identity() string { return hex.EncodeToString(m.ident[:]) }

func (m *Monitor) bumpGen() error {
	var gen uint64
	if err := m.objs.VigilGen.Lookup(uint32(0), &gen); err != nil {
		return fmt.Errorf("read comm generation: %w", err)
	}
	gen++
	if err := m.objs.VigilGen.Update(uint32(0), gen, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bump comm generation: %w", err)
	}
	return nil
}

// Track starts tracing a cgroup (by its cgroup v2 id). Tracking a cgroup
// that is already tracked keeps its counters.
func (m *Monitor) Track(cgroupID uint64) error {
	fd, err := openCgroup(cgroupID)
	if err != nil {
		return fmt.Errorf("track cgroup %d: %w", cgroupID, err)
	}
	defer unix.Close(fd)
	now := monotonicNow()
	err = m.objs.VigilCgroups.Update(uint32(fd), vigilCgState{TrackedNs: now}, ebpf.UpdateNoExist)
	if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("track cgroup %d: %w", cgroupID, err)
	}
	var kept TrackOptions
	if errors.Is(err, ebpf.ErrKeyExist) {
		// Tracked before (an agent before a restart): it keeps the class
		// it had, which needs this agent's reader and pacer.
		var st vigilCgState
		if err := m.objs.VigilCgroups.Lookup(uint32(fd), &st); err == nil {
			kept = TrackOptions{Realtime: st.Flags&cgRealtime != 0, Block: st.Flags&cgBlock != 0}
		}
	}
	if err := m.objs.VigilTracked.Update(cgroupID, now, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("track cgroup %d: list: %w", cgroupID, err)
	}
	if kept.Realtime {
		m.setRealtime(cgroupID, true)
	}
	if kept.Block {
		return m.startPacer()
	}
	return nil
}

// Untrack stops tracing a cgroup and returns its final counters (also
// for a cgroup already removed: the tracer kept them).
func (m *Monitor) Untrack(cgroupID uint64) (Counters, error) {
	m.objs.VigilTracked.Delete(cgroupID)
	m.setRealtime(cgroupID, false)
	fd, err := openCgroup(cgroupID)
	if err != nil {
		if c, ok := m.final(cgroupID); ok {
			m.objs.VigilFinal.Delete(cgroupID)
			return c, nil
		}
		return Counters{}, fmt.Errorf("untrack cgroup %d: %w", cgroupID, err)
	}
	defer unix.Close(fd)
	c, err := m.counters(fd, cgroupID)
	if err != nil {
		return c, err
	}
	if err := m.objs.VigilCgroups.Delete(uint32(fd)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return c, fmt.Errorf("untrack cgroup %d: %w", cgroupID, err)
	}
	return c, nil
}

// ErrNotTracked is returned for a cgroup the tracer does not follow.
var ErrNotTracked = errors.New("cgroup not tracked")

// Counters reads a tracked cgroup's counters; for a tracked cgroup that was
// removed, its final counters.
func (m *Monitor) Counters(cgroupID uint64) (Counters, error) {
	fd, err := openCgroup(cgroupID)
	if err != nil {
		if c, ok := m.final(cgroupID); ok {
			return c, nil
		}
		return Counters{}, fmt.Errorf("counters of cgroup %d: %w", cgroupID, err)
	}
	defer unix.Close(fd)
	return m.counters(fd, cgroupID)
}

// final reads the counters the tracer kept when a tracked cgroup was removed.
func (m *Monitor) final(cgroupID uint64) (Counters, bool) {
	var st vigilCgState
	if err := m.objs.VigilFinal.Lookup(cgroupID, &st); err != nil {
		return Counters{}, false
	}
	return st.counters(), true
}

func (m *Monitor) counters(fd int, cgroupID uint64) (Counters, error) {
	var st vigilCgState
	if err := m.objs.VigilCgroups.Lookup(uint32(fd), &st); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Counters{}, fmt.Errorf("cgroup %d: %w", cgroupID, ErrNotTracked)
		}
		return Counters{}, fmt.Errorf("read counters of cgroup %d: %w", cgroupID, err)
	}
	return st.counters(), nil
}

// Tracked lists the tracked cgroups that still exist, with their counters.
func (m *Monitor) Tracked() (map[uint64]Counters, error) {
	out := map[uint64]Counters{}
	var ids []uint64
	var id, since uint64
	it := m.objs.VigilTracked.Iterate()
	for it.Next(&id, &since) {
		ids = append(ids, id)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list tracked cgroups: %w", err)
	}
	for _, id := range ids {
		c, err := m.Counters(id)
		if err != nil {
			m.objs.VigilTracked.Delete(id) // gone, and its final counters too
			continue
		}
		out[id] = c
	}
	return out, nil
}

// Run reads events until ctx is done, then drains what the ring still holds
// and returns. fn gets each event; the *Event is reused after fn returns, so
// fn copies what it keeps. Run must not be called twice at once; Close
// stops it.
//
// The reader takes the ring's records every PollInterval while they flow,
// so the traced tasks pay no wakeups under load and the reader does not
// chase the producer record by record; after IdleAfter without records it
// sleeps in epoll until the kernel wakes it, which the first record after
// the pause does (see WakeInterval). A backlog of a quarter of the ring
// is drained without pause.
func (m *Monitor) Run(ctx context.Context, fn func(*event.Event)) error {
	return m.RunBatches(ctx, fn, nil)
}

// RunBatches is Run that also calls endBatch (when not nil) after each
// drain of the ring that delivered records: a consumer that batches events
// hands its batch on there.
func (m *Monitor) RunBatches(ctx context.Context, fn func(*event.Event), endBatch func()) error {
	return m.Consume(ctx, Consumer{Event: fn, EndBatch: endBatch})
}

// Consumer is what Consume hands the records to.
type Consumer struct {
	// Event gets each event; the *Event is reused after it returns.
	Event func(*event.Event)
	// EndBatch, when set, is called after each drain of the ring that
	// delivered records: a consumer that batches events hands its batch on
	// there.
	EndBatch func()
	// String, when set, makes the events' strings (paths, argv, unix
	// socket paths) from a record's bytes, which are valid only during the
	// call: a consumer that batches events copies them into the batch's own
	// memory (pipeline.Pipeline.String), so that no string is allocated.
	// Unset, each string is allocated.
	String func([]byte) string
	// Slot, when set, returns the event the next record is decoded into,
	// and Event is then called with it: a consumer that batches events
	// gives the next free event of its batch (pipeline.Pipeline.Slot), so
	// that the event is decoded in place, not decoded and then copied. A
	// slot whose record does not decode is not given to Event.
	Slot func() *event.Event
	// CPU, when set, is given the reader's own CPU time of each look (its
	// thread's CPU clock from the look's start to its wait: draining,
	// decoding, hand-overs), for a benchmark. The reader holds its thread
	// only while it looks, not while it waits: a goroutine locked to its
	// thread for good (so that the thread's clock was the reader's) makes
	// every wakeup a hand-over between two threads, which the agent's
	// reader does not pay. Costs two clock reads per look.
	CPU func(d time.Duration)
}

// Consume is Run with a Consumer: see its fields.
func (m *Monitor) Consume(ctx context.Context, c Consumer) (err error) {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	defer func() {
		select {
		case <-m.closing:
			err = nil // a wait Close interrupted
		default:
		}
		if ctx.Err() != nil {
			err = nil // a wait the cancelled context interrupted
		}
	}()
	// An idle reader parks in the poller for up to IdleWait: the
	// context's end wakes it (Close does too).
	m.ring.resetDeadlines()
	// The interrupt runs on a goroutine of its own: a Consume that returns
	// waits for one that started, or it could land on the next Consume's
	// fresh deadlines (its wait then failed with a timeout).
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { m.ring.interrupt(); close(interrupted) })
	defer func() {
		if !stop() {
			<-interrupted
		}
	}()
	defer m.gate.open() // the next reader is woken
	fn, endBatch := c.Event, c.EndBatch
	m.dec.str = c.String
	defer func() { m.dec.str = nil }()
	var own event.Event
	slot := c.Slot
	handle := func(b []byte) {
		ev := &own
		if slot != nil {
			ev = slot()
		}
		if m.dec.decode(b, ev) {
			fn(ev)
		}
	}
	var quiet time.Duration
	poll := m.cfg.PollInterval
	// look measures a look's CPU for c.CPU (see there).
	var look cpuLook
	if c.CPU != nil {
		defer look.end(c.CPU)
	}
	for {
		select {
		case <-m.closing:
			return nil
		default:
		}
		if c.CPU != nil {
			look.start()
		}
		n := m.ring.drain(handle)
		if n > 0 && endBatch != nil {
			endBatch()
		}
		select {
		case <-ctx.Done():
			if m.ring.drain(handle) > 0 && endBatch != nil {
				endBatch()
			}
			return nil
		default:
		}
		if n > 0 {
			quiet = 0
		}
		poll = nextPoll(poll, n, m.cfg.PollInterval, m.cfg.MaxPollInterval)
		m.gate.looked(n > 0)
		if c.CPU != nil {
			look.end(c.CPU)
		}
		var err error
		switch {
		case m.ring.pending() >= m.cfg.RingBytes/4:
			// Falling behind: no pause until the backlog is down.
		case quiet < m.cfg.IdleAfter && m.rtCount.Load() > 0:
			// A realtime cgroup's record wakes the reader at once; the
			// others wait for the next look as usual.
			start := time.Now()
			if err = m.ring.waitWake(poll); err != nil {
				err = fmt.Errorf("wait for events: %w", err)
			} else if n == 0 {
				quiet += time.Since(start)
			}
		case quiet < m.cfg.IdleAfter:
			if err = m.ring.sleep(poll); err == nil {
				quiet += poll
			}
		default:
			if err = m.ring.wait(m.cfg.IdleWait); err != nil {
				err = fmt.Errorf("wait for events: %w", err)
			}
			poll = m.cfg.PollInterval // the first look after a quiet spell
		}
		if err != nil && ctx.Err() == nil {
			return err
		}
		// A wait the context's end interrupted: the next turn drains
		// what is left and returns.
	}
}

// A look at the ring that finds fewer than pollFew records stretches the
// poll interval, one that finds more than pollMany shrinks it: a look
// costs about what 10-50 records do on a small VM (two thread wakeups),
// so it should find a few batches' worth.
const (
	pollFew  = 512
	pollMany = 2048
)

// nextPoll is the poll interval after a look that found n records.
func nextPoll(poll time.Duration, n int, lo, hi time.Duration) time.Duration {
	switch {
	case n < pollFew && poll < hi:
		return min(2*poll, hi)
	case n > pollMany && poll > lo:
		return max(poll/2, lo)
	}
	return poll
}

// Close detaches the tracer (unless pinned: a pinned tracer keeps counting
// for the next agent) and frees what it holds. It continues every process
// the block class stopped: with no pacer left, the tracer stops none (a
// pinned tracer budgets block-class cgroups as the normal class until
// another Monitor tracks them).
func (m *Monitor) Close() error {
	select {
	case <-m.closing:
		return nil // closed already
	default:
		close(m.closing)
	}
	if m.ring != nil {
		m.ring.interrupt() // a reader parked between looks returns now
	}
	m.runMu.Lock() // a running Run sees closing within one wait
	defer m.runMu.Unlock()
	m.endPacer()
	if m.ring != nil {
		m.ring.close()
	}
	m.gate.close()
	for _, l := range m.links {
		l.Close()
	}
	var err error
	if m.objs.VigilPacer != nil && m.objs.VigilPaused != nil {
		if _, rerr := releaseStopped(m.objs.VigilPacer, m.objs.VigilPaused); rerr != nil {
			err = fmt.Errorf("close tracer: %w", rerr)
		}
	}
	return errors.Join(err, m.objs.Close())
}

// Unpin removes a pinned tracer: it detaches its programs (also from under a
// Monitor still running, where the kernel can detach a link), continues
// every process its block class stopped, and removes its links, maps and
// identity. Counters are gone afterwards. A missing pinDir is not an error.
func Unpin(pinDir string) error {
	entries, err := os.ReadDir(pinDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read pin dir: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "link_") {
			continue
		}
		if l, err := link.LoadPinnedLink(filepath.Join(pinDir, e.Name()), nil); err == nil {
			if err := l.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
				errs = append(errs, fmt.Errorf("detach %s: %w", e.Name(), err))
			}
			l.Close()
		}
	}
	if err := releasePinned(pinDir); err != nil {
		errs = append(errs, err)
	}
	for _, e := range entries {
		p := filepath.Join(pinDir, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin %s: %w", e.Name(), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pin dir: %w", err)
	}
	return nil
}

// releasePinned continues the processes that the block class of the tracer
// pinned in pinDir stopped (releaseStopped). A tracer pinned before the
// pacer's heartbeat existed has no vigil_pacer: its paused map is emptied
// all the same.
func releasePinned(pinDir string) error {
	paused, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "vigil_paused"), nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("continue stopped processes: %w", err)
	}
	defer paused.Close()
	beat, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "vigil_pacer"), nil)
	if errors.Is(err, os.ErrNotExist) {
		beat, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	}
	if err != nil {
		return fmt.Errorf("continue stopped processes: %w", err)
	}
	defer beat.Close()
	if _, err := releaseStopped(beat, paused); err != nil {
		return fmt.Errorf("unpin: %w", err)
	}
	return nil
}

func (st *vigilCgState) counters() Counters {
	return Counters{Seen: st.Seq, Emitted: st.Emitted, Dropped: st.Dropped, Throttled: st.Throttled}
}

// budget turns a cgroup budget into the tracer's: ns per record and how far
// ahead a burst may go (0, 0: no budget).
func budget(rate, burst int) (ns, tau uint64, err error) {
	if rate < 0 {
		return 0, 0, nil
	}
	if rate == 0 {
		rate = DefaultCgroupRate
	}
	if burst == 0 {
		burst = DefaultCgroupBurst
	}
	if rate > 1e9 {
		return 0, 0, fmt.Errorf("cgroup rate %d: at most 1000000000 records/s (or negative for no budget)", rate)
	}
	if burst < 0 || burst > 1e9 {
		return 0, 0, fmt.Errorf("cgroup burst %d: must be between 1 and 1000000000 records", burst)
	}
	ns = uint64(1e9 / rate)
	return ns, ns * uint64(burst), nil
}

func ensureBPFFS(dir string) error {
	root := "/sys/fs/bpf"
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", root, "bpf", 0, ""); err != nil {
			return fmt.Errorf("bpffs is not mounted at %s and mounting it failed (mount -t bpf bpf %s): %w", root, root, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin dir: %w", err)
	}
	return nil
}

// CheckKernel says, in one line a user can act on, why this kernel cannot
// run the tracer.
func CheckKernel() error {
	if os.Geteuid() != 0 {
		return errors.New("tracing needs root (or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN): run it with sudo")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return errors.New("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): use a kernel built with CONFIG_DEBUG_INFO_BTF=y (6.2 or newer)")
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		var major, minor int
		fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
		if major < 6 || (major == 6 && minor < 2) {
			return fmt.Errorf("kernel %d.%d is too old: vigil's tracer keeps each container's state in cgroup local storage, which needs Linux 6.2 or newer", major, minor)
		}
	}
	return nil
}

// cpuLook measures the CPU time of a look on its thread: the reader holds
// its thread from start to end, so that the thread's CPU clock is its own.
type cpuLook struct {
	on bool
	t0 time.Duration
}

func (l *cpuLook) start() {
	if l.on {
		return
	}
	runtime.LockOSThread()
	l.on, l.t0 = true, threadCPU()
}

// end gives the look's CPU time to fn and lets the thread go; nothing
// when no look is open.
func (l *cpuLook) end(fn func(time.Duration)) {
	if !l.on {
		return
	}
	d := threadCPU() - l.t0
	l.on = false
	runtime.UnlockOSThread()
	fn(d)
}

// threadCPU is the calling thread's CPU time, read with a raw system call
// (one through the runtime's entersyscall can wake its monitor thread).
func threadCPU() time.Duration {
	var ts unix.Timespec
	unix.RawSyscall(unix.SYS_CLOCK_GETTIME, unix.CLOCK_THREAD_CPUTIME_ID, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}

func monotonicNow() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}
