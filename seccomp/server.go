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
	// Err is set when the answer was not delivered: the caller died or was
	// interrupted (ENOENT), or the kernel refused it.
	Err error
}

// Server is vigil's seccomp notify listener. runc connects to its socket
// at every container create and every exec and sends the container's state
// (specs.ContainerProcessState JSON) with the notify fd; the Server answers
// every notification on that fd from the container's Policy until the fd
// hangs up (all processes of the filter gone).
type Server struct {
	path     string
	ln       *net.UnixListener
	report   func(Notification)
	fallback *Policy

	mu       sync.Mutex
	policies map[string]*Policy
	files    map[*os.File]string // open notify fds → container id
	closed   bool
	keeper   *net.UnixConn // see UseKeeper; nil without a keeper

	wg        sync.WaitGroup
	decisions atomic.Uint64
	accepted  atomic.Uint64
}

// NewServer listens on path (a unix socket, mode 0600; a stale socket is
// replaced). fallback answers containers with no policy set (e.g. after an
// agent restart, until the policy is set again); report is called for every
// decision and must not block for long.
func NewServer(path string, fallback *Policy, report func(Notification)) (*Server, error) {
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
	return &Server{path: path, ln: ln, report: report, fallback: fallback,
		policies: map[string]*Policy{}, files: map[*os.File]string{}}, nil
}

// Path is the listener socket (the profiles' listenerPath).
func (s *Server) Path() string { return s.path }

// SetPolicy sets the answers for container id (before it is created).
func (s *Server) SetPolicy(id string, p *Policy) {
	s.mu.Lock()
	s.policies[id] = p
	s.mu.Unlock()
}

// RemovePolicy forgets container id's policy.
func (s *Server) RemovePolicy(id string) {
	s.mu.Lock()
	delete(s.policies, id)
	s.mu.Unlock()
}

func (s *Server) policy(id string) *Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.policies[id]; ok {
		return p
	}
	return s.fallback
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
				s.report(Notification{Time: time.Now(), Err: err})
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
			s.report(Notification{Time: time.Now(), Container: id, Err: fmt.Errorf("seccomp notify receive: %w", recvErr)})
			return
		}
		s.answer(rc, id, &n)
	}
}

func (s *Server) answer(rc syscall.RawConn, id string, n *notif) {
	d := s.policy(id).Decide(n.Data.Nr)
	note := Notification{Time: time.Now(), Container: id, PID: n.PID, Nr: n.Data.Nr,
		Arch: n.Data.Arch, Args: n.Data.Args, Decision: d}
	if n.Data.Arch != nativeAuditArch {
		// Numbers of another ABI (e.g. i386 on x86_64) do not index our
		// tables: deny, as the profiles' default does.
		d = Decision{Errno: unix.ENOSYS}
		note.Decision = d
	}
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
	s.report(note)
}

// Close stops accepting, closes every notify fd (their notified syscalls
// then fail with ENOSYS), and waits for the loops to end.
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
	return err
}
