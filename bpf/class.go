package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Class flags of a tracked cgroup (syscalls.bpf.c: CG_*).
const (
	cgRealtime = 1
	cgBlock    = 2
)

// TrackOptions are a tracked cgroup's class. The zero value is the normal
// class: records wake the reader adaptively and are dropped (counted) when
// the ring is full or the cgroup over its budget.
type TrackOptions struct {
	// Realtime: each record wakes the reader at once, so a reader waiting
	// for the kernel takes it within microseconds. Each wakeup costs the
	// traced task an irq_work and the reader a wakeup.
	Realtime bool
	// Block: the cgroup is slowed instead of losing records. When its
	// budget is spent or the ring is half full, the process making the
	// syscall is stopped (SIGSTOP, from the tracer, before the syscall
	// returns) and continued (SIGCONT) once the ring has drained to an
	// eighth and the budget has recovered half its burst. Records the full
	// ring still refuses are counted as dropped, as for any cgroup.
	Block bool
}

func (o TrackOptions) flags() uint64 {
	var f uint64
	if o.Realtime {
		f |= cgRealtime
	}
	if o.Block {
		f |= cgBlock
	}
	return f
}

// TrackWith starts tracing a cgroup with a class. The class is set when
// tracking begins: a cgroup already tracked (by an agent before a restart)
// keeps its counters and the class it had.
func (m *Monitor) TrackWith(cgroupID uint64, o TrackOptions) error {
	fd, err := openCgroup(cgroupID)
	if err != nil {
		return fmt.Errorf("track cgroup %d: %w", cgroupID, err)
	}
	defer unix.Close(fd)
	now := monotonicNow()
	err = m.objs.VigilCgroups.Update(uint32(fd), vigilCgState{TrackedNs: now, Cgid: cgroupID, Flags: o.flags()}, ebpf.UpdateNoExist)
	if errors.Is(err, ebpf.ErrKeyExist) {
		// Tracked before: its class is the one it had, and a block class
		// needs this agent's pacer whatever was asked now.
		var st vigilCgState
		if err := m.objs.VigilCgroups.Lookup(uint32(fd), &st); err == nil {
			o.Block = st.Flags&cgBlock != 0
			o.Realtime = st.Flags&cgRealtime != 0
		}
	} else if err != nil {
		return fmt.Errorf("track cgroup %d: %w", cgroupID, err)
	}
	if err := m.objs.VigilTracked.Update(cgroupID, now, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("track cgroup %d: list: %w", cgroupID, err)
	}
	if o.Realtime {
		m.setRealtime(cgroupID, true)
	}
	if o.Block {
		return m.startPacer()
	}
	return nil
}

// Class reads the class of a tracked cgroup and how many times the block
// class stopped one of its processes.
func (m *Monitor) Class(cgroupID uint64) (o TrackOptions, paused uint64, err error) {
	fd, err := openCgroup(cgroupID)
	if err != nil {
		return o, 0, fmt.Errorf("class of cgroup %d: %w", cgroupID, err)
	}
	defer unix.Close(fd)
	var st vigilCgState
	if err := m.objs.VigilCgroups.Lookup(uint32(fd), &st); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return o, 0, fmt.Errorf("cgroup %d: %w", cgroupID, ErrNotTracked)
		}
		return o, 0, fmt.Errorf("class of cgroup %d: %w", cgroupID, err)
	}
	return TrackOptions{Realtime: st.Flags&cgRealtime != 0, Block: st.Flags&cgBlock != 0}, st.Paused, nil
}

// pacers: one per Monitor, started by the first block-class cgroup.
var pacers sync.Map // *Monitor → *pacer

// pacer continues the processes the block class stopped, once the ring has
// drained and their cgroup's budget has recovered. It owns its handles (a
// clone of the paused map, its own read-only view of the ring's positions),
// so it needs nothing from the Monitor after it started, and ends when the
// Monitor closes.
type pacer struct {
	paused   *ebpf.Map
	cgroups  *ebpf.Map
	pos      []byte // the ring's consumer and producer pages, read-only
	ringSize uint64
	halfTau  uint64 // ns: the budget debt (tat - now) at which a cgroup may go on
	root     string // cgroup v2 mount
	resumed  atomic.Uint64
}

// pacerTick is how often the pacer looks at the stopped processes.
const pacerTick = 500 * time.Microsecond

func (m *Monitor) startPacer() error {
	if _, ok := pacers.Load(m); ok {
		return nil
	}
	_, tau, err := budget(m.cfg.CgroupRate, m.cfg.CgroupBurst)
	if err != nil {
		return err
	}
	root, err := CgroupRoot()
	if err != nil {
		return fmt.Errorf("block class: %w", err)
	}
	paused, err := m.objs.VigilPaused.Clone()
	if err != nil {
		return fmt.Errorf("block class: paused map: %w", err)
	}
	cgroups, err := m.objs.VigilCgroups.Clone()
	if err != nil {
		paused.Close()
		return fmt.Errorf("block class: cgroup map: %w", err)
	}
	page := os.Getpagesize()
	pos, err := unix.Mmap(m.objs.VigilEvents.FD(), 0, 2*page, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		paused.Close()
		cgroups.Close()
		return fmt.Errorf("block class: map ring positions: %w", err)
	}
	p := &pacer{paused: paused, cgroups: cgroups, pos: pos, ringSize: uint64(m.objs.VigilEvents.MaxEntries()), halfTau: tau / 2, root: root}
	if _, loaded := pacers.LoadOrStore(m, p); loaded {
		p.close()
		return nil
	}
	go p.run(m.closing, func() { pacers.Delete(m) })
	return nil
}

// Resumed is how many stopped processes the block class has continued.
func (m *Monitor) Resumed() uint64 {
	if p, ok := pacers.Load(m); ok {
		return p.(*pacer).resumed.Load()
	}
	return 0
}

func (p *pacer) close() {
	unix.Munmap(p.pos)
	p.paused.Close()
	p.cgroups.Close()
}

func (p *pacer) run(closing <-chan struct{}, done func()) {
	defer done()
	defer p.close()
	t := time.NewTicker(pacerTick)
	defer t.Stop()
	for {
		select {
		case <-closing:
			// Nothing is left stopped by a closing tracer... unless it is
			// pinned and keeps tracing: then the next agent's pacer
			// continues them once its reader drains the ring.
			return
		case <-t.C:
		}
		p.pass()
	}
}

// pending is the number of bytes waiting in the ring.
func (p *pacer) pending() uint64 {
	page := os.Getpagesize()
	cons := atomic.LoadUint64((*uint64)(unsafe.Pointer(&p.pos[0])))
	prod := atomic.LoadUint64((*uint64)(unsafe.Pointer(&p.pos[page])))
	return prod - cons
}

// pass continues each stopped process whose cgroup may go on.
func (p *pacer) pass() {
	var tgid uint32
	var cgid uint64
	type entry struct {
		tgid uint32
		cgid uint64
	}
	var stopped []entry
	it := p.paused.Iterate()
	for it.Next(&tgid, &cgid) {
		stopped = append(stopped, entry{tgid, cgid})
	}
	if len(stopped) == 0 || p.pending() > p.ringSize/8 {
		return
	}
	now := monotonicNow()
	debt := map[uint64]bool{} // cgroup id → still over half its burst
	for _, e := range stopped {
		over, seen := debt[e.cgid]
		if !seen {
			over = p.overBudget(e.cgid, now)
			debt[e.cgid] = over
		}
		if over {
			continue
		}
		// Remove first: the process is stopped, so it cannot re-enter
		// itself before the SIGCONT below.
		p.paused.Delete(e.tgid)
		if !inCgroup(p.root, int(e.tgid), e.cgid) {
			continue // gone, or its pid taken by another process
		}
		if err := unix.Kill(int(e.tgid), unix.SIGCONT); err == nil {
			p.resumed.Add(1)
		}
	}
}

// overBudget says whether a cgroup still owes more than half its burst.
// A cgroup no longer tracked owes nothing.
func (p *pacer) overBudget(cgid, now uint64) bool {
	if p.halfTau == 0 {
		return false
	}
	fd, err := openCgroup(cgid)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st vigilCgState
	if err := p.cgroups.Lookup(uint32(fd), &st); err != nil {
		return false
	}
	return int64(st.Tat-now) > int64(p.halfTau)
}

// inCgroup says whether process pid is in the cgroup v2 of that id
// (/proc/PID/cgroup's "0::" line).
func inCgroup(root string, pid int, cgid uint64) bool {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			var st unix.Stat_t
			if unix.Stat(filepath.Join(root, rest), &st) != nil {
				return false
			}
			return st.Ino == cgid
		}
	}
	return false
}
