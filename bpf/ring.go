package bpf

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// ring is a batch reader of a BPF ring buffer (kernel/bpf/ringbuf.c).
//
// The generic reader stores the consumer position after every record and
// loads the producer position before every record; each of those is a cache
// line the producing CPU touches on every reserve, so a reader running
// beside the producer makes every traced syscall pay a cross-core cache
// miss. This reader loads the producer position once per batch, decodes
// records in place (no copy), and publishes the consumer position once per
// batch (or every ringRelease bytes, so a long batch frees space early).
//
// The reader never blocks its thread in a system call: it waits for the
// ring (the kernel's wakeup) and for its timer in Go's network poller, as
// a socket read does. A thread blocked in poll(2) every poll interval
// keeps the runtime's monitor thread waking every 20 µs to take its
// processor back, which cost more CPU than reading the records.
type ring struct {
	fd    int      // the map, non-blocking (mmap and the poller)
	file  *os.File // fd in the poller
	rawFd syscall.RawConn
	tfd   int      // timerfd: a busy reader's next look, with µs precision
	timer *os.File // tfd in the poller
	rawTm syscall.RawConn
	// readTimer reads the timer's expiry count (see sleep); made once, not
	// per look.
	readTimer func(fd uintptr) bool
	timerErr  error
	// armed, when set (tests), runs between arming the timer and the wait.
	armed func()
	cons  []byte // consumer page (read-write)
	prod  []byte // producer page followed by the data, mapped twice
	data  []byte
	mask  uint64
	consP *uint64
	prodP *uint64
	// stopped is set by interrupt and cleared by resetDeadlines: a wait
	// that arms its deadline after an interrupt would otherwise overwrite
	// the interrupt's past deadline and park for its whole timeout.
	stopped atomic.Bool
}

const (
	ringBusy    = 1 << 31 // BPF_RINGBUF_BUSY_BIT
	ringDiscard = 1 << 30 // BPF_RINGBUF_DISCARD_BIT
	ringHdr     = 8       // BPF_RINGBUF_HDR_SZ
	ringRelease = 256 << 10
)

func newRing(m *ebpf.Map) (*ring, error) {
	size := int(m.MaxEntries())
	page := os.Getpagesize()
	fd, err := unix.Dup(m.FD())
	if err != nil {
		return nil, fmt.Errorf("ring: dup map fd: %w", err)
	}
	r := &ring{fd: fd, tfd: -1, mask: uint64(size - 1)}
	if r.cons, err = unix.Mmap(fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		r.close()
		return nil, fmt.Errorf("ring: mmap consumer page: %w", err)
	}
	if r.prod, err = unix.Mmap(fd, int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		r.close()
		return nil, fmt.Errorf("ring: mmap producer pages: %w", err)
	}
	r.data = r.prod[page:]
	r.consP = (*uint64)(unsafe.Pointer(&r.cons[0]))
	r.prodP = (*uint64)(unsafe.Pointer(&r.prod[0]))
	// The ring's poll says readable while records wait (kernel/bpf/ringbuf.c
	// ringbuf_map_poll_kern); the kernel's wakeups reach Go's poller.
	if err := unix.SetNonblock(fd, true); err != nil {
		r.close()
		return nil, fmt.Errorf("ring: non-blocking map fd: %w", err)
	}
	r.file = os.NewFile(uintptr(fd), "vigil_events")
	if r.rawFd, err = r.file.SyscallConn(); err != nil {
		r.close()
		return nil, fmt.Errorf("ring: %w", err)
	}
	if r.tfd, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
		r.close()
		return nil, fmt.Errorf("ring: timerfd: %w", err)
	}
	r.timer = os.NewFile(uintptr(r.tfd), "vigil_poll_timer")
	if r.rawTm, err = r.timer.SyscallConn(); err != nil {
		r.close()
		return nil, fmt.Errorf("ring: %w", err)
	}
	r.readTimer = r.readTimerFD
	return r, nil
}

// drain hands every committed record to fn, in ring order, and returns how
// many it read. A record still being written ends the batch.
func (r *ring) drain(fn func([]byte)) int {
	cons := atomic.LoadUint64(r.consP)
	prod := atomic.LoadUint64(r.prodP)
	released := cons
	n := 0
	for cons < prod {
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[cons&r.mask])))
		if hdr&ringBusy != 0 {
			break
		}
		l := uint64(hdr &^ (ringBusy | ringDiscard))
		start := (cons + ringHdr) & r.mask
		if hdr&ringDiscard == 0 {
			fn(r.data[start : start+l])
			n++
		}
		cons += ringHdr + (l+7)&^7
		if cons-released >= ringRelease {
			atomic.StoreUint64(r.consP, cons)
			released = cons
		}
	}
	if cons != released {
		atomic.StoreUint64(r.consP, cons)
	}
	return n
}

// pending is the number of bytes waiting.
func (r *ring) pending() int {
	return int(atomic.LoadUint64(r.prodP) - atomic.LoadUint64(r.consP))
}

// sleep waits d on the timer alone: a busy reader does not chase the
// producer record by record (reading lines the producer is still writing
// costs the traced task a cache transfer per record), it comes back after d
// and takes the whole batch. The goroutine parks in the poller meanwhile.
//
// A look makes its system calls raw (timerfd_settime and the timer's
// non-blocking read): a system call through the runtime's entersyscall
// wakes the runtime's monitor thread when the process was idle, and the
// monitor then checks every 20 µs while any goroutine runs: at a few
// hundred looks a second that cost more CPU than the looks themselves.
func (r *ring) sleep(d time.Duration) error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(r.tfd, 0, &spec, nil); err != nil { // raw
		return fmt.Errorf("arm poll timer: %w", err)
	}
	r.timerErr = nil
	if r.armed != nil {
		r.armed()
	}
	if err := r.rawTm.Read(r.readTimer); err != nil {
		return fmt.Errorf("poll timer: %w", err)
	}
	if r.timerErr != nil {
		return fmt.Errorf("poll timer: %w", r.timerErr)
	}
	return nil
}

// readTimerFD reads the timer's expiry count, which clears the expiry; it
// returns false (park in the poller) while the timer has not expired.
//
// The first call must read, even though the timer was armed a moment
// ago: the poller forgets a readiness it saw before the wait began (the
// raw read's prepare resets it), so an expiry that came between arming
// and the wait (the reader descheduled for longer than the interval, on a
// loaded node) would never be seen again, and the one-shot timer would
// not fire twice: the reader parked for good and the agent stopped
// reading its ring.
func (r *ring) readTimerFD(fd uintptr) bool {
	var b [8]byte
	_, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	switch errno {
	case 0:
		return true
	case unix.EAGAIN:
		return false
	case unix.EINTR:
		return r.readTimerFD(fd)
	}
	r.timerErr = errno
	return true
}

// wait parks until records wait in the ring (the kernel woke the reader,
// or they were there already) or timeout passes.
func (r *ring) wait(timeout time.Duration) error {
	if err := r.file.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if r.stopped.Load() {
		return nil // interrupted before the deadline was armed
	}
	err := r.rawFd.Read(func(uintptr) bool { return r.pending() > 0 })
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}

// waitWake parks until the kernel wakes the reader or timeout passes,
// whatever already waits in the ring: the records of a realtime cgroup
// force a wakeup, the others wait for the reader's next look.
func (r *ring) waitWake(timeout time.Duration) error {
	if err := r.file.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if r.stopped.Load() {
		return nil // interrupted before the deadline was armed
	}
	parked := false
	err := r.rawFd.Read(func(uintptr) bool {
		// The first call parks; the next comes after a wakeup.
		if parked {
			return true
		}
		parked = true
		return false
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}

// resetDeadlines clears what an interrupt of an earlier run left.
func (r *ring) resetDeadlines() {
	r.stopped.Store(false)
	if r.file != nil {
		r.file.SetReadDeadline(time.Time{})
	}
	if r.timer != nil {
		r.timer.SetReadDeadline(time.Time{})
	}
}

// interrupt wakes a reader parked in wait, waitWake or sleep (Close, or
// the end of the reader's context), and one about to park: the flag is
// set before the deadlines, and a wait checks it after arming its own, so
// either the wait sees the flag or the past deadline comes after its own.
func (r *ring) interrupt() {
	r.stopped.Store(true)
	past := time.Unix(1, 0)
	if r.file != nil {
		r.file.SetReadDeadline(past)
	}
	if r.timer != nil {
		r.timer.SetReadDeadline(past)
	}
}

func (r *ring) close() {
	if r.timer != nil {
		r.timer.Close()
		r.timer = nil
	} else if r.tfd >= 0 {
		unix.Close(r.tfd)
	}
	r.tfd = -1
	if r.prod != nil {
		unix.Munmap(r.prod)
		r.prod = nil
	}
	if r.cons != nil {
		unix.Munmap(r.cons)
		r.cons = nil
	}
	if r.file != nil {
		r.file.Close()
		r.file = nil
	} else if r.fd >= 0 {
		unix.Close(r.fd)
	}
	r.fd = -1
}

// wakeGate is the tracer's last_wake global (syscalls.bpf.c wake_flag),
// mapped from the .bss map of the sys_exit program that runs, so that the
// reader can hold back the kernel's wakeups while it looks on its own
// timer: a busy reader sleeps on its timer, not on the ring, so each
// forced wakeup of a normal record (every WakeInterval while records flow)
// only woke the Go runtime's poller thread for nothing (an epoll return
// and a futex or two on this kind of VM: more than the look it did not
// start). After a look that found records the reader stores the time: the
// kernel then forces no wakeup for WakeInterval, longer than a look. After
// a look that found none it stores 0, so the first record wakes the
// reader again: the reader parks on the ring only after an empty look, so
// a record whose program read the older value before the store (a window
// of one program's run) is taken by that look. Realtime records always
// wake the reader. A nil gate does nothing: the kernel's wakeups go on
// as before.
type wakeGate struct {
	mem  []byte
	last *uint64
	held bool // last store was a time (wakeups held back)
}

// newWakeGate maps last_wake of the program that prog's link runs.
func newWakeGate(l interface{ Info() (*link.Info, error) }, off uint32) (*wakeGate, error) {
	li, err := l.Info()
	if err != nil {
		return nil, err
	}
	prog, err := ebpf.NewProgramFromID(li.Program)
	if err != nil {
		return nil, fmt.Errorf("program of link: %w", err)
	}
	defer prog.Close()
	pi, err := prog.Info()
	if err != nil {
		return nil, err
	}
	ids, ok := pi.MapIDs()
	if !ok {
		return nil, errors.New("program info has no map ids")
	}
	for _, id := range ids {
		mp, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue
		}
		mi, err := mp.Info()
		if err != nil || !strings.HasSuffix(mi.Name, ".bss") {
			mp.Close()
			continue
		}
		size := int(mp.ValueSize())
		if int(off)+8 > size {
			mp.Close()
			return nil, fmt.Errorf(".bss map %s: %d bytes, last_wake at %d", mi.Name, size, off)
		}
		page := os.Getpagesize()
		mem, err := unix.Mmap(mp.FD(), 0, (size+page-1)/page*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		mp.Close() // the mapping keeps the map
		if err != nil {
			return nil, fmt.Errorf("mmap .bss: %w", err)
		}
		return &wakeGate{mem: mem, last: (*uint64)(unsafe.Pointer(&mem[off]))}, nil
	}
	return nil, errors.New("no .bss map")
}

// gateSlack is how far before the look its stored time is (see looked):
// longer than a program's run, interrupts included; a look comes sooner
// than WakeInterval less this after the one before (MaxPollInterval 16 ms
// against 20 ms by default).
const gateSlack = time.Millisecond

// looked tells the kernel whether the look found records (see wakeGate).
func (g *wakeGate) looked(found bool) {
	if g == nil {
		return
	}
	switch {
	case found:
		// A little in the past: a program that read its clock before this
		// store and compares after it would see a negative (wrapped, so
		// huge) time since the last wakeup and force one.
		atomic.StoreUint64(g.last, Monotonic()-uint64(gateSlack)) // vDSO: no system call
		g.held = true
	case g.held:
		atomic.StoreUint64(g.last, 0)
		g.held = false
	}
}

// open lets the kernel wake the reader for the next record.
func (g *wakeGate) open() {
	if g != nil && g.held {
		atomic.StoreUint64(g.last, 0)
		g.held = false
	}
}

func (g *wakeGate) close() {
	if g != nil && g.mem != nil {
		unix.Munmap(g.mem)
		g.mem, g.last = nil, nil
	}
}
