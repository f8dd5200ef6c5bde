package bpf

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
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
type ring struct {
	fd    int
	epfd  int
	tfd   int    // timerfd: a busy reader's next look, with µs precision
	cons  []byte // consumer page (read-write)
	prod  []byte // producer page followed by the data, mapped twice
	data  []byte
	mask  uint64
	consP *uint64
	prodP *uint64
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
	r := &ring{fd: fd, epfd: -1, tfd: -1, mask: uint64(size - 1)}
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
	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		r.close()
		return nil, fmt.Errorf("ring: epoll: %w", err)
	}
	// The ring is level-triggered: epoll returns at once while records wait.
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		r.close()
		return nil, fmt.Errorf("ring: epoll add: %w", err)
	}
	if r.tfd, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
		r.close()
		return nil, fmt.Errorf("ring: timerfd: %w", err)
	}
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
// and takes the whole batch.
func (r *ring) sleep(d time.Duration) error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(r.tfd, 0, &spec, nil); err != nil {
		return fmt.Errorf("arm poll timer: %w", err)
	}
	fds := []unix.PollFd{{Fd: int32(r.tfd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		var b [8]byte
		unix.Read(r.tfd, b[:]) // clear the expiry
		return err
	}
}

// wait blocks until records wait in the ring (the kernel woke the reader,
// or they were there already: the ring is level-triggered) or timeoutMs
// passes.
func (r *ring) wait(timeoutMs int) error {
	var evs [1]unix.EpollEvent
	for {
		_, err := unix.EpollWait(r.epfd, evs[:], timeoutMs)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err
	}
}

func (r *ring) close() {
	if r.tfd >= 0 {
		unix.Close(r.tfd)
		r.tfd = -1
	}
	if r.epfd >= 0 {
		unix.Close(r.epfd)
		r.epfd = -1
	}
	if r.prod != nil {
		unix.Munmap(r.prod)
		r.prod = nil
	}
	if r.cons != nil {
		unix.Munmap(r.cons)
		r.cons = nil
	}
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}
