package seccomp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Notification is one answered (or failed) notified syscall, reported to
// the Server's callback: what audit records.
type Notification struct {
	Time      time.Time
	Container string // container id, from runc's state
	PID       uint32 // caller, in the Server's pid namespace
	Nr        int32  // syscall number
	Arch      uint32 // AUDIT_ARCH_* of the caller
	Args      [6]uint64
	Decision  Decision
	// Dynamic is set when the answer came from a deny set at run time
	// (Server.Deny), not from the container's static Policy.
	Dynamic bool
	// Err is set when the answer was not delivered: the caller died or was
	// interrupted (ENOENT), or the kernel refused it.
	Err error
}

// Server is vigil's seccomp notify listener. runc connects to its socket
// at every container create and every exec and sends the container's state
// (specs.ContainerProcessState JSON) with the notify fd; the Server answers
// every notification on that fd from the container's Policy until the fd
// hangs up (all processes of the filter gone).
//
// Answers never wait for the report callback: reports go through a bounded
// queue drained by one goroutine, and are dropped (and counted) when it is
// full.
type Server struct {
	path     string
	ln       *net.UnixListener
	report   func(Notification)
	fallback *Policy

	mu     sync.Mutex
	files  map[*os.File]string // open notify fds → container id
	closed bool
	keeper *net.UnixConn // see UseKeeper; nil without a keeper
	kmu    sync.Mutex    // serializes the writes to keeper (never held with mu)

	pmu      sync.RWMutex
	policies map[string]*Policy
	kept     map[string]bool // policies the keeper gave back (UseKeeper)

	// denied is the dynamic deny set (container id → syscall nr → errno),
	// replaced whole on every change so that answers read it without a lock.
	denied atomic.Pointer[map[string]map[int32]syscall.Errno]
	dmu    sync.Mutex // serializes the writers of denied

	reports    chan Notification
	stopReport chan struct{}
	reportDone chan struct{}
	dropped    atomic.Uint64

	wg        sync.WaitGroup
	decisions atomic.Uint64
	accepted  atomic.Uint64
}

// reportQueue is how many reports may wait for the report callback before
// new ones are dropped.
const reportQueue = 4096

// NewServer listens on path (a unix socket, mode 0600; a stale socket is
// replaced). fallback answers containers with no policy set (e.g. after an
// agent restart, until the policy is set again); report is called for every
// decision, after the answer, on one goroutine of its own: a slow report
// delays no answer, but reports that find the queue full are dropped (see
// ReportsDropped).
func NewServer(path string, fallback *Policy, report func(Notification)) (*Server, error) {
	return newServer(path, fallback, report, reportQueue)
}

func newServer(path string, fallback *Policy, report func(Notification), queue int) (*Server, error) {
	if fallback == nil {
		return nil, errors.New("seccomp server: nil fallback policy")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("seccomp server: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("seccomp server: remove stale socket: %w", err)
	}
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("seccomp server: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("seccomp server: %w", err)
	}
	if report == nil {
		report = func(Notification) {}
	}
	s := &Server{path: path, ln: ln, report: report, fallback: fallback,
		policies: map[string]*Policy{}, kept: map[string]bool{}, files: map[*os.File]string{},
		reports: make(chan Notification, queue), stopReport: make(chan struct{}), reportDone: make(chan struct{})}
	go s.reportLoop()
	return s, nil
}

// reportLoop hands the queued reports to the callback until Close, then
// delivers what is left.
func (s *Server) reportLoop() {
	defer close(s.reportDone)
	for {
		select {
		case n := <-s.reports:
			s.report(n)
		case <-s.stopReport:
			for {
				select {
				case n := <-s.reports:
					s.report(n)
				default:
					return
				}
			}
		}
	}
}

// enqueue queues n for the report callback, or drops it when the queue is
// full. It never blocks.
func (s *Server) enqueue(n Notification) {
	select {
	case s.reports <- n:
	default:
		s.dropped.Add(1)
	}
}

// ReportsDropped returns how many reports were dropped because the report
// callback fell behind by a full queue.
func (s *Server) ReportsDropped() uint64 { return s.dropped.Load() }

// Path is the listener socket (the profiles' listenerPath).
func (s *Server) Path() string { return s.path }

// SetPolicy sets the answers for container id (before it is created).
func (s *Server) SetPolicy(id string, p *Policy) {
	s.pmu.Lock()
	s.policies[id] = p
	delete(s.kept, id)
	s.pmu.Unlock()
}

// RestorePolicy sets the answers for container id, found running when the
// agent started, unless the keeper gave back the table the container was
// created with (UseKeeper): that one stays, since p is rebuilt from what
// the runtime reports now, which may lack the pod's own profile.
func (s *Server) RestorePolicy(id string, p *Policy) {
	s.pmu.Lock()
	if !s.kept[id] {
		s.policies[id] = p
	}
	s.pmu.Unlock()
}

// RemovePolicy forgets container id's policy; its dynamic denies stay (see
// Forget).
func (s *Server) RemovePolicy(id string) {
	s.pmu.Lock()
	delete(s.policies, id)
	delete(s.kept, id)
	s.pmu.Unlock()
}

// Forget drops everything the Server holds for container id: its policy and
// its dynamic denies.
func (s *Server) Forget(id string) {
	s.RemovePolicy(id)
	s.Allow(id)
}

func (s *Server) policy(id string) *Policy {
	s.pmu.RLock()
	defer s.pmu.RUnlock()
	if p, ok := s.policies[id]; ok {
		return p
	}
	return s.fallback
}

// Deny answers the notified syscalls nrs (numbers of the native ABI) of
// container id with errno from now on, on every notify fd of the container,
// whatever its Policy says. It adds to the syscalls already denied; a
// syscall denied again takes the new errno. Errno 0 would make the syscall
// return 0 without running; it is taken as EPERM. Only syscalls that the
// container's profile sends to the listener can be denied so.
func (s *Server) Deny(id string, nrs []int32, errno syscall.Errno) {
	if len(nrs) == 0 {
		return
	}
	if errno == 0 {
		errno = syscall.EPERM
	}
	s.dmu.Lock()
	defer s.dmu.Unlock()
	next := s.deniedCopy()
	if next[id] == nil {
		next[id] = map[int32]syscall.Errno{}
	}
	for _, nr := range nrs {
		next[id][nr] = errno
	}
	s.denied.Store(&next)
}

// Allow undoes every dynamic deny of container id: its syscalls are
// answered from its Policy again.
func (s *Server) Allow(id string) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if cur := s.denied.Load(); cur == nil || (*cur)[id] == nil {
		return
	}
	next := s.deniedCopy()
	delete(next, id)
	s.denied.Store(&next)
}

// Denied returns a copy of the dynamic denies: container id → syscall nr →
// errno.
func (s *Server) Denied() map[string]map[int32]syscall.Errno {
	return s.deniedCopy()
}

func (s *Server) deniedCopy() map[string]map[int32]syscall.Errno {
	out := map[string]map[int32]syscall.Errno{}
	cur := s.denied.Load()
	if cur == nil {
		return out
	}
	for id, nrs := range *cur {
		m := make(map[int32]syscall.Errno, len(nrs))
		for nr, e := range nrs {
			m[nr] = e
		}
		out[id] = m
	}
	return out
}

// decide answers syscall nr of ABI arch for container id: a syscall of
// another ABI is denied with ENOSYS; then a dynamic deny, then the
// container's Policy (or the fallback). dynamic tells which.
func (s *Server) decide(id string, nr int32, arch uint32) (d Decision, dynamic bool) {
	if arch != nativeAuditArch || foreignNr(nr) {
		// Numbers of another ABI (e.g. i386 on x86_64, or x32, which comes
		// with the native AUDIT_ARCH and __X32_SYSCALL_BIT set) do not index
		// our tables: deny, whatever the policy or a dynamic deny says.
		return Decision{Errno: unix.ENOSYS}, false
	}
	if cur := s.denied.Load(); cur != nil {
		if e, ok := (*cur)[id][nr]; ok {
			return Decision{Errno: e}, true
		}
	}
	return s.policy(id).Decide(nr), false
}

// Stats returns the number of notify fds served now, accepted in total, and
// decisions made.
func (s *Server) Stats() (open int, accepted, decisions uint64) {
	s.mu.Lock()
	open = len(s.files)
	s.mu.Unlock()
	return open, s.accepted.Load(), s.decisions.Load()
}

// Serve accepts runc's connections until Close. It returns nil after Close.
func (s *Server) Serve() error {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			return fmt.Errorf("seccomp server: accept: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.handle(c); err != nil {
				// A bad peer must not stop the server; report it as a failed decision.
				s.enqueue(Notification{Time: time.Now(), Err: err})
			}
		}()
	}
}

// handle reads one runc message (state JSON + fds), keeps the seccomp fd and
// starts answering it.
func (s *Server) handle(c *net.UnixConn) error {
	defer c.Close()
	state, fds, err := readState(c)
	if err != nil {
		return err
	}
	idx := slices.Index(state.Fds, specs.SeccompFdName)
	var keep int = -1
	for i, fd := range fds {
		if i == idx {
			keep = fd
		} else {
			unix.Close(fd)
		}
	}
	if keep < 0 {
		return fmt.Errorf("seccomp server: container %s: no %q among %d fds (%v)", state.State.ID, specs.SeccompFdName, len(fds), state.Fds)
	}
	return s.serveNew(keep, state.State.ID, true)
}

// serveNew starts answering notify fd of container id; with deposit, a
// duplicate goes to the keeper first (when there is one).
func (s *Server) serveNew(fd int, id string, deposit bool) error {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return fmt.Errorf("seccomp server: %w", err)
	}
	if deposit {
		s.deposit(fd, id)
	}
	f := os.NewFile(uintptr(fd), "seccomp-notify:"+id)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		f.Close()
		return nil
	}
	s.files[f] = id
	s.mu.Unlock()
	s.accepted.Add(1)
	s.wg.Add(1)
	go s.serveFd(f, id)
	return nil
}

// readState reads the whole message (runc closes after sending) and the
// fds passed with it.
func readState(c *net.UnixConn) (*specs.ContainerProcessState, []int, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var data []byte
	var fds []int
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*8))
	for {
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		data = append(data, buf[:n]...)
		if oobn > 0 {
			got, perr := parseRights(oob[:oobn])
			fds = append(fds, got...)
			if perr != nil {
				closeAll(fds)
				return nil, nil, perr
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			break
		}
		if err != nil {
			closeAll(fds)
			return nil, nil, fmt.Errorf("seccomp server: read state: %w", err)
		}
		if len(data) > 4<<20 {
			closeAll(fds)
			return nil, nil, errors.New("seccomp server: state message over 4 MiB")
		}
	}
	var st specs.ContainerProcessState
	if err := json.Unmarshal(data, &st); err != nil {
		closeAll(fds)
		return nil, nil, fmt.Errorf("seccomp server: decode state: %w", err)
	}
	return &st, fds, nil
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("seccomp server: control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_RIGHTS && len(m.Data)%4 != 0 {
			// ParseUnixRights would read past the data (and panic).
			return fds, fmt.Errorf("seccomp server: control message: SCM_RIGHTS of %d bytes, not whole fds", len(m.Data))
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// serveFd answers notifications on f until the filter has no more users
// (POLLHUP), a fatal receive error, or Close. The fd is waited on through
// Go's poller, so an idle container costs no thread.
func (s *Server) serveFd(f *os.File, id string) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.files, f)
		s.mu.Unlock()
		f.Close()
	}()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	for {
		var done bool
		var recvErr error
		var n notif
		err := rc.Read(func(fd uintptr) bool {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(pfd, 0); err != nil && err != unix.EINTR {
				recvErr, done = err, true
				return true
			}
			if pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
				done = true
				return true
			}
			if pfd[0].Revents&unix.POLLIN == 0 {
				return false // wait for the poller
			}
			n = notif{}
			recvErr = notifRecv(int(fd), &n)
			return true
		})
		if err != nil || done {
			return // closed by Close, or hung up
		}
		if recvErr != nil {
			if recvErr == unix.ENOENT || recvErr == unix.EINTR {
				continue // the caller went away before we received it
			}
			s.enqueue(Notification{Time: time.Now(), Container: id, Err: fmt.Errorf("seccomp notify receive: %w", recvErr)})
			return
		}
		s.answer(rc, id, &n)
	}
}

// answer decides and sends the answer to n, then queues its report.
func (s *Server) answer(rc syscall.RawConn, id string, n *notif) {
	d, dynamic := s.decide(id, n.Data.Nr, n.Data.Arch)
	note := Notification{Time: time.Now(), Container: id, PID: n.PID, Nr: n.Data.Nr,
		Arch: n.Data.Arch, Args: n.Data.Args, Decision: d, Dynamic: dynamic}
	resp := response(n.ID, d)
	err := rc.Control(func(fd uintptr) {
		// The caller may have died or been interrupted since we received:
		// check before acting (the answer itself is the action here).
		if err := notifIDValid(int(fd), n.ID); err != nil {
			note.Err = fmt.Errorf("seccomp notify id valid: %w", err)
			return
		}
		if err := notifSend(int(fd), &resp); err != nil {
			note.Err = fmt.Errorf("seccomp notify send: %w", err)
		}
	})
	if err != nil && note.Err == nil {
		note.Err = err
	}
	s.decisions.Add(1)
	s.enqueue(note)
}

// Close stops accepting, closes every notify fd (their notified syscalls
// then fail with ENOSYS), waits for the loops to end, and delivers the
// queued reports (it waits for the report callback).
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.ln.Close()
	if s.keeper != nil {
		s.keeper.Close() // the keeper keeps its duplicates for the next agent
	}
	for f := range s.files {
		f.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	close(s.stopReport)
	<-s.reportDone
	return err
}
