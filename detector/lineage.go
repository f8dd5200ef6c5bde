package detector

import (
	"hash/maphash"
	"strconv"
	"strings"

	"vigil.dev/vigil/event"
)

// lineage is what the rules know about a process's origin and memory
// beyond procState's basics: its parent's executable, whether it or its
// parent accepted inbound connections (a server), and the memory it made
// writable recently (for write-then-execute).
type lineage struct {
	anc       [maxAncestors]string // executables of the parent, grandparent… when forked; "" unknown
	accepted  bool                 // the process accepted a connection (accept, accept4)
	paccepted bool                 // its parent had, when it forked this process
	wr        [8]memRange
	wrNext    uint8
	// code is a file the container wrote that this process mapped for
	// execution (mmap with PROT_EXEC of the file, or mprotect adding
	// PROT_EXEC to a mapping of it): a shared object loaded by
	// LD_PRELOAD, dlopen, an openssl engine, sqlite3's .load. Its
	// executable no longer says what runs (exeGate). "" none; kept until
	// exec, inherited across fork.
	code string
	// fmaps are the latest mappings, without PROT_EXEC, of files the
	// container wrote, for mprotect to find.
	fmaps  [4]fileMap
	fmNext uint8
	// spliced is the fd (plus one; 0 none) of the pipe into which this
	// process last spliced pages of a file it opened: a write into that
	// pipe before it is closed lands behind the file's pages (Dirty Pipe
	// wrote the page cache so).
	spliced int32
}

// fileMap is memory mapped from a file the container wrote, or from a
// memfd (path memfdPath).
type fileMap struct {
	start, end uint64
	path       string
	fd         int32 // the memfd's fd when it was mapped
	memfd      uint8 // its memfd bits then, and memfdPrivate
}

// memfdPrivate marks a private mapping of a memfd (fileMap.memfd).
const memfdPrivate = 0x80

// memRange is memory a process mapped anonymous and writable, or made
// writable with mprotect.
type memRange struct{ start, end uint64 }

// Syscalls lineage and the written-file table follow, beyond procTracked.
var (
	nrMmap         = nativeNr("mmap")
	nrMprotect     = nativeNr("mprotect")
	nrPkeyMprotect = nativeNr("pkey_mprotect")
	nrRename       = nativeNr("rename")
	nrRenameat     = nativeNr("renameat")
	nrRenameat2    = nativeNr("renameat2")
	nrMunmap       = nativeNr("munmap")
	nrLink         = nativeNr("link")
	nrLinkat       = nativeNr("linkat")
	nrSplice       = nativeNr("splice")
	// calls that put bytes in a file through its fd: the fd argument's
	// index (fillFd)
	fillFd     = buildFillFd()
	linTracked = buildLinTracked()
)

func buildFillFd() []int8 {
	t := make([]int8, event.NativeABI().MaxNr()+1)
	for i := range t {
		t[i] = -1
	}
	for name, arg := range map[string]int8{"write": 0, "pwrite64": 0, "writev": 0, "pwritev": 0, "pwritev2": 0,
		"sendfile": 0, "copy_file_range": 2, "splice": 2} {
		if nr := nativeNr(name); nr >= 0 {
			t[nr] = arg
		}
	}
	return t
}

func buildLinTracked() []bool {
	t := make([]bool, event.NativeABI().MaxNr()+1)
	for nr, arg := range fillFd {
		t[nr] = arg >= 0 || connIO[nr]
	}
	for _, nr := range []int32{nrMmap, nrMprotect, nrPkeyMprotect, nrMunmap, nrRename, nrRenameat, nrRenameat2, nrLink, nrLinkat} {
		if nr >= 0 {
			t[nr] = true
		}
	}
	return t
}

const (
	protWrite  = 0x2
	protExec   = 0x4
	mapAnon    = 0x20
	mapType    = 0x3 // MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE
	mapPrivate = 0x2
	maxWritten = 1024 // written files remembered per cgroup
	// maxAncestors is how many ancestors' executables a process keeps:
	// enough for apt-get > dpkg > maintainer script > sh > tool.
	maxAncestors = 6
)

func (l *lineage) addWritable(start, length uint64) {
	if length == 0 || start+length < start {
		return
	}
	l.wr[l.wrNext%uint8(len(l.wr))] = memRange{start, start + length}
	l.wrNext++
}

func (l *lineage) addFileMap(start, length uint64, path string, fd int32, memfd uint8) {
	if length == 0 || start+length < start {
		return
	}
	m := &l.fmaps[l.fmNext%uint8(len(l.fmaps))]
	m.start, m.end = start, start+length
	if m.path != path {
		m.path = cloneString(path)
	}
	m.fd, m.memfd = fd, memfd
	l.fmNext++
}

// unmapFiles forgets the file mappings that [start, start+length) overlaps
// (munmap, or a new mapping over them).
func (l *lineage) unmapFiles(start, length uint64) {
	end := start + length
	if end < start {
		end = ^uint64(0)
	}
	for i := range l.fmaps {
		if m := &l.fmaps[i]; m.end > m.start && m.start < end && start < m.end {
			m.start, m.end = 0, 0
		}
	}
}

// fileMapped returns the written file a mapping overlapping
// [start, start+length) was made from, or "".
func (l *lineage) fileMapped(start, length uint64) string {
	end := start + length
	if end < start {
		end = ^uint64(0)
	}
	for _, m := range l.fmaps {
		if m.end > m.start && m.start < end && start < m.end && m.memfd == 0 {
			return m.path
		}
	}
	return ""
}

// memfdMapped returns the mapping of a memfd that [start, start+length)
// overlaps.
func (l *lineage) memfdMapped(start, length uint64) (fileMap, bool) {
	end := start + length
	if end < start {
		end = ^uint64(0)
	}
	for _, m := range l.fmaps {
		if m.end > m.start && m.start < end && start < m.end && m.memfd != 0 {
			return m, true
		}
	}
	return fileMap{}, false
}

// memfdCode reports whether ev maps code from a memfd that was filled
// through its fd (write, pwrite, sendfile…) or mapped privately: mmap
// with PROT_EXEC of the memfd, or mprotect adding PROT_EXEC to memory
// mapped from one. That is loading code that came in as bytes, without
// an exec: ld.so's mappings of a dlopen'd /proc/self/fd/N, a loader's own
// mmap. A memfd filled through another mapping, shared and writable, and
// mapped shared for execution is a JIT's W^X double mapping (.NET's
// doublemapper, libffi's closures): it does not count.
func (p *procState) memfdCode(ev *event.Event) bool {
	if ev.Args[2]&protExec == 0 {
		return false
	}
	switch ev.Nr {
	case nrMmap:
		if ev.Ret <= 0 || ev.Args[3]&mapAnon != 0 || p.fds == nil {
			return false
		}
		m := p.fds.memfd(int32(ev.Args[4]))
		return m != 0 && (m&memfdFilled != 0 || ev.Args[3]&mapType == mapPrivate)
	case nrMprotect, nrPkeyMprotect:
		if ev.Ret != 0 {
			return false
		}
		fm, ok := p.lin.memfdMapped(ev.Args[0], ev.Args[1])
		if !ok {
			return false
		}
		if fm.memfd&(memfdFilled|memfdPrivate) != 0 {
			return true
		}
		// filled after it was mapped
		return p.fds != nil && p.fds.memfd(fm.fd)&memfdFilled != 0
	}
	return false
}

// writable reports whether addr lies in memory recently made writable.
func (l *lineage) writable(addr uint64) bool {
	for _, r := range l.wr {
		if r.end > r.start && addr >= r.start && addr < r.end {
			return true
		}
	}
	return false
}

// writtenFiles remembers the files a cgroup's processes created or wrote
// (and where renames moved them), with the writer's executable, so an
// exec of one of them is known as new code (drift). Bounded: past
// maxWritten paths the one put first goes (a path written again keeps
// its place).
//
// A tar of thousands of files puts a new path and evicts the oldest on
// every file it creates, so the table is built for that: an open-addressing
// hash table (linear probing, deletion by backward shift) of indexes into
// an array of entries linked in the order they were put. A path is hashed
// once per put; an evicted entry is found by its stored hash, without
// hashing or comparing its path; the new path takes the evicted entry's
// place and the memory of its key, so a full table allocates nothing.
type writtenFiles struct {
	slots []writtenSlot // len a power of two, at most half full
	ents  []writtenFile // entries; slots and links index them
	// newest and oldest are the ends of the list of entries in the order
	// they were put (-1: empty); free lists removed entries, linked by
	// next, whose key memory the next new path takes.
	newest, oldest, free int32
	n                    int
}

// writtenSlot is a slot of the hash table: the high half of its entry's
// hash, to skip most other paths without reading their entry, and the
// entry's index plus one (0: an empty slot).
type writtenSlot struct {
	tag uint32
	ent int32
}

// writtenFile is a written path's entry: its path (the table's own
// memory), its writer's executable ("": unknown), the path's hash and its
// neighbours in put order (-1: none).
type writtenFile struct {
	key        []byte
	exe        string
	hash       uint64
	prev, next int32
}

// writtenSeed seeds the written-file tables' path hash.
var writtenSeed = maphash.MakeSeed()

// writtenMinSlots is a new table's size: it doubles as paths come.
const writtenMinSlots = 16

// len is the number of paths held.
func (w *writtenFiles) len() int { return w.n }

// find returns the slot holding path, or the empty slot where the probe
// for it ended, and whether path is there.
func (w *writtenFiles) find(path string, h uint64) (int, bool) {
	mask := len(w.slots) - 1
	tag := uint32(h >> 32)
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := w.slots[i]
		if s.ent == 0 {
			return i, false
		}
		if s.tag == tag && string(w.ents[s.ent-1].key) == path {
			return i, true
		}
	}
}

func (w *writtenFiles) writer(path string) (string, bool) {
	if w.n == 0 {
		return "", false
	}
	i, ok := w.find(path, maphash.String(writtenSeed, path))
	if !ok {
		return "", false
	}
	return w.ents[w.slots[i].ent-1].exe, true
}

func (w *writtenFiles) put(path, exe string) {
	if path == "" || path[0] != '/' || len(path) > maxPathLen {
		return
	}
	if w.slots == nil {
		w.slots = make([]writtenSlot, writtenMinSlots)
		w.newest, w.oldest, w.free = -1, -1, -1
	}
	h := maphash.String(writtenSeed, path)
	i, ok := w.find(path, h)
	if ok {
		w.ents[w.slots[i].ent-1].exe = exe
		return
	}
	var e int32
	switch {
	case w.n >= maxWritten:
		// the oldest entry leaves and its place serves path
		e = w.oldest
		w.unlink(e)
		w.deleteSlot(w.slotOf(e))
		i, _ = w.find(path, h) // the deletion may have moved the probe's end
	case w.free >= 0:
		e = w.free
		w.free = w.ents[e].next
	default:
		e = int32(len(w.ents))
		w.ents = append(w.ents, writtenFile{})
	}
	if 2*(w.n+1) > len(w.slots) {
		w.grow()
		i, _ = w.find(path, h)
	}
	ent := &w.ents[e]
	if cap(ent.key) < len(path) {
		ent.key = make([]byte, 0, (len(path)+31)&^31)
	}
	ent.key = append(ent.key[:0], path...)
	ent.exe, ent.hash = exe, h
	ent.prev, ent.next = -1, w.newest
	if w.newest >= 0 {
		w.ents[w.newest].prev = e
	} else {
		w.oldest = e
	}
	w.newest = e
	w.slots[i] = writtenSlot{tag: uint32(h >> 32), ent: e + 1}
	w.n++
}

// remove forgets path.
func (w *writtenFiles) remove(path string) {
	if w.n == 0 {
		return
	}
	i, ok := w.find(path, maphash.String(writtenSeed, path))
	if !ok {
		return
	}
	e := w.slots[i].ent - 1
	w.unlink(e)
	w.deleteSlot(i)
	w.ents[e].exe = ""
	w.ents[e].next = w.free
	w.free = e
}

// unlink takes entry e out of the put order and the count.
func (w *writtenFiles) unlink(e int32) {
	ent := &w.ents[e]
	if ent.prev >= 0 {
		w.ents[ent.prev].next = ent.next
	} else {
		w.newest = ent.next
	}
	if ent.next >= 0 {
		w.ents[ent.next].prev = ent.prev
	} else {
		w.oldest = ent.prev
	}
	w.n--
}

// slotOf is the slot of entry e, found by its stored hash.
func (w *writtenFiles) slotOf(e int32) int {
	mask := len(w.slots) - 1
	for i := int(w.ents[e].hash) & mask; ; i = (i + 1) & mask {
		if w.slots[i].ent == e+1 {
			return i
		}
	}
}

// deleteSlot empties slot i and moves back the entries after it whose
// probe passed through it, so every probe still ends at an empty slot
// only after its path's slot.
func (w *writtenFiles) deleteSlot(i int) {
	mask := len(w.slots) - 1
	for j := (i + 1) & mask; w.slots[j].ent != 0; j = (j + 1) & mask {
		home := int(w.ents[w.slots[j].ent-1].hash) & mask
		// the entry at j may move to i unless its home lies in (i, j]
		if (j-home)&mask >= (j-i)&mask {
			w.slots[i] = w.slots[j]
			i = j
		}
	}
	w.slots[i] = writtenSlot{}
}

// grow doubles the slots and places every entry again.
func (w *writtenFiles) grow() {
	old := w.slots
	w.slots = make([]writtenSlot, 2*len(old))
	mask := len(w.slots) - 1
	for _, s := range old {
		if s.ent == 0 {
			continue
		}
		i := int(w.ents[s.ent-1].hash) & mask
		for w.slots[i].ent != 0 {
			i = (i + 1) & mask
		}
		w.slots[i] = s
	}
}

// each calls f for every path and its writer, from the first put to the
// last.
func (w *writtenFiles) each(f func(path, exe string)) {
	if w.n == 0 {
		return
	}
	for e := w.oldest; e >= 0; e = w.ents[e].prev {
		f(string(w.ents[e].key), w.ents[e].exe)
	}
}

// mapFile follows a successful mmap of a file (ret is the address): one
// the container wrote, mapped with PROT_EXEC, becomes the process's code;
// mapped otherwise, it is remembered for a later mprotect. The file is
// known by the path its fd (arg4) was opened with.
func mapFile(cg *cgState, ev *event.Event) {
	p := cg.procs.get(ev.PID, false)
	if p == nil {
		return
	}
	addr, length := uint64(ev.Ret), ev.Args[1]
	p.lin.unmapFiles(addr, length) // a mapping over them replaces them
	if ev.Args[3]&mapAnon != 0 {
		return
	}
	if p.fds != nil && ev.Args[2]&protExec == 0 {
		if m := p.fds.memfd(int32(ev.Args[4])); m != 0 {
			if ev.Args[3]&mapType == mapPrivate {
				m |= memfdPrivate
			}
			p.lin.addFileMap(addr, length, memfdPath, int32(ev.Args[4]), m)
			return
		}
	}
	if p.lin.code != "" {
		return
	}
	path := p.fdPath(int32(ev.Args[4]))
	if path == "" {
		return
	}
	if _, written := cg.written.writer(path); !written {
		return
	}
	if ev.Args[2]&protExec != 0 {
		p.lin.code = cloneString(path)
		return
	}
	p.lin.addFileMap(addr, length, path, -1, 0)
}

// fillMemfd marks fd, when it is a memfd, as filled through its fd.
func fillMemfd(ps *procs, pid uint32, fd int32) {
	p := ps.l.peek(pid)
	if p == nil || p.fds == nil {
		return
	}
	// the file's, so in a table shared with a forked child too
	if e := p.fds.l.peek(fd); e != nil && e.memfd != 0 {
		e.memfd |= memfdFilled
	}
}

// trackLineage applies an event's effect on lineage and written files,
// after procs.update (the child of a fork exists, the exe of an exec is
// set). Paths are normalised.
func trackLineage(cg *cgState, ev *event.Event) {
	nr, ret := ev.Nr, ev.Ret
	ps := &cg.procs
	trackConns(ps, ev)
	if nr == nrSplice && ret > 0 {
		noteSplice(ps, ev)
	}
	if fillFd[nr] >= 0 || connIO[nr] {
		if ps.memfd && fillFd[nr] >= 0 && ret > 0 {
			fillMemfd(ps, ev.PID, int32(ev.Args[fillFd[nr]]))
		}
		return
	}
	switch nr {
	case nrAccept, nrAccept4:
		if ret >= 0 {
			ps.get(ev.PID, true).lin.accepted = true
		}
	case nrClone, nrClone3, nrFork, nrVfork:
		if ret <= 0 || isThreadClone(ev) {
			return
		}
		parent := ps.get(ev.PID, false)
		if parent == nil {
			return
		}
		var anc [maxAncestors]string
		anc[0] = parent.exe
		copy(anc[1:], parent.lin.anc[:])
		acc := parent.lin.accepted
		code, fmaps := parent.lin.code, parent.lin.fmaps
		child := ps.get(uint32(ret), true)
		child.lin.anc, child.lin.paccepted = anc, acc
		// a copy of the parent's address space
		if child.lin.code == "" {
			child.lin.code = code
		}
		child.lin.fmaps = fmaps
	case nrExecve, nrExecveat:
		if ret == 0 && ev.Flags&event.NoReturn == 0 {
			if p := ps.get(ev.PID, false); p != nil {
				// a new address space
				p.lin.wr, p.lin.wrNext = [8]memRange{}, 0
				p.lin.spliced = 0 // what it spliced was the old image's
				p.lin.code, p.lin.fmaps, p.lin.fmNext = "", [4]fileMap{}, 0
			}
		}
	case nrMmap:
		if ret > 0 && ev.Args[3]&mapAnon != 0 && ev.Args[2]&protWrite != 0 && ev.Args[2]&protExec == 0 {
			ps.get(ev.PID, true).lin.addWritable(uint64(ret), ev.Args[1])
		}
		if ret > 0 {
			mapFile(cg, ev)
		}
	case nrMunmap:
		if ret == 0 {
			if p := ps.get(ev.PID, false); p != nil {
				p.lin.unmapFiles(ev.Args[0], ev.Args[1])
			}
		}
	case nrMprotect, nrPkeyMprotect:
		if ret == 0 && ev.Args[2]&protWrite != 0 && ev.Args[2]&protExec == 0 {
			ps.get(ev.PID, true).lin.addWritable(ev.Args[0], ev.Args[1])
		}
		if ret == 0 && ev.Args[2]&protExec != 0 {
			if p := ps.get(ev.PID, false); p != nil && p.lin.code == "" {
				p.lin.code = p.lin.fileMapped(ev.Args[0], ev.Args[1])
			}
		}
	case nrOpen, nrOpenat, nrCreat:
		if ret < 0 || ev.Path == "" {
			return
		}
		var fl uint64
		switch nr {
		case nrOpen:
			fl = ev.Args[1]
		case nrOpenat:
			fl = ev.Args[2]
		}
		if nr == nrCreat || fl&(0x1|0x2|0x40|0x200) != 0 {
			exe := ""
			if p := ps.get(ev.PID, false); p != nil {
				exe = p.exe
			}
			cg.written.put(ev.Path, exe)
		}
	case nrRename, nrRenameat, nrRenameat2:
		if ret == 0 && ev.Path2 != "" {
			if exe, ok := cg.written.writer(ev.Path); ok {
				cg.written.remove(ev.Path)
				cg.written.put(ev.Path2, exe)
			}
		}
	case nrLink, nrLinkat:
		// a hard link is the same file under a new name (ln /tmp/m.so
		// /usr/local/lib/libz.so.1)
		if ret == 0 && ev.Path2 != "" {
			if exe, ok := cg.written.writer(linkSource(ps, ev)); ok {
				cg.written.put(ev.Path2, exe)
			}
		}
	}
}

// atEmptyPath is linkat's (and the *at calls') flag to act on the fd
// itself when the path is empty.
const atEmptyPath = 0x1000

// linkSource is the file a successful link or linkat gave a new name: its
// path, or the path the process's fd was opened with when the call names
// an fd rather than a path: linkat(fd, "", ..., AT_EMPTY_PATH), or
// /proc/self/fd/N with AT_SYMLINK_FOLLOW. That is how a file opened with
// O_TMPFILE (no name, "/tmp/#12345" to the kernel) gets one after it was
// written (open(2)).
func linkSource(ps *procs, ev *event.Event) string {
	fd, ok := int32(-1), false
	switch {
	case ev.Nr == nrLinkat && ev.Path == "" && ev.Args[4]&atEmptyPath != 0:
		fd, ok = int32(ev.Args[0]), true
	case ev.Path != "":
		fd, ok = ownFdLink(ev.Path, ev.PID)
	}
	if !ok {
		return ev.Path
	}
	if p := ps.get(ev.PID, false); p != nil {
		return p.fdPath(fd)
	}
	return ""
}

// ownFdLink reports the fd a path names when it is one of the process's
// own fd links: /proc/self/fd/N, /proc/thread-self/fd/N, /dev/fd/N, or
// /proc/PID/fd/N with the process's pid as the tracer records it.
func ownFdLink(p string, pid uint32) (int32, bool) {
	var rest string
	switch {
	case strings.HasPrefix(p, "/proc/self/fd/"):
		rest = p[len("/proc/self/fd/"):]
	case strings.HasPrefix(p, "/proc/thread-self/fd/"):
		rest = p[len("/proc/thread-self/fd/"):]
	case strings.HasPrefix(p, "/dev/fd/"):
		rest = p[len("/dev/fd/"):]
	case strings.HasPrefix(p, "/proc/"):
		num, after, found := strings.Cut(p[len("/proc/"):], "/fd/")
		if !found || num != strconv.FormatUint(uint64(pid), 10) {
			return -1, false
		}
		rest = after
	default:
		return -1, false
	}
	fd, err := strconv.ParseUint(rest, 10, 31)
	if err != nil {
		return -1, false
	}
	return int32(fd), true
}

// noteSplice remembers the pipe a successful splice filled from a file
// the process opened (an fd with a path that is no socket: splice needs a
// pipe on one side, so the other is the pipe); a splice into it from
// anything else leaves the mark.
func noteSplice(ps *procs, ev *event.Event) {
	p := ps.get(ev.PID, false)
	if p == nil {
		return
	}
	in := int64(ev.Args[0])
	if in < 0 || in > 1<<30 || p.isSocket(in) || p.fdPath(int32(in)) == "" {
		return
	}
	if out := int64(ev.Args[2]); out >= 0 && out < 1<<30 {
		p.lin.spliced = int32(out) + 1
	}
}

// splicedInto reports whether fd is the pipe the process last spliced a
// file's pages into, still open: not closed, nor replaced by a file it
// opened or a socket since.
func (p *procState) splicedInto(fd uint64) bool {
	if p.lin.spliced == 0 || fd >= 1<<30 || int32(fd)+1 != p.lin.spliced {
		return false
	}
	return !p.isSocket(int64(fd)) && p.fdPath(int32(fd)) == ""
}
