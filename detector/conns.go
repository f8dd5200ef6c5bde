package detector

import "vigil.dev/vigil/event"

// Outbound connections of a cgroup, for the resource rules: a miner keeps
// one connection to its pool open for as long as it mines and exchanges a
// small message on it now and then (a new job, a share found), whatever
// language it is written in. The table holds the inet and inet6 sockets
// its processes connected out and have not closed, with the 5-second
// slots in which each carried a read or write.

// connSlot is the length of an activity slot (ns).
const connSlot = int64(5_000_000_000)

// maxConns bounds the connections followed per cgroup: past it the one
// idle longest is forgotten.
const maxConns = 16

// outConn is one connected-out socket of a process.
type outConn struct {
	pid   uint32
	fd    int32
	since int64  // connect time
	last  int64  // time of its latest read or write; 0 none
	base  int64  // slot number of bit 0 of slots
	slots uint64 // bit i: a read or write in slot base+i
	// inherited: the process got the socket from its parent (fork). Such
	// copies that carry nothing are forgotten first (clone3 making a
	// thread looks like a fork to the engine).
	inherited bool
}

// age orders the connections to forget: idle inherited copies first, then
// the one idle longest.
func (c *outConn) age() int64 {
	if c.inherited && c.last == 0 {
		return -1 << 63
	}
	return max(c.last, c.since)
}

// outConns is a cgroup's table of outbound connections.
type outConns struct {
	c [maxConns]outConn
	n int
}

// Calls that read or write a socket through the fd in arg0.
var connIO = buildTable(nativeNr("read"), nativeNr("write"), nativeNr("readv"), nativeNr("writev"),
	nativeNr("recvfrom"), nativeNr("sendto"), nativeNr("recvmsg"), nativeNr("sendmsg"),
	nativeNr("recvmmsg"), nativeNr("sendmmsg"))

// connect records a connection made (or in progress) at t.
func (o *outConns) connect(pid uint32, fd int32, t int64) {
	o.close(pid, fd)
	*o.slot() = outConn{pid: pid, fd: fd, since: t}
}

// slot returns a free entry, forgetting one when the table is full.
func (o *outConns) slot() *outConn {
	if o.n < maxConns {
		o.n++
		return &o.c[o.n-1]
	}
	i := 0
	for j := 1; j < o.n; j++ {
		if o.c[j].age() < o.c[i].age() {
			i = j
		}
	}
	return &o.c[i]
}

// fork gives a child copies of its parent's connections while the table
// has room: the socket is the same, and a miner may talk to its pool from
// a process it forked.
func (o *outConns) fork(parent, child uint32) {
	for i, n := 0, o.n; i < n && o.n < maxConns; i++ {
		if o.c[i].pid != parent {
			continue
		}
		c := o.c[i]
		c.pid, c.last, c.slots, c.inherited = child, 0, 0, true
		*o.slot() = c
	}
}

// close forgets a process's connection (fd >= 0) or all of them (fd < 0).
func (o *outConns) close(pid uint32, fd int32) {
	for i := 0; i < o.n; {
		if c := &o.c[i]; c.pid == pid && (fd < 0 || c.fd == fd) {
			o.n--
			o.c[i] = o.c[o.n]
			continue
		}
		i++
	}
}

// closeRange forgets a process's connections with fds first..last.
func (o *outConns) closeRange(pid uint32, first, last uint32) {
	for i := 0; i < o.n; {
		if c := &o.c[i]; c.pid == pid && uint32(c.fd) >= first && uint32(c.fd) <= last {
			o.n--
			o.c[i] = o.c[o.n]
			continue
		}
		i++
	}
}

// io marks a read or write on a process's fd at t.
func (o *outConns) io(pid uint32, fd int32, t int64) {
	for i := 0; i < o.n; i++ {
		c := &o.c[i]
		if c.pid != pid || c.fd != fd {
			continue
		}
		s := t / connSlot
		switch {
		case c.slots == 0:
			c.base, c.slots = s, 1
		case s-c.base >= 64:
			// Slide the window so that s is its last bit: the slots of
			// the last 5 minutes stay (a reset lost the history the
			// rules' 30 s window looks at, every 320 s).
			if shift := s - 63 - c.base; shift < 64 {
				c.slots >>= uint(shift)
			} else {
				c.slots = 0
			}
			c.base = s - 63
			c.slots |= 1 << 63
		case s >= c.base:
			c.slots |= 1 << (s - c.base)
		}
		c.last = max(c.last, t)
		return
	}
}

// periodic counts the connections open since before from (and not closed)
// that carried a read or write in at least two different slots within
// [from, to]: a message now and then, not one exchange.
func (o *outConns) periodic(from, to int64) int {
	n := 0
	for i := 0; i < o.n; i++ {
		c := &o.c[i]
		if c.since > from || c.slots == 0 {
			continue
		}
		lo, hi := from/connSlot, to/connSlot
		busy := 0
		for s := max(lo, c.base); s <= hi && s < c.base+64; s++ {
			if c.slots&(1<<(s-c.base)) != 0 {
				busy++
			}
		}
		if busy >= 2 {
			n++
		}
	}
	return n
}

// trackConns applies an event's effect on the outbound connections.
func trackConns(ps *procs, ev *event.Event) {
	o := &ps.out
	nr := ev.Nr
	switch {
	case connIO[nr]:
		if o.n > 0 && ev.Ret > 0 {
			o.io(ev.PID, int32(ev.Args[0]), eventTime(ev))
		}
	case nr == nrConnect:
		if (ev.Ret == 0 || ev.Ret == -115) && (ev.Addr.Family == event.AFInet || ev.Addr.Family == event.AFInet6) {
			o.connect(ev.PID, int32(ev.Args[0]), eventTime(ev))
		}
	case o.n == 0:
	case nr == nrClose:
		if ev.Ret == 0 {
			o.close(ev.PID, int32(ev.Args[0]))
		}
	case nr == nrCloseRange:
		if ev.Ret == 0 && ev.Args[2]&closeRangeCloex == 0 {
			o.closeRange(ev.PID, uint32(ev.Args[0]), uint32(ev.Args[1]))
		}
	case nr == nrExitGroup:
		o.close(ev.PID, -1)
	case nr == nrClone || nr == nrClone3 || nr == nrFork || nr == nrVfork:
		if ev.Ret > 0 && (nr != nrClone || ev.Args[0]&cloneThread == 0) {
			o.fork(ev.PID, uint32(ev.Ret))
		}
	}
}
