package bpf

import (
	"bufio"
	"bytes"
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
	// budget is spent, or the ring is half full and it has spent more
	// than half its burst, or the ring is three quarters full, the
	// process making the syscall is stopped (SIGSTOP, from the tracer,
	// before the syscall returns) and continued (SIGCONT) once the ring
	// has drained to an eighth and the budget has recovered half its
	// burst. A process the container continues itself is stopped again
	// at its next record over budget, and past twice its burst the
	// cgroup's records are dropped (throttled) as in the normal class.
	// Processes are stopped only while this Monitor's pacer runs: Close
	// continues every process the class stopped, and until another
	// Monitor tracks the cgroup it is budgeted as the normal class.
	// Records the full ring still refuses are counted as dropped, as for
	// any cgroup.
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

// Class reads the class of a tracked cgroup and how many stop signals the
// block class sent its processes (one stop may take several: see
// pause_proc in syscalls.bpf.c).
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
// drained and their cgroup's budget has recovered, and keeps the tracer's
// heartbeat (vigil_pacer) so that the tracer stops processes only while a
// pacer lives. It owns its handles (clones of the maps, its own read-only
// view of the ring's positions), so it needs nothing from the Monitor after
// it started, and ends when the Monitor closes.
type pacer struct {
	paused   *ebpf.Map
	cgroups  *ebpf.Map
	beat     *ebpf.Map
	pos      []byte // the ring's consumer and producer pages, read-only
	ringSize uint64
	halfTau  uint64 // ns: the budget debt (tat - now) at which a cgroup may go on
	root     string // cgroup v2 mount
	resumed  atomic.Uint64
	// recent are the processes continued in the last stopGrace or so,
	// looked at again once it has passed (recheck).
	recent []continued
	stop   chan struct{} // closed to end run (Close, or a test)
	done   chan struct{} // closed when run has returned
}

const (
	// pacerTick is how often the pacer looks at the stopped processes.
	pacerTick = 500 * time.Microsecond
	// pacerBeat is how often it tells the tracer it lives; the tracer
	// takes a pacer silent for 5 s for gone (syscalls.bpf.c: PACER_STALE).
	pacerBeat = 100 * time.Millisecond
	// stopGrace is how long a program that read the heartbeat before it
	// was cleared may still stop a process: microseconds, with margin.
	stopGrace = 10 * time.Millisecond
)

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
	beat, err := m.objs.VigilPacer.Clone()
	if err != nil {
		paused.Close()
		cgroups.Close()
		return fmt.Errorf("block class: pacer map: %w", err)
	}
	page := os.Getpagesize()
	pos, err := unix.Mmap(m.objs.VigilEvents.FD(), 0, 2*page, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		paused.Close()
		cgroups.Close()
		beat.Close()
		return fmt.Errorf("block class: map ring positions: %w", err)
	}
	p := &pacer{paused: paused, cgroups: cgroups, beat: beat, pos: pos, ringSize: uint64(m.objs.VigilEvents.MaxEntries()),
		halfTau: tau / 2, root: root, stop: make(chan struct{}), done: make(chan struct{})}
	if _, loaded := pacers.LoadOrStore(m, p); loaded {
		p.close()
		return nil
	}
	// The first record over budget may come before run's first beat.
	if err := p.heartbeat(monotonicNow()); err != nil {
		pacers.Delete(m)
		p.close()
		return fmt.Errorf("block class: %w", err)
	}
	go p.run(m.closing)
	return nil
}

// heartbeat tells the tracer that a pacer lives (now) or that none does (0).
func (p *pacer) heartbeat(now uint64) error {
	if err := p.beat.Update(uint32(0), now, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("pacer heartbeat: %w", err)
	}
	return nil
}

// endPacer stops this Monitor's pacer, if it has one, and waits until it
// has returned: the tracer stops no process after that (its heartbeat is
// cleared, see releaseStopped).
func (m *Monitor) endPacer() {
	v, ok := pacers.Load(m)
	if !ok {
		return
	}
	p := v.(*pacer)
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	pacers.Delete(m)
}

// releaseStopped ends the block class's stops for the tracer whose maps
// these are: it clears the pacer's heartbeat, so that the tracer stops no
// more processes, waits for programs that read it before, and continues
// every process the block class stopped (those still in the cgroup they
// were stopped in). It returns how many it continued.
func releaseStopped(beat, paused *ebpf.Map) (int, error) {
	var was uint64
	if err := beat.Lookup(uint32(0), &was); err != nil {
		return 0, fmt.Errorf("read pacer heartbeat: %w", err)
	}
	if err := beat.Update(uint32(0), uint64(0), ebpf.UpdateAny); err != nil {
		return 0, fmt.Errorf("clear pacer heartbeat: %w", err)
	}
	if was != 0 {
		time.Sleep(stopGrace)
	}
	root, err := CgroupRoot()
	if err != nil {
		return 0, fmt.Errorf("continue stopped processes: %w", err)
	}
	n := 0
	// A program preempted between its read of the heartbeat and its stop
	// (a loaded node, a preemptible kernel) can stop a process after a
	// sweep: sweep until one finds nothing, a few times at most.
	for sweep := 0; sweep < stopSweeps; sweep++ {
		found := stoppedProcs(paused)
		if len(found) == 0 {
			break
		}
		for _, e := range found {
			paused.Delete(e.tgid)
			if inCgroup(root, int(e.tgid), e.cgid) && unix.Kill(int(e.tgid), unix.SIGCONT) == nil {
				n++
			}
		}
		time.Sleep(stopGrace)
	}
	return n, nil
}

// stopSweeps bounds the sweeps of releaseStopped.
const stopSweeps = 5

// stopped is an entry of the paused map: a process and its cgroup.
type stopped struct {
	tgid uint32
	cgid uint64
}

// maxStopped bounds what one pass reads of the paused map (its size).
const maxStopped = 16384

func stoppedProcs(paused *ebpf.Map) []stopped {
	var out []stopped
	var e stopped
	it := paused.Iterate()
	for len(out) < maxStopped && it.Next(&e.tgid, &e.cgid) {
		out = append(out, e)
	}
	return out
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
	p.beat.Close()
}

// run continues stopped processes every pacerTick and beats every
// pacerBeat until the Monitor closes (which then clears the heartbeat and
// continues what is left stopped: Close) or stop is closed.
func (p *pacer) run(closing <-chan struct{}) {
	defer close(p.done)
	defer p.close()
	t := time.NewTicker(pacerTick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-closing:
			return
		case <-p.stop:
			return
		case <-t.C:
		}
		if time.Since(last) >= pacerBeat {
			last = time.Now()
			p.heartbeat(monotonicNow())
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

// continued is a process the pacer continued, and when.
type continued struct {
	stopped
	at time.Time
}

// recheck continues again each process continued more than stopGrace ago
// that is stopped with no note in the paused map. The tracer notes a
// process before it sends the stop, and the pacer removes the note before
// its SIGCONT; a program that noted the process before the removal and
// whose stop (sent from the kernel's deferred work) lands after the
// SIGCONT would leave it stopped with nobody to continue it.
func (p *pacer) recheck(now time.Time) {
	keep := p.recent[:0]
	for _, c := range p.recent {
		if now.Sub(c.at) < stopGrace {
			keep = append(keep, c)
			continue
		}
		var cgid uint64
		if procStopped(int(c.tgid)) && p.paused.Lookup(c.tgid, &cgid) != nil && inCgroup(p.root, int(c.tgid), c.cgid) {
			if unix.Kill(int(c.tgid), unix.SIGCONT) == nil {
				p.resumed.Add(1)
			}
		}
	}
	p.recent = keep
}

// procStopped says whether a process is in a job-control stop (state T in
// /proc/PID/stat).
func procStopped(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold anything
	return i >= 0 && i+2 < len(b) && b[i+2] == 'T'
}

// pass continues each stopped process whose cgroup may go on.
func (p *pacer) pass() {
	if len(p.recent) > 0 {
		p.recheck(time.Now())
	}
	stopped := stoppedProcs(p.paused)
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
			if len(p.recent) < maxStopped {
				p.recent = append(p.recent, continued{e, time.Now()})
			}
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
