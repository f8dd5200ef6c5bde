package detector

import "vigil.dev/vigil/event"

// Native syscall numbers the engine tracks itself; -1 when the native ABI
// lacks the call (open on arm64).
var (
	nrOpen       = nativeNr("open")
	nrOpenat     = nativeNr("openat")
	nrSocket     = nativeNr("socket")
	nrConnect    = nativeNr("connect")
	nrAccept     = nativeNr("accept")
	nrAccept4    = nativeNr("accept4")
	nrDup        = nativeNr("dup")
	nrDup2       = nativeNr("dup2")
	nrDup3       = nativeNr("dup3")
	nrFcntl      = nativeNr("fcntl")
	nrClose      = nativeNr("close")
	nrClone      = nativeNr("clone")
	nrClone3     = nativeNr("clone3")
	nrFork       = nativeNr("fork")
	nrVfork      = nativeNr("vfork")
	nrExecve     = nativeNr("execve")
	nrExecveat   = nativeNr("execveat")
	nrExitGroup  = nativeNr("exit_group")
	nrSetuid     = nativeNr("setuid")
	nrSetreuid   = nativeNr("setreuid")
	nrSetresuid  = nativeNr("setresuid")
	nrGetuid     = nativeNr("getuid")
	nrGeteuid    = nativeNr("geteuid")
	procTracked  = buildProcTracked()
	maxNativeNr  = event.NativeABI().MaxNr()
	cloneThread  = uint64(0x10000)
	procStateCap = 4096
)

func nativeNr(name string) int32 {
	if nr, ok := event.SyscallNr(name); ok {
		return int32(nr)
	}
	return -1
}

func buildProcTracked() []bool {
	t := make([]bool, event.NativeABI().MaxNr()+1)
	for _, nr := range []int32{nrSocket, nrConnect, nrAccept, nrAccept4, nrDup, nrDup2, nrDup3, nrFcntl, nrClose,
		nrClone, nrClone3, nrFork, nrVfork, nrExecve, nrExecveat, nrExitGroup, nrSetuid, nrSetreuid,
		nrSetresuid, nrGetuid, nrGeteuid} {
		if nr >= 0 {
			t[nr] = true
		}
	}
	return t
}

// procState is what the engine remembers about one process (thread group)
// to answer proc.* conditions: its executable, its uid when known, which
// fds are sockets, and whether a socket was duplicated onto its stdio.
type procState struct {
	exe         string
	uid         int64      // -1: unknown
	sockfds     [16]uint64 // fds from socket/accept (and their dups)
	connfds     [16]uint64 // sockets this process connected out (and their dups)
	stdioFrom   [3]int32   // the fd duplicated onto 0, 1, 2; -1 none
	stdioSocket bool       // a socket is on stdio
	stdioConn   bool       // a connected-out socket is on stdio
}

func newProc() *procState {
	return &procState{uid: -1, stdioFrom: [3]int32{-1, -1, -1}}
}

func bit(set *[16]uint64, fd int64) bool {
	return fd >= 0 && fd < 1024 && set[fd>>6]&(1<<(fd&63)) != 0
}

func setBit(set *[16]uint64, fd int64, on bool) {
	if fd < 0 || fd >= 1024 {
		return
	}
	if on {
		set[fd>>6] |= 1 << (fd & 63)
	} else {
		set[fd>>6] &^= 1 << (fd & 63)
	}
}

func (p *procState) isSocket(fd int64) bool    { return bit(&p.sockfds, fd) }
func (p *procState) isConnected(fd int64) bool { return bit(&p.connfds, fd) }

func (p *procState) setSocket(fd int64, on bool) {
	setBit(&p.sockfds, fd, on)
	if !on {
		setBit(&p.connfds, fd, false)
	}
}

func (p *procState) dup(oldfd, newfd int64) {
	setBit(&p.sockfds, newfd, p.isSocket(oldfd))
	setBit(&p.connfds, newfd, p.isConnected(oldfd))
	if newfd >= 0 && newfd <= 2 {
		p.stdioFrom[newfd] = int32(oldfd)
	}
	p.refreshStdio()
}

func (p *procState) refreshStdio() {
	for _, fd := range p.stdioFrom {
		if fd >= 0 && p.isSocket(int64(fd)) {
			p.stdioSocket = true
		}
		if fd >= 0 && p.isConnected(int64(fd)) {
			p.stdioConn = true
		}
	}
}

// merge folds a parent's state into a child that may have been seen first
// (events of different CPUs arrive out of order).
func (p *procState) merge(parent *procState) {
	for i := range p.sockfds {
		p.sockfds[i] |= parent.sockfds[i]
		p.connfds[i] |= parent.connfds[i]
	}
	if p.exe == "" {
		p.exe = parent.exe
	}
	if p.uid < 0 {
		p.uid = parent.uid
	}
	for i, fd := range p.stdioFrom {
		if fd < 0 {
			p.stdioFrom[i] = parent.stdioFrom[i]
		}
	}
	p.stdioSocket = p.stdioSocket || parent.stdioSocket
	p.stdioConn = p.stdioConn || parent.stdioConn
	p.refreshStdio()
}

// procs tracks the processes of one cgroup. Its size is bounded: past
// procStateCap processes it starts over (deterministically).
type procs map[uint32]*procState

func (ps *procs) get(pid uint32, create bool) *procState {
	if *ps == nil {
		if !create {
			return nil
		}
		*ps = make(procs)
	}
	p := (*ps)[pid]
	if p == nil && create {
		if len(*ps) >= procStateCap {
			clear(*ps)
		}
		p = newProc()
		(*ps)[pid] = p
	}
	return p
}

// update applies a tracked syscall's effect before rules see the event.
func (ps *procs) update(ev *event.Event) {
	nr := ev.Nr
	ret := ev.Ret
	switch nr {
	case nrSocket, nrAccept, nrAccept4:
		if ret >= 0 {
			ps.get(ev.PID, true).setSocket(ret, true)
		}
	case nrConnect:
		// connected, or connecting (EINPROGRESS) for a non-blocking socket
		if ret == 0 || ret == -115 {
			if p := ps.get(ev.PID, false); p != nil && p.isSocket(int64(ev.Args[0])) {
				setBit(&p.connfds, int64(ev.Args[0]), true)
			}
		}
	case nrDup:
		if ret >= 0 {
			ps.get(ev.PID, true).dup(int64(ev.Args[0]), ret)
		}
	case nrDup2, nrDup3:
		if ret >= 0 {
			ps.get(ev.PID, true).dup(int64(ev.Args[0]), int64(ev.Args[1]))
		}
	case nrFcntl:
		if ret >= 0 && (ev.Args[1] == 0 || ev.Args[1] == 1030) {
			ps.get(ev.PID, true).dup(int64(ev.Args[0]), ret)
		}
	case nrClose:
		if p := ps.get(ev.PID, false); p != nil && ret == 0 {
			p.setSocket(int64(ev.Args[0]), false)
		}
	case nrClone, nrClone3, nrFork, nrVfork:
		if ret <= 0 || (nr == nrClone && ev.Args[0]&cloneThread != 0) {
			return
		}
		parent := ps.get(ev.PID, false)
		if parent == nil {
			return
		}
		ps.get(uint32(ret), true).merge(parent)
	case nrExecve, nrExecveat:
		if ret == 0 && ev.Flags&event.NoReturn == 0 && ev.Path != "" {
			p := ps.get(ev.PID, true)
			if p.exe != ev.Path {
				p.exe = cloneString(ev.Path)
			}
		}
	case nrSetuid:
		if ret == 0 {
			ps.get(ev.PID, true).uid = int64(uint32(ev.Args[0]))
		}
	case nrSetreuid, nrSetresuid:
		if ret == 0 && uint32(ev.Args[1]) != 0xffffffff {
			ps.get(ev.PID, true).uid = int64(uint32(ev.Args[1]))
		}
	case nrGeteuid:
		if ret >= 0 {
			p := ps.get(ev.PID, true)
			p.uid = ret
		}
	case nrGetuid:
		if ret >= 0 {
			if p := ps.get(ev.PID, true); p.uid < 0 {
				p.uid = ret
			}
		}
	}
}

func cloneString(s string) string {
	b := make([]byte, len(s))
	copy(b, s)
	return string(b)
}
