package detector

import (
	"path"
	"strings"

	"vigil.dev/vigil/event"
)

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
	nrCreat      = nativeNr("creat")
	nrOpenat2    = nativeNr("openat2")
	nrOpenTree   = nativeNr("open_tree")
	nrChdir      = nativeNr("chdir")
	nrFchdir     = nativeNr("fchdir")
	nrCloseRange = nativeNr("close_range")
	nrMemfd      = nativeNr("memfd_create")
	procTracked  = buildProcTracked()
	uidTracked   = buildTable(nrSetuid, nrSetreuid, nrSetresuid)
	maxNativeNr  = event.NativeABI().MaxNr()
	cloneThread  = uint64(0x10000)
)

// Bounds of the per-cgroup state. Past them the least recently used entry
// goes (RULES.md states them).
const (
	maxProcs      = 4096  // processes tracked per cgroup
	maxFds        = 1024  // fd paths tracked per process
	maxFdBytes    = 65536 // bytes of fd paths per process
	maxRuleStates = 16384 // per-process rate counters and last-verdict times per cgroup
	modelTailCap  = 4096  // threads whose last calls the model keeps per cgroup
)

func nativeNr(name string) int32 {
	if nr, ok := event.SyscallNr(name); ok {
		return int32(nr)
	}
	return -1
}

// buildTable is a table by native syscall number, true for nrs.
func buildTable(nrs ...int32) []bool {
	t := make([]bool, event.NativeABI().MaxNr()+1)
	for _, nr := range nrs {
		if nr >= 0 {
			t[nr] = true
		}
	}
	return t
}

func buildProcTracked() []bool {
	t := make([]bool, event.NativeABI().MaxNr()+1)
	for _, nr := range []int32{nrSocket, nrConnect, nrAccept, nrAccept4, nrDup, nrDup2, nrDup3, nrFcntl, nrClose,
		nrClone, nrClone3, nrFork, nrVfork, nrExecve, nrExecveat, nrExitGroup, nrGetuid, nrGeteuid, nrOpen,
		nrOpenat, nrOpenat2, nrCreat, nrOpenTree, nrChdir, nrFchdir, nrCloseRange, nrMemfd} {
		if nr >= 0 {
			t[nr] = true
		}
	}
	return t
}

// procState is what the engine remembers about one process (thread group)
// to answer proc.* conditions and to resolve its paths: its executable,
// its uid when known, its working directory, the paths of its fds, which
// fds are sockets, and whether a socket was duplicated onto its stdio.
type procState struct {
	exe         string
	cwd         string       // absolute and clean; "" unknown
	fds         *fdTable     // fd -> path; shared with a forked child until one writes
	uids        uids         // real, effective, saved uid as far as seen
	sockfds     [16]uint64   // fds from socket/accept (and their dups)
	connfds     [16]uint64   // sockets this process connected out (and their dups)
	ownconn     [16]uint64   // of connfds, those it connected itself, not inherited
	stdioFrom   [3]int32     // the fd duplicated onto 0, 1, 2; -1 none
	stdioSocket bool         // a socket is on stdio
	stdioConn   bool         // a connected-out socket is on stdio
	stdioOwn    bool         // a socket this process connected itself is on stdio
	forked      bool         // created by a fork or clone vigil saw
	born        uint64       // ktime of the first tracked event that found it; 0 unknown
	last        uint64       // ktime of its latest tracked event; 0 unknown
	lastTID     uint32       // the thread that made it
	held        *event.Event // its exec, while no fork of it was seen (vfork.go)
	showsEnv    bool         // ps asked to print environments (psShowsEnv)
	env         []string     // the loader variables of its image's environment (Event.Env of the exec; inherited)
	envKnown    bool         // env is known: an exec of it or of an ancestor was seen
	envAdded    []string     // of env, the entries its previous image's environment lacked
	lin         lineage      // parent, server role, writable memory (lineage.go)
}

// staleAfter is how long before its parent's fork returned a child's
// state may have been made by the child's own events (seen first, from
// another CPU).
const staleAfter = 2_000_000_000 // ns

// stale reports whether p, found under the pid that parent's thread tid
// got from a fork returning at ktime, belongs to an earlier process of
// that pid (whose exit record was lost): one made by an earlier fork, one
// first seen before that thread's last tracked event before the fork
// (the child did not exist then), or one first seen more than staleAfter
// before the fork returned. A vfork child runs while its parent waits
// and may take any time before its exec (posix_spawn's open of a FIFO
// blocks); the vfork returns right after that exec, so a state whose
// held exec is that recent is the child's, however old.
func (p *procState) stale(parent *procState, tid uint32, ktime uint64) bool {
	switch {
	case p.forked:
		return true
	case p.born == 0:
		return false
	case parent.last != 0 && parent.lastTID == tid && p.born < parent.last:
		return true
	}
	return p.born+staleAfter < ktime && (p.held == nil || p.held.KTime+staleAfter < ktime)
}

func (p *procState) reset() {
	*p = procState{uids: unknownUids, stdioFrom: [3]int32{-1, -1, -1}}
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

func (p *procState) isSocket(fd int64) bool     { return bit(&p.sockfds, fd) }
func (p *procState) isConnected(fd int64) bool  { return bit(&p.connfds, fd) }
func (p *procState) ownConnected(fd int64) bool { return bit(&p.ownconn, fd) }

func (p *procState) setSocket(fd int64, on bool) {
	setBit(&p.sockfds, fd, on)
	if !on {
		setBit(&p.connfds, fd, false)
		setBit(&p.ownconn, fd, false)
	}
}

func (p *procState) dup(oldfd, newfd int64) {
	setBit(&p.sockfds, newfd, p.isSocket(oldfd))
	setBit(&p.connfds, newfd, p.isConnected(oldfd))
	setBit(&p.ownconn, newfd, p.ownConnected(oldfd))
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
		if fd >= 0 && p.ownConnected(int64(fd)) {
			p.stdioOwn = true
		}
	}
}

// fdPath is the path fd was opened with, or "" when unknown. The string is
// a view of the table's buffer: valid only until the table changes.
func (p *procState) fdPath(fd int32) string {
	if p.fds == nil {
		return ""
	}
	return p.fds.path(fd)
}

// writableFds returns the process's own fd table, copying a shared one.
func (p *procState) writableFds() *fdTable {
	switch {
	case p.fds == nil:
		p.fds = newFdTable()
	case p.fds.refs > 1:
		p.fds.refs--
		p.fds = p.fds.clone()
	}
	return p.fds
}

// dropFds lets go of the fd table (the process is gone).
func (p *procState) dropFds() {
	if p.fds != nil {
		p.fds.refs--
		p.fds = nil
	}
}

// merge folds a parent's state into a child that may have been seen first
// (events of different CPUs arrive out of order). The sockets the parent
// connected are not the child's own (ownconn, stdioOwn).
func (p *procState) merge(parent *procState) {
	for i := range p.sockfds {
		p.sockfds[i] |= parent.sockfds[i]
		p.connfds[i] |= parent.connfds[i]
	}
	if p.exe == "" {
		p.exe = parent.exe
	}
	if p.cwd == "" {
		p.cwd = parent.cwd
	}
	if !p.envKnown {
		p.env, p.envKnown = parent.env, parent.envKnown
	}
	if (p.fds == nil || p.fds.l.len() == 0) && parent.fds != nil && parent.fds != p.fds {
		p.dropFds()
		p.fds = parent.fds
		p.fds.refs++
	}
	p.uids.merge(parent.uids)
	for i, fd := range p.stdioFrom {
		if fd < 0 {
			p.stdioFrom[i] = parent.stdioFrom[i]
		}
	}
	p.stdioSocket = p.stdioSocket || parent.stdioSocket
	p.stdioConn = p.stdioConn || parent.stdioConn
	p.refreshStdio()
}

// fdTable maps a process's fds to the absolute paths they were opened
// with, bounded by maxFds entries and maxFdBytes bytes of paths (the least
// recently used fd goes). A forked child shares its parent's table until
// one of them changes it (refs counts the sharers).
type fdTable struct {
	l     lru[int32, fdEntry]
	refs  int32
	bytes int
}

type fdEntry struct {
	path    []byte // absolute, clean ("memfd:" for a memfd); the buffer is reused
	cloexec bool
	memfd   uint8 // memfdFile, memfdFilled
}

// fdEntry.memfd bits.
const (
	memfdFile   = 1 << iota // the fd is a memfd (memfd_create, or a /proc/self/fd link to one)
	memfdFilled             // bytes were put in it with write, pwrite, sendfile…: not through a mapping
)

// memfdPath is the path a memfd's fd gets in the table: the kernel names it
// "/memfd:NAME (deleted)", and the tracer does not read NAME.
const memfdPath = "memfd:"

func newFdTable() *fdTable {
	t := &fdTable{refs: 1}
	t.l.max = maxFds
	t.l.onEvict = func(_ int32, e *fdEntry) { t.bytes -= len(e.path) }
	return t
}

func (t *fdTable) path(fd int32) string {
	e := t.l.get(fd)
	if e == nil || len(e.path) == 0 {
		return ""
	}
	return unsafeString(e.path)
}

// set records that fd names path (absolute and clean); any other path
// forgets fd.
func (t *fdTable) set(fd int32, path string, cloexec bool) {
	t.put(fd, path, cloexec, 0)
}

// setMemfd records that fd is a memfd (memfd bits: memfdFile and more).
func (t *fdTable) setMemfd(fd int32, cloexec bool, memfd uint8) {
	t.put(fd, memfdPath, cloexec, memfd|memfdFile)
}

// memfd returns fd's memfd bits (0: not a memfd, or unknown).
func (t *fdTable) memfd(fd int32) uint8 {
	if e := t.l.peek(fd); e != nil {
		return e.memfd
	}
	return 0
}

func (t *fdTable) put(fd int32, path string, cloexec bool, memfd uint8) {
	if fd < 0 || path == "" || (path[0] != '/' && memfd == 0) || len(path) > maxPathLen {
		t.l.remove(fd)
		return
	}
	e, _ := t.l.put(fd)
	t.bytes += len(path) - len(e.path)
	e.path = append(e.path[:0], path...)
	e.cloexec = cloexec
	e.memfd = memfd
	for t.bytes > maxFdBytes {
		old, _ := t.l.oldest()
		t.l.remove(old)
	}
}

func (t *fdTable) dup(oldfd, newfd int32, cloexec bool) {
	if oldfd == newfd {
		return
	}
	e := t.l.get(oldfd) // now the most recently used: set(newfd) cannot evict it
	if e == nil {
		t.l.remove(newfd)
		return
	}
	t.put(newfd, unsafeString(e.path), cloexec, e.memfd)
}

func (t *fdTable) setCloexec(fd int32, on bool) {
	if e := t.l.peek(fd); e != nil {
		e.cloexec = on
	}
}

// exec forgets the fds a successful execve closes.
func (t *fdTable) exec() {
	var gone []int32
	t.l.each(func(fd int32, e *fdEntry) {
		if e.cloexec {
			gone = append(gone, fd)
		}
	})
	for _, fd := range gone {
		t.l.remove(fd)
	}
}

// closeRange forgets (or marks close-on-exec) fds first..last.
func (t *fdTable) closeRange(first, last uint32, cloexec bool) {
	var gone []int32
	t.l.each(func(fd int32, e *fdEntry) {
		if uint32(fd) >= first && uint32(fd) <= last {
			if cloexec {
				e.cloexec = true
			} else {
				gone = append(gone, fd)
			}
		}
	})
	for _, fd := range gone {
		t.l.remove(fd)
	}
}

func (t *fdTable) clone() *fdTable {
	c := newFdTable()
	t.l.each(func(fd int32, e *fdEntry) { c.put(fd, unsafeString(e.path), e.cloexec, e.memfd) })
	return c
}

// procs tracks the processes of one cgroup, at most maxProcs: past that
// the least recently used one is forgotten.
type procs struct {
	l       lru[uint32, procState]
	rejudge *event.Event // a held exec the last fork put in context (vfork.go)
	memfd   bool         // a process made a memfd: writes are looked at (lineage.go)
	out     outConns     // the processes' outbound connections (conns.go)
}

func (ps *procs) get(pid uint32, create bool) *procState {
	if !create {
		return ps.l.get(pid)
	}
	if ps.l.max == 0 {
		ps.l.max = maxProcs
		ps.l.onEvict = func(_ uint32, p *procState) { p.dropFds() }
	}
	p, fresh := ps.l.put(pid)
	if fresh {
		p.reset()
	}
	return p
}

func (ps *procs) remove(pid uint32) { ps.l.remove(pid) }

// Linux open flags and fcntl commands the fd table follows.
const (
	oCloexec        = 0x80000
	fDupfd          = 0
	fDupfdCloexec   = 1030
	fSetfd          = 2
	fdCloexec       = 1
	closeRangeCloex = 4
	mfdCloexec      = 1
)

// update applies a tracked syscall's effect before rules see the event.
// Paths (ev.Path, ev.Path2) are already normalised.
func (ps *procs) update(ev *event.Event) {
	ps.apply(ev)
	ps.noteBorn(ev)
}

func (ps *procs) apply(ev *event.Event) {
	nr := ev.Nr
	ret := ev.Ret
	switch nr {
	case nrSocket, nrAccept, nrAccept4:
		if ret >= 0 {
			p := ps.get(ev.PID, true)
			p.setSocket(ret, true)
			if p.fds != nil && p.fds.l.peek(int32(ret)) != nil {
				p.writableFds().l.remove(int32(ret))
			}
		}
	case nrConnect:
		// connected, or connecting (EINPROGRESS) for a non-blocking socket
		if ret == 0 || ret == -115 {
			if p := ps.get(ev.PID, false); p != nil && p.isSocket(int64(ev.Args[0])) {
				setBit(&p.connfds, int64(ev.Args[0]), true)
				setBit(&p.ownconn, int64(ev.Args[0]), true)
			}
		}
	case nrOpen, nrOpenat, nrOpenat2, nrCreat, nrOpenTree:
		if ret >= 0 {
			p := ps.get(ev.PID, true)
			p.setSocket(ret, false)
			var cloexec bool
			switch nr {
			case nrOpen:
				cloexec = ev.Args[1]&oCloexec != 0
			case nrOpenat:
				cloexec = ev.Args[2]&oCloexec != 0
			case nrOpenTree:
				cloexec = ev.Args[2]&oCloexec != 0 // OPEN_TREE_CLOEXEC
			}
			if p.fds != nil || ev.Path != "" {
				p.writableFds().set(int32(ret), ev.Path, cloexec)
			}
			// open("/proc/self/fd/N") of a memfd (dlopen of it): the
			// kernel's path says "(unreachable)/", the process's names it
			if ps.memfd && ev.PathUser != "" && p.fds != nil {
				if fd, ok := ownFdLink(ev.PathUser, ev.PID); ok {
					if m := p.fds.memfd(fd); m != 0 {
						p.writableFds().setMemfd(int32(ret), cloexec, m)
					}
				}
			}
		}
	case nrMemfd:
		if ret >= 0 {
			p := ps.get(ev.PID, true)
			p.setSocket(ret, false)
			p.writableFds().setMemfd(int32(ret), ev.Args[1]&mfdCloexec != 0, 0)
			ps.memfd = true
		}
	case nrDup:
		if ret >= 0 {
			p := ps.get(ev.PID, true)
			p.dup(int64(ev.Args[0]), ret)
			p.dupPath(int32(ev.Args[0]), int32(ret), false)
		}
	case nrDup2, nrDup3:
		if ret >= 0 {
			p := ps.get(ev.PID, true)
			p.dup(int64(ev.Args[0]), int64(ev.Args[1]))
			p.dupPath(int32(ev.Args[0]), int32(ev.Args[1]), nr == nrDup3 && ev.Args[2]&oCloexec != 0)
		}
	case nrFcntl:
		if ret < 0 {
			return
		}
		switch ev.Args[1] {
		case fDupfd, fDupfdCloexec:
			p := ps.get(ev.PID, true)
			p.dup(int64(ev.Args[0]), ret)
			p.dupPath(int32(ev.Args[0]), int32(ret), ev.Args[1] == fDupfdCloexec)
		case fSetfd:
			if p := ps.get(ev.PID, false); p != nil && p.fds != nil && p.fds.l.peek(int32(ev.Args[0])) != nil {
				p.writableFds().setCloexec(int32(ev.Args[0]), ev.Args[2]&fdCloexec != 0)
			}
		}
	case nrClose:
		if p := ps.get(ev.PID, false); p != nil && ret == 0 {
			p.setSocket(int64(ev.Args[0]), false)
			if p.lin.spliced != 0 && uint64(p.lin.spliced) == ev.Args[0]+1 {
				p.lin.spliced = 0
			}
			if p.fds != nil && p.fds.l.peek(int32(ev.Args[0])) != nil {
				p.writableFds().l.remove(int32(ev.Args[0]))
			}
		}
	case nrCloseRange:
		if p := ps.get(ev.PID, false); p != nil && ret == 0 {
			first, last := uint32(ev.Args[0]), uint32(ev.Args[1])
			cloexec := ev.Args[2]&closeRangeCloex != 0
			if !cloexec {
				for fd := uint64(first); fd <= uint64(last) && fd < 1024; fd++ {
					p.setSocket(int64(fd), false)
				}
			}
			if p.fds != nil && p.fds.l.len() > 0 {
				p.writableFds().closeRange(first, last, cloexec)
			}
		}
	case nrChdir:
		if ret == 0 {
			p := ps.get(ev.PID, true)
			p.setCwd(ev.Path)
		}
	case nrFchdir:
		if ret == 0 {
			p := ps.get(ev.PID, true)
			p.setCwd(p.fdPath(int32(ev.Args[0])))
		}
	case nrClone, nrClone3, nrFork, nrVfork:
		if ret <= 0 || isThreadClone(ev) {
			return
		}
		parent := ps.get(ev.PID, false)
		if parent == nil {
			return
		}
		child := ps.get(uint32(ret), true)
		if child.stale(parent, ev.TID, ev.KTime) {
			// the pid's earlier process (its exit record lost): its
			// executable, uids, fds and lineage are not the child's
			child.dropFds()
			child.reset()
		}
		// a vfork child's exec comes before the fork that made it (its
		// exec is held): what it inherits went through that exec
		execd, own := child.held != nil, child.uids
		tookFds := child.fds == nil || child.fds.l.len() == 0
		child.merge(parent)
		if execd {
			child.execInherited(own, parent.uids, tookFds)
			// its image before the exec was its parent's
			child.envAdded = addedEnv(child.env, parent.env, parent.envKnown)
		}
		child.forked = true
		if child.held != nil {
			ps.rejudge, child.held = child.held, nil
		}
	case nrExecve, nrExecveat:
		if ret == 0 && ev.Flags&event.NoReturn == 0 && ev.Path != "" {
			p := ps.get(ev.PID, true)
			if p.exe != ev.Path {
				p.exe = cloneString(ev.Path)
			}
			if p.fds != nil && p.fds.l.len() > 0 {
				p.writableFds().exec()
			}
			p.uids.exec()
			p.envAdded = addedEnv(ev.Env, p.env, p.envKnown)
			p.env, p.envKnown = cloneStrings(ev.Env), true
			p.held = nil
			p.showsEnv = path.Base(ev.Path) == "ps" && psShowsEnv(ev.Argv)
			if !p.forked {
				p.holdExec(ev)
			}
		}
	case nrGeteuid:
		if ret >= 0 {
			ps.get(ev.PID, true).uids.e = ret
		}
	case nrGetuid:
		if ret >= 0 {
			ps.get(ev.PID, true).uids.r = ret
		}
	}
}

// isThreadClone reports whether a clone or clone3 made a thread, not a
// process (clone3's flags are in Event.CloneFlags).
func isThreadClone(ev *event.Event) bool {
	switch ev.Nr {
	case nrClone:
		return ev.Args[0]&cloneThread != 0
	case nrClone3:
		return ev.CloneFlags&cloneThread != 0
	}
	return false
}

// addedEnv returns the entries of env that prev lacks: loader variables an
// exec set or changed rather than inherited. Nothing when prev is not
// known (a process whose image vigil never saw start: the container's
// first process, whose environment is its configuration).
func addedEnv(env, prev []string, known bool) []string {
	if !known {
		return nil
	}
	var out []string
	for _, e := range env {
		found := false
		for _, q := range prev {
			if e == q {
				found = true
				break
			}
		}
		if !found {
			out = append(out, e)
		}
	}
	return out
}

func cloneStrings(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = cloneString(s)
	}
	return out
}

// updateUids applies a successful setuid, setreuid or setresuid to the
// process's uids. The engine calls it after the rules have judged the call,
// so that they see the uids the process asked from.
func (ps *procs) updateUids(ev *event.Event) {
	if ev.Ret != 0 || ev.Flags&event.Lost != 0 {
		return
	}
	switch ev.Nr {
	case nrSetuid:
		ps.get(ev.PID, true).uids.setuid(uidArg(ev.Args[0]))
	case nrSetreuid:
		ps.get(ev.PID, true).uids.setreuid(uidArg(ev.Args[0]), uidArg(ev.Args[1]))
	case nrSetresuid:
		ps.get(ev.PID, true).uids.setresuid(uidArg(ev.Args[0]), uidArg(ev.Args[1]), uidArg(ev.Args[2]))
	}
}

// noteBorn stamps the process of a tracked event with the event's time
// when it has none (the first tracked event that found it), and as its
// latest.
func (ps *procs) noteBorn(ev *event.Event) {
	if p := ps.l.peek(ev.PID); p != nil {
		if p.born == 0 {
			p.born = ev.KTime
		}
		p.last, p.lastTID = ev.KTime, ev.TID
	}
}

// execInherited applies the exec a child made before its fork was seen
// to what the merge gave it from its parent: the uids, the child's own
// (own, before the merge) filled from the parent's as that exec left them
// (a user's sudo may be root: the parent's effective and saved uids are
// not the child's), and, when it took its parent's fd table, the
// close-on-exec fds. What the child learnt after its exec stays.
func (p *procState) execInherited(own, parent uids, tookFds bool) {
	parent.exec()
	p.uids = own
	p.uids.merge(parent)
	if tookFds && p.fds != nil && p.fds.l.len() > 0 {
		p.writableFds().exec()
	}
}

// uids are a process's real, effective and saved uids, each -1 when
// unknown: vigil learns them from getuid and geteuid returns and from the
// successful setuid family (credentials.7), and a child inherits them.
// A process forked before tracing began, or one that never asked, has
// them unknown.
type uids struct{ r, e, s int64 }

var unknownUids = uids{-1, -1, -1}

// uidArg reads a uid argument: -1 (uid_t 0xffffffff) means "unchanged".
func uidArg(a uint64) int64 {
	if uint32(a) == 0xffffffff {
		return -1
	}
	return int64(uint32(a))
}

// setuid: a privileged caller (effective uid 0) sets all three; any other
// caller only the effective uid. With the effective uid unknown, only the
// effective uid is taken as known.
func (u *uids) setuid(id int64) {
	if id < 0 {
		return
	}
	if u.e == 0 {
		u.r, u.s = id, id
	}
	u.e = id
}

// setreuid: the saved uid becomes the new effective uid when the real uid
// is set or the effective uid is set to something other than the old real
// uid.
func (u *uids) setreuid(r, e int64) {
	oldR := u.r
	if r >= 0 {
		u.r = r
	}
	if e >= 0 {
		u.e = e
	}
	if r >= 0 || (e >= 0 && e != oldR) {
		u.s = u.e
	}
}

// exec applies a successful execve (credentials.7, execve.2): the real uid
// stays; the effective uid becomes the file's owner when the file is
// set-user-ID, and the saved uid a copy of the effective one. vigil does
// not see the file's mode, so a process that was not root has its
// effective and saved uids unknown after an exec (sudo, su, passwd run by
// a user are root from there on) until it asks (geteuid). Root stays
// root: a set-user-ID file owned by another user is rare, and the rules
// only ask whether a caller was root.
func (u *uids) exec() {
	switch {
	case u.e == 0:
		u.s = 0
	case u.e > 0:
		u.e, u.s = -1, -1
	}
}

func (u *uids) setresuid(r, e, s int64) {
	if r >= 0 {
		u.r = r
	}
	if e >= 0 {
		u.e = e
	}
	if s >= 0 {
		u.s = s
	}
}

// merge fills the uids a child does not know from its parent's.
func (u *uids) merge(parent uids) {
	if u.r < 0 {
		u.r = parent.r
	}
	if u.e < 0 {
		u.e = parent.e
	}
	if u.s < 0 {
		u.s = parent.s
	}
}

// dupPath gives newfd oldfd's path.
func (p *procState) dupPath(oldfd, newfd int32, cloexec bool) {
	if p.fds == nil || (p.fds.l.peek(oldfd) == nil && p.fds.l.peek(newfd) == nil) {
		return
	}
	p.writableFds().dup(oldfd, newfd, cloexec)
}

// setCwd records a new working directory: an absolute clean path, else
// unknown.
func (p *procState) setCwd(dir string) {
	switch {
	case dir == "" || dir[0] != '/' || len(dir) > maxPathLen:
		p.cwd = ""
	case dir != p.cwd:
		p.cwd = cloneString(dir)
	}
}

// cloneString copies s into memory of its own (one allocation: a copy
// into a new []byte and a string of it made two).
func cloneString(s string) string { return strings.Clone(s) }

// psShowsEnv reports whether ps's arguments ask it to print the
// environments of the processes it lists: procps's BSD option e (ps e,
// ps eww, ps auxe, ps -p 1 e). procps reads its arguments so (ps(1)): one
// starting with "--" is a long option, one starting with "-" a cluster of
// UNIX options (where -e selects every process), a list of pids alone is
// a pid list, and any other a cluster of BSD options; an option that takes
// a value takes the rest of its cluster, or the next argument when the
// cluster ends with it (ps -o user,etime: "user,etime" is no cluster).
func psShowsEnv(argv []string) bool {
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case strings.HasPrefix(a, "--"):
			name, _, inline := strings.Cut(a[2:], "=")
			if !inline && psLongValue[name] {
				i++
			}
		case strings.HasPrefix(a, "-"):
			if _, next := psCluster(a[1:], psUnixValue, 0); next {
				i++
			}
		case strings.Trim(a, "0123456789,") == "":
			// a pid list
		default:
			env, next := psCluster(a, psBSDValue, 'e')
			if env {
				return true
			}
			if next {
				i++
			}
		}
	}
	return false
}

// psCluster reads a cluster of one-letter options: whether it holds want
// (before any value) and whether its last option takes the next argument
// as its value.
func psCluster(c, withValue string, want byte) (found, next bool) {
	for j := 0; j < len(c); j++ {
		if c[j] == want {
			return true, false
		}
		if strings.IndexByte(withValue, c[j]) >= 0 {
			return false, j == len(c)-1
		}
	}
	return false, false
}

// ps options that take a value: UNIX (-o FORMAT), BSD (o FORMAT), long
// (--sort KEY, or --sort=KEY).
const (
	psUnixValue = "CDGgOopqstUu"
	psBSDValue  = "OopqtUk"
)

var psLongValue = map[string]bool{"format": true, "sort": true, "pid": true, "ppid": true, "quick-pid": true, "sid": true,
	"tty": true, "user": true, "User": true, "group": true, "Group": true, "cols": true, "columns": true, "width": true,
	"lines": true, "rows": true, "date-format": true}
