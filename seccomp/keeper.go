package seccomp

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The keeper holds duplicates of the notify fds so that they outlive the
// agent. When the agent dies, the kernel would otherwise orphan each
// container's notifier and fail its notified syscalls with ENOSYS for the
// rest of the container's life; with the keeper holding the fds they wait
// (killably) until the next agent takes the fds back and answers them.
//
// Protocol, on a SOCK_SEQPACKET socket (one message per record):
//
//	{"op":"put","id":CONTAINER,"policy":P} + the fd   agent → keeper, no answer
//	{"op":"get"}                                      agent → keeper
//	{"op":"fd","id":CONTAINER,"policy":P} + the fd    keeper → agent, one per held fd
//	{"op":"end"}                                      keeper → agent
//
// P, optional, is the container's answer table as the agent built it when
// the container was created (keptPolicy): the next agent answers with it,
// not with a table rebuilt from what the runtime reports of the running
// container, which no longer holds the pod's own profile as it came.
// Messages stay under keeperMsgMax: a policy that would not fit is left
// out (the next agent rebuilds it), so a keeper of an older version reads
// every message.
type keeperMsg struct {
	Op     string      `json:"op"`
	ID     string      `json:"id,omitempty"`
	Policy *keptPolicy `json:"policy,omitempty"`
}

// keeperMsgMax is the largest keeper message: the read buffer of every
// keeper version.
const keeperMsgMax = 4096

// keptPolicy is a Policy in the keeper's messages: D holds [syscall
// number, answer] pairs and Def the default answer, an answer being -1 for
// allow and the errno otherwise.
type keptPolicy struct {
	D   [][2]int32 `json:"d"`
	Def int32      `json:"def"`
}

func answerOf(d Decision) int32 {
	if d.Allow {
		return -1
	}
	return int32(d.Errno)
}

func decisionOf(a int32) Decision {
	if a < 0 {
		return Decision{Allow: true}
	}
	return Decision{Errno: syscall.Errno(a)}
}

func keep(p *Policy) *keptPolicy {
	if p == nil {
		return nil
	}
	k := &keptPolicy{D: make([][2]int32, 0, len(p.Decisions)), Def: answerOf(p.Default)}
	for _, nr := range slices.Sorted(maps.Keys(p.Decisions)) {
		if d := p.Decisions[nr]; d != p.Default { // Decide answers the rest with the default
			k.D = append(k.D, [2]int32{nr, answerOf(d)})
		}
	}
	return k
}

func (k *keptPolicy) policy() *Policy {
	if k == nil {
		return nil
	}
	p := &Policy{Decisions: make(map[int32]Decision, len(k.D)), Default: decisionOf(k.Def)}
	for _, d := range k.D {
		p.Decisions[d[0]] = decisionOf(d[1])
	}
	return p
}

// marshalKeeperMsg encodes m, without its policy when the message would
// be longer than keeperMsgMax (dropped then says how long it was).
func marshalKeeperMsg(m keeperMsg) (data []byte, dropped int) {
	data, _ = json.Marshal(m)
	if len(data) > keeperMsgMax && m.Policy != nil {
		dropped = len(data)
		m.Policy = nil
		data, _ = json.Marshal(m)
	}
	return data, dropped
}

// KeeperEnv names the environment variable that makes `vigil agent` run as
// the keeper on the socket it names (the agent starts it so).
const KeeperEnv = "VIGIL_NOTIFY_KEEPER"

// RunKeeper serves the keeper socket at path until ctx is done or the
// socket file is removed. It writes its pid to path+".pid".
func RunKeeper(ctx context.Context, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("notify keeper: %w", err)
	}
	os.Remove(path)
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("notify keeper: %w", err)
	}
	defer ln.Close()
	if err := os.WriteFile(path+".pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fmt.Errorf("notify keeper: %w", err)
	}
	k := &keeper{fds: map[int]keptFd{}}
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				ln.Close()
				return
			case <-t.C:
				if _, err := os.Stat(path); err != nil {
					ln.Close() // our socket is gone: nobody can reach us
					return
				}
				k.prune()
			}
		}
	}()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			k.closeAll()
			if ctx.Err() != nil {
				return nil
			}
			if _, serr := os.Stat(path); serr != nil {
				return nil
			}
			return fmt.Errorf("notify keeper: accept: %w", err)
		}
		go k.serve(c)
	}
}

type keeper struct {
	mu  sync.Mutex
	fds map[int]keptFd // held fd → its container
}

type keptFd struct {
	id     string
	policy *keptPolicy
}

func (k *keeper) serve(c *net.UnixConn) {
	defer c.Close()
	buf := make([]byte, keeperMsgMax)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			return
		}
		var fds []int
		if oobn > 0 {
			fds, _ = parseRights(oob[:oobn])
		}
		var m keeperMsg
		if err := json.Unmarshal(buf[:n], &m); err != nil {
			closeAll(fds)
			return
		}
		switch m.Op {
		case "put":
			k.mu.Lock()
			for _, fd := range fds {
				k.fds[fd] = keptFd{id: m.ID, policy: m.Policy}
			}
			k.mu.Unlock()
		case "get":
			closeAll(fds)
			k.prune()
			// Send duplicates, so that the lock is not held across the
			// writes (a slow agent must not stall puts and prunes) and a
			// prune meanwhile cannot close an fd under us.
			held := k.dupAll()
			for i, h := range held {
				data, _ := marshalKeeperMsg(keeperMsg{Op: "fd", ID: h.id, Policy: h.policy})
				if _, _, err := c.WriteMsgUnix(data, unix.UnixRights(h.fd), nil); err != nil {
					for _, rest := range held[i:] {
						unix.Close(rest.fd)
					}
					return
				}
				unix.Close(h.fd)
			}
			data, _ := json.Marshal(keeperMsg{Op: "end"})
			if _, _, err := c.WriteMsgUnix(data, nil, nil); err != nil {
				return
			}
		default:
			closeAll(fds)
		}
	}
}

type heldFd struct {
	fd int
	keptFd
}

// dupAll returns duplicates of the held fds, which the caller closes.
func (k *keeper) dupAll() []heldFd {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]heldFd, 0, len(k.fds))
	for fd, kf := range k.fds {
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			continue // out of fds: this one waits for the next get
		}
		out = append(out, heldFd{fd: dup, keptFd: kf})
	}
	return out
}

// prune closes the fds whose filter has no task left (POLLHUP).
func (k *keeper) prune() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for fd := range k.fds {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(p, 0); err != nil || p[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			unix.Close(fd)
			delete(k.fds, fd)
		}
	}
}

func (k *keeper) closeAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for fd := range k.fds {
		unix.Close(fd)
	}
	k.fds = map[int]keptFd{}
}

// UseKeeper connects the Server to the keeper at path: it takes back and
// serves the fds the keeper holds (a previous agent's containers), with the
// answer tables they were deposited with (see RestorePolicy), and from now
// on deposits every new fd with the keeper, with its container's table. It
// returns how many fds it took back. Call it before Serve.
func (s *Server) UseKeeper(path string) (int, error) {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return 0, fmt.Errorf("notify keeper: %w", err)
	}
	data, _ := json.Marshal(keeperMsg{Op: "get"})
	if _, _, err := c.WriteMsgUnix(data, nil, nil); err != nil {
		c.Close()
		return 0, fmt.Errorf("notify keeper: %w", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, keeperMsgMax)
	oob := make([]byte, unix.CmsgSpace(4))
	taken := 0
	for {
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			c.Close()
			return taken, fmt.Errorf("notify keeper: read: %w", err)
		}
		var fds []int
		if oobn > 0 {
			fds, _ = parseRights(oob[:oobn])
		}
		var m keeperMsg
		if json.Unmarshal(buf[:n], &m) != nil || m.Op == "end" {
			closeAll(fds)
			break
		}
		if p := m.Policy.policy(); p != nil && len(fds) > 0 {
			s.pmu.Lock()
			s.policies[m.ID] = p
			s.kept[m.ID] = true
			s.pmu.Unlock()
		}
		for _, fd := range fds {
			if err := s.serveNew(fd, m.ID, false); err != nil {
				c.Close()
				return taken, err
			}
			taken++
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	s.mu.Lock()
	s.keeper = c
	s.mu.Unlock()
	return taken, nil
}

// depositTimeout bounds one write to the keeper: a keeper that does not
// read for that long is dropped like one that went away. A var for tests.
var depositTimeout = 5 * time.Second

// deposit gives the keeper a duplicate of fd (the kernel dups it into the
// keeper). A keeper that went away, or stopped reading, is dropped: the
// agent works without. The write holds only kmu, never mu, so a stalled
// keeper delays this container's start but no answer nor Close.
func (s *Server) deposit(fd int, id string) {
	s.mu.Lock()
	k := s.keeper
	s.mu.Unlock()
	if k == nil {
		return
	}
	s.pmu.RLock()
	own := s.policies[id]
	s.pmu.RUnlock()
	data, tooLong := marshalKeeperMsg(keeperMsg{Op: "put", ID: id, Policy: keep(own)})
	if tooLong > 0 {
		s.enqueue(Notification{Time: time.Now(), Container: id, Err: fmt.Errorf(
			"notify keeper: the answer table (%d bytes) exceeds a keeper message (%d): kept without it, so an agent restarted before this container ends rebuilds the table from the annotations, without the pod's own profile", tooLong, keeperMsgMax)})
	}
	s.kmu.Lock()
	_ = k.SetWriteDeadline(time.Now().Add(depositTimeout))
	_, _, err := k.WriteMsgUnix(data, unix.UnixRights(fd), nil)
	s.kmu.Unlock()
	if err == nil {
		return
	}
	s.mu.Lock()
	dropped := s.keeper == k
	if dropped {
		s.keeper = nil
	}
	closed := s.closed
	s.mu.Unlock()
	k.Close()
	if dropped && !closed {
		s.enqueue(Notification{Time: time.Now(), Container: id, Err: fmt.Errorf("notify keeper gone, fds no longer kept: %w", err)})
	}
}

// KeeperRunning reports whether a keeper answers at path.
func KeeperRunning(path string) bool {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return false
	}
	c.Close()
	return true
}
