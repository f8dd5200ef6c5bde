package audit

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"vigil.dev/vigil/event"
)

// Record encoding inside a batch payload (before compression). Each record
// is
//
//	len(uvarint) kind(1) cgref(uvarint) [cgroup(uvarint) cseq(uvarint)] rest
//
// cgref 0 introduces a cgroup in this batch (its id and the record's full
// per-container sequence number follow); cgref i > 0 names the i-th cgroup
// introduced in the batch, and the sequence number is one more than that
// cgroup's previous record. An event's rest is delta-coded against the
// previous record of the same cgroup in the batch (pid/tid, comm, container,
// tracer sequence number) and against the previous event of the batch
// (kernel time, wall-clock offset); see appendEvent. The rest of the other
// kinds is time(varint, unix ns) containerID(string) body(bytes, JSON).
// Each batch starts from a blank state, so a batch decodes on its own.

// Event flag bits.
const (
	efSameTask   = 1 << iota // pid and tid as the cgroup's previous event
	efSameComm               // comm as the cgroup's previous event
	efSameCont               // container as the cgroup's previous event
	efContainer              // a container follows
	efPath                   // path follows
	efPath2                  // path2 follows
	efArgv                   // argv follows
	efAddr                   // addr follows
	efZeroTime               // Time is the zero time
	efFlagsCount             // flags and count follow
	efFirstSeq               // the tracer seq is absolute, not a delta
	efCloneFlags             // clone3's flags follow
	efEnv                    // an exec's loader variables (env) follow
)

// cgState is the writer's per-cgroup state: the per-container sequence
// number (kept across batches) and what the batch encoding last said about
// the cgroup (valid while gen is the current batch's).
type cgState struct {
	id    uint64
	cseq  uint64
	gen   uint64
	local uint64
	pid   uint32
	tid   uint32
	seq   uint64
	comm  []byte
	cont  encodedContainer
	hasCt bool
	// ctPtr is the container cont was taken from: the registry shares one
	// *Container per container and never changes it, so the same pointer
	// is the same container without comparing its strings.
	ctPtr *event.Container
	evOK  bool   // pid/tid/comm/cont/seq hold a previous event of this batch
	liste uint64 // the batch (gen) whose touched list holds it
}

// cgOp is what a batch did to a cgroup's sequence counter, for the
// counters a segment header carries: the counter at the end of the batch
// (s), or a Forget (s nil).
type cgOp struct {
	s  *cgState
	id uint64
}

// encoder builds a batch payload. It allocates nothing once its buffers
// and cgroup map have grown.
type encoder struct {
	gen     uint64
	nlocal  uint64
	cgs     map[uint64]*cgState
	last    *cgState
	ktime   uint64
	off     int64
	raw     []byte // the batch payload
	start   int    // where the record being encoded starts in raw
	touched []cgOp // cgroups numbered and forgotten in this batch, in order
	n       int
	minTime int64
	maxTime int64
}

func newEncoder() *encoder {
	return &encoder{gen: 1, cgs: make(map[uint64]*cgState)}
}

// reset starts a new batch.
func (e *encoder) reset() {
	e.gen++
	e.nlocal = 0
	e.ktime = 0
	e.off = 0
	e.raw = e.raw[:0]
	e.touched = e.touched[:0]
	e.n = 0
	e.minTime, e.maxTime = 0, 0
}

func (e *encoder) state(cg uint64) *cgState {
	if s := e.last; s != nil && s.id == cg {
		return s
	}
	s := e.cgs[cg]
	if s == nil {
		s = &cgState{id: cg}
		e.cgs[cg] = s
	}
	e.last = s
	return s
}

func (e *encoder) forget(cg uint64) {
	if e.last != nil && e.last.id == cg {
		e.last = nil
	}
	delete(e.cgs, cg)
	e.touched = append(e.touched, cgOp{id: cg})
}

// touch notes that the batch changes s's counter.
func (e *encoder) touch(s *cgState) {
	if s.liste != e.gen {
		s.liste = e.gen
		e.touched = append(e.touched, cgOp{s: s, id: s.id})
	}
}

// skip assigns the cgroup's next sequence number without encoding a record
// (a record counted as lost keeps its number, so the gap shows).
func (e *encoder) skip(cg uint64) {
	s := e.state(cg)
	s.cseq++
	e.touch(s)
}

// head starts a record at the end of the batch payload: a byte for its
// length (see commit), kind and cgroup reference. The record is encoded in
// place, not copied after its length.
func (e *encoder) head(kind Kind, s *cgState) []byte {
	s.cseq++
	e.touch(s)
	e.start = len(e.raw)
	b := append(e.raw, 0, byte(kind))
	if s.gen != e.gen {
		s.gen = e.gen
		e.nlocal++
		s.local = e.nlocal
		s.evOK = false
		b = append(b, 0)
		b = binary.AppendUvarint(b, s.id)
		return binary.AppendUvarint(b, s.cseq)
	}
	return binary.AppendUvarint(b, s.local)
}

// commit ends the record head started: b is the payload with the record
// at its end. Its length goes in the byte head left for it; a record of
// 128 bytes or more (a long path or argv) moves up to make room for a
// longer varint.
func (e *encoder) commit(b []byte, t int64) {
	n := len(b) - e.start - 1
	if n < 0x80 {
		b[e.start] = byte(n)
	} else {
		var lb [binary.MaxVarintLen64]byte
		k := binary.PutUvarint(lb[:], uint64(n))
		b = append(b, lb[:k-1]...)
		copy(b[e.start+k:], b[e.start+1:len(b)-(k-1)])
		copy(b[e.start:], lb[:k])
	}
	e.raw = b
	if e.n == 0 || t < e.minTime {
		e.minTime = t
	}
	if e.n == 0 || t > e.maxTime {
		e.maxTime = t
	}
	e.n++
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func zig(v int64) uint64 { return uint64(v<<1) ^ uint64(v>>63) }

func unzig(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// appendEvent encodes ev; it keeps no reference to ev or its strings.
func (e *encoder) appendEvent(ev *event.Event) {
	s := e.state(ev.CgroupID)
	b := e.head(KindEvent, s)
	var fl uint64
	if s.evOK && s.pid == ev.PID && s.tid == ev.TID {
		fl |= efSameTask
	}
	if s.evOK && string(s.comm) == ev.Comm {
		fl |= efSameComm
	}
	switch c := ev.Container; {
	case s.evOK && c == nil && !s.hasCt:
		fl |= efSameCont
	case s.evOK && c != nil && s.hasCt && (c == s.ctPtr || encodedOf(c) == s.cont):
		fl |= efSameCont
		s.ctPtr = c
	case c != nil:
		fl |= efContainer
	}
	if ev.Path != "" {
		fl |= efPath
	}
	if ev.Path2 != "" {
		fl |= efPath2
	}
	if len(ev.Argv) > 0 {
		fl |= efArgv
	}
	if ev.Addr.Family != 0 {
		fl |= efAddr
	}
	wall := int64(0)
	if ev.Time.IsZero() {
		fl |= efZeroTime
	} else {
		wall = ev.Time.UnixNano()
	}
	if ev.Flags != 0 || ev.Count != 0 {
		fl |= efFlagsCount
	}
	if !s.evOK {
		fl |= efFirstSeq
	}
	if ev.CloneFlags != 0 {
		fl |= efCloneFlags
	}
	if len(ev.Env) > 0 {
		fl |= efEnv
	}
	b = binary.AppendUvarint(b, fl)
	if fl&efFirstSeq != 0 {
		b = binary.AppendUvarint(b, ev.Seq)
	} else {
		b = binary.AppendUvarint(b, zig(int64(ev.Seq-s.seq)))
	}
	b = binary.AppendUvarint(b, zig(int64(ev.KTime-e.ktime)))
	e.ktime = ev.KTime
	if fl&efZeroTime == 0 {
		off := wall - int64(ev.KTime)
		b = binary.AppendUvarint(b, zig(off-e.off))
		e.off = off
	}
	if fl&efSameTask == 0 {
		b = binary.AppendUvarint(b, uint64(ev.PID))
		b = binary.AppendUvarint(b, zig(int64(ev.TID)-int64(ev.PID)))
	}
	if fl&efSameComm == 0 {
		b = appendStr(b, ev.Comm)
	}
	b = binary.AppendUvarint(b, uint64(uint32(ev.Nr)))
	b = binary.AppendUvarint(b, zig(ev.Ret))
	var mask byte
	for i, a := range ev.Args {
		if a != 0 {
			mask |= 1 << i
		}
	}
	b = append(b, mask)
	for _, a := range ev.Args {
		if a != 0 {
			b = binary.AppendUvarint(b, a)
		}
	}
	if fl&efFlagsCount != 0 {
		b = binary.AppendUvarint(b, uint64(ev.Flags))
		b = binary.AppendUvarint(b, ev.Count)
	}
	if fl&efContainer != 0 {
		c := ev.Container
		b = appendStr(b, c.ID)
		b = appendStr(b, c.Name)
		b = appendStr(b, c.Pod)
		b = appendStr(b, c.Namespace)
		b = appendStr(b, c.Image)
	}
	if fl&efPath != 0 {
		b = appendStr(b, ev.Path)
	}
	if fl&efPath2 != 0 {
		b = appendStr(b, ev.Path2)
	}
	if fl&efArgv != 0 {
		b = binary.AppendUvarint(b, uint64(len(ev.Argv)))
		for _, a := range ev.Argv {
			b = appendStr(b, a)
		}
	}
	if fl&efAddr != 0 {
		a := &ev.Addr
		b = binary.AppendUvarint(b, uint64(a.Family))
		switch a.Family {
		case event.AFInet, event.AFInet6:
			if a.IP.Is4() {
				ip4 := a.IP.As4()
				b = append(b, 4)
				b = append(b, ip4[:]...)
			} else if a.IP.Is6() && a.IP.Zone() == "" {
				ip16 := a.IP.As16()
				b = append(b, 16)
				b = append(b, ip16[:]...)
			} else { // a zone, or no address: rare, may allocate
				ip, _ := a.IP.MarshalBinary()
				b = binary.AppendUvarint(b, uint64(len(ip)))
				b = append(b, ip...)
			}
			b = binary.LittleEndian.AppendUint16(b, a.Port)
		case event.AFUnix:
			b = appendStr(b, a.Path)
		}
	}
	if fl&efCloneFlags != 0 {
		b = binary.AppendUvarint(b, ev.CloneFlags)
	}
	if fl&efEnv != 0 {
		b = binary.AppendUvarint(b, uint64(len(ev.Env)))
		for _, a := range ev.Env {
			b = appendStr(b, a)
		}
	}
	// remember what the next event of this cgroup is coded against
	s.evOK = true
	s.pid, s.tid, s.seq = ev.PID, ev.TID, ev.Seq
	if fl&efSameComm == 0 {
		s.comm = append(s.comm[:0], ev.Comm...)
	}
	if fl&efSameCont == 0 {
		if c := ev.Container; c != nil {
			s.cont, s.hasCt, s.ctPtr = encodedOf(c), true, c
		} else {
			s.cont, s.hasCt, s.ctPtr = encodedContainer{}, false, nil
		}
	}
	e.commit(b, wall)
}

// appendOther encodes a record of a kind other than event; body is JSON.
func (e *encoder) appendOther(kind Kind, cg uint64, containerID string, t int64, body []byte) {
	s := e.state(cg)
	b := e.head(kind, s)
	b = binary.AppendUvarint(b, zig(t))
	b = appendStr(b, containerID)
	b = binary.AppendUvarint(b, uint64(len(body)))
	b = append(b, body...)
	e.commit(b, t)
}

// Record is one record read back from the log.
type Record struct {
	Kind        Kind
	Index       uint64 // position in the node's stream, from 1, contiguous
	CSeq        uint64 // per-container (per-cgroup) sequence number, from 1
	CgroupID    uint64
	ContainerID string
	Time        time.Time
	// Event is the syscall event of a KindEvent record.
	Event *event.Event
	// Body is the JSON body of the other kinds.
	Body json.RawMessage
	// Segment is the number of the segment file the record is in.
	Segment uint64
}

// cgDec is the decoder's per-cgroup state within a batch.
type cgDec struct {
	id   uint64
	cseq uint64
	pid  uint32
	tid  uint32
	seq  uint64
	comm string
	cont *event.Container
	evOK bool
}

// decoder reads a batch payload.
type decoder struct {
	p     []byte
	cgs   []cgDec
	ktime uint64
	off   int64
	// containers interns Container values so events of one container
	// share one *Container, across batches.
	containers map[encodedContainer]*event.Container
}

var errShort = errors.New("record cut short")

func (d *decoder) reset(p []byte) {
	d.p = p
	d.cgs = d.cgs[:0]
	d.ktime, d.off = 0, 0
}

func (d *decoder) uvarint() (uint64, error) {
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		return 0, errShort
	}
	d.p = d.p[n:]
	return v, nil
}

func (d *decoder) bytes() ([]byte, error) {
	n, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(d.p)) {
		return nil, errShort
	}
	b := d.p[:n]
	d.p = d.p[n:]
	return b, nil
}

func (d *decoder) str() (string, error) {
	b, err := d.bytes()
	return string(b), err
}

// next decodes the next record into r (r.Event is replaced, not reused:
// callers may keep it). It returns io.EOF-free errShort on bad data and
// done=true at the end of the payload.
func (d *decoder) next(r *Record) (done bool, err error) {
	if len(d.p) == 0 {
		return true, nil
	}
	n, err := d.uvarint()
	if err != nil {
		return false, err
	}
	if n > uint64(len(d.p)) || n == 0 {
		return false, fmt.Errorf("record length %d, %d bytes left: %w", n, len(d.p), errShort)
	}
	rest := d.p[n:]
	d.p = d.p[:n]
	defer func() { d.p = rest }()
	kind := Kind(d.p[0])
	d.p = d.p[1:]
	if !kind.Valid() {
		return false, fmt.Errorf("record kind %d unknown", kind)
	}
	ref, err := d.uvarint()
	if err != nil {
		return false, err
	}
	var s *cgDec
	if ref == 0 {
		id, err := d.uvarint()
		if err != nil {
			return false, err
		}
		cseq, err := d.uvarint()
		if err != nil {
			return false, err
		}
		d.cgs = append(d.cgs, cgDec{id: id, cseq: cseq})
		s = &d.cgs[len(d.cgs)-1]
	} else {
		if ref > uint64(len(d.cgs)) {
			return false, fmt.Errorf("cgroup reference %d of %d", ref, len(d.cgs))
		}
		s = &d.cgs[ref-1]
		s.cseq++
	}
	*r = Record{Kind: kind, Index: r.Index, Segment: r.Segment, CgroupID: s.id, CSeq: s.cseq}
	if kind != KindEvent {
		t, err := d.uvarint()
		if err != nil {
			return false, err
		}
		r.Time = time.Unix(0, unzig(t))
		if r.ContainerID, err = d.str(); err != nil {
			return false, err
		}
		body, err := d.bytes()
		if err != nil {
			return false, err
		}
		r.Body = append(json.RawMessage(nil), body...)
		return false, nil
	}
	ev, err := d.event(s)
	if err != nil {
		return false, err
	}
	r.Event = ev
	r.Time = ev.Time
	if ev.Container != nil {
		r.ContainerID = ev.Container.ID
	}
	return false, nil
}

func (d *decoder) event(s *cgDec) (*event.Event, error) {
	ev := &event.Event{CgroupID: s.id}
	fl, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if fl&(efSameTask|efSameComm|efSameCont) != 0 && !s.evOK {
		return nil, errors.New("event refers to a previous event of its cgroup that the batch does not hold")
	}
	v, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if fl&efFirstSeq != 0 {
		ev.Seq = v
	} else {
		ev.Seq = s.seq + uint64(unzig(v))
	}
	if v, err = d.uvarint(); err != nil {
		return nil, err
	}
	ev.KTime = d.ktime + uint64(unzig(v))
	d.ktime = ev.KTime
	if fl&efZeroTime == 0 {
		if v, err = d.uvarint(); err != nil {
			return nil, err
		}
		d.off += unzig(v)
		ev.Time = time.Unix(0, d.off+int64(ev.KTime))
	}
	if fl&efSameTask != 0 {
		ev.PID, ev.TID = s.pid, s.tid
	} else {
		if v, err = d.uvarint(); err != nil {
			return nil, err
		}
		ev.PID = uint32(v)
		if v, err = d.uvarint(); err != nil {
			return nil, err
		}
		ev.TID = uint32(int64(ev.PID) + unzig(v))
	}
	if fl&efSameComm != 0 {
		ev.Comm = s.comm
	} else if ev.Comm, err = d.str(); err != nil {
		return nil, err
	}
	if v, err = d.uvarint(); err != nil {
		return nil, err
	}
	ev.Nr = int32(uint32(v))
	if v, err = d.uvarint(); err != nil {
		return nil, err
	}
	ev.Ret = unzig(v)
	if len(d.p) < 1 {
		return nil, errShort
	}
	mask := d.p[0]
	d.p = d.p[1:]
	for i := range ev.Args {
		if mask&(1<<i) != 0 {
			if ev.Args[i], err = d.uvarint(); err != nil {
				return nil, err
			}
		}
	}
	if fl&efFlagsCount != 0 {
		if v, err = d.uvarint(); err != nil {
			return nil, err
		}
		ev.Flags = event.Flags(v)
		if ev.Count, err = d.uvarint(); err != nil {
			return nil, err
		}
	}
	switch {
	case fl&efSameCont != 0:
		ev.Container = s.cont
	case fl&efContainer != 0:
		var c event.Container
		for _, p := range []*string{&c.ID, &c.Name, &c.Pod, &c.Namespace, &c.Image} {
			if *p, err = d.str(); err != nil {
				return nil, err
			}
		}
		ev.Container = d.intern(c)
	}
	if fl&efPath != 0 {
		if ev.Path, err = d.str(); err != nil {
			return nil, err
		}
	}
	if fl&efPath2 != 0 {
		if ev.Path2, err = d.str(); err != nil {
			return nil, err
		}
	}
	if fl&efArgv != 0 {
		if v, err = d.uvarint(); err != nil {
			return nil, err
		}
		if v > uint64(len(d.p)) {
			return nil, errShort
		}
		ev.Argv = make([]string, v)
		for i := range ev.Argv {
			if ev.Argv[i], err = d.str(); err != nil {
				return nil, err
			}
		}
	}
	if fl&efAddr != 0 {
		if v, err = d.uvarint(); err != nil {
			return nil, err
		}
		ev.Addr.Family = uint16(v)
		switch ev.Addr.Family {
		case event.AFInet, event.AFInet6:
			if len(d.p) < 1 {
				return nil, errShort
			}
			switch d.p[0] {
			case 4:
				if len(d.p) < 5 {
					return nil, errShort
				}
				ev.Addr.IP = netip.AddrFrom4([4]byte(d.p[1:5]))
				d.p = d.p[5:]
			case 16:
				if len(d.p) < 17 {
					return nil, errShort
				}
				ev.Addr.IP = netip.AddrFrom16([16]byte(d.p[1:17]))
				d.p = d.p[17:]
			default:
				b, err := d.bytes()
				if err != nil {
					return nil, err
				}
				if err := ev.Addr.IP.UnmarshalBinary(b); err != nil {
					return nil, fmt.Errorf("event address: %w", err)
				}
			}
			if len(d.p) < 2 {
				return nil, errShort
			}
			ev.Addr.Port = binary.LittleEndian.Uint16(d.p)
			d.p = d.p[2:]
		case event.AFUnix:
			if ev.Addr.Path, err = d.str(); err != nil {
				return nil, err
			}
		}
	}
	if fl&efCloneFlags != 0 {
		if ev.CloneFlags, err = d.uvarint(); err != nil {
			return nil, err
		}
	}
	if fl&efEnv != 0 {
		if v, err = d.uvarint(); err != nil {
			return nil, err
		}
		if v > uint64(len(d.p)) {
			return nil, errShort
		}
		ev.Env = make([]string, v)
		for i := range ev.Env {
			if ev.Env[i], err = d.str(); err != nil {
				return nil, err
			}
		}
	}
	if len(d.p) != 0 {
		return nil, fmt.Errorf("event record has %d bytes left over", len(d.p))
	}
	s.evOK = true
	s.pid, s.tid, s.seq, s.comm, s.cont = ev.PID, ev.TID, ev.Seq, ev.Comm, ev.Container
	return ev, nil
}

func (d *decoder) intern(c event.Container) *event.Container {
	if d.containers == nil {
		d.containers = make(map[encodedContainer]*event.Container)
	}
	k := encodedOf(&c)
	if p := d.containers[k]; p != nil {
		return p
	}
	p := &c
	d.containers[k] = p
	return p
}

// encodedContainer is the part of an event's container that the event
// record holds. The pod's uid and labels and the node are not in it (a
// new field would change the record's format): the lifecycle record of
// the container's start holds the pod's uid.
type encodedContainer struct{ id, name, pod, namespace, image string }

func encodedOf(c *event.Container) encodedContainer {
	return encodedContainer{c.ID, c.Name, c.Pod, c.Namespace, c.Image}
}
