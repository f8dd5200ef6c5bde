package detector

import (
	"path"
	"strings"

	"vigil.dev/vigil/event"
)

// Paths reach the rules normalised: `//`, `.` and `..` collapsed
// (lexically), and relative paths resolved against the process's working
// directory or the directory fd of an *at call, as the engine tracked them.
// A path the tracer already resolved in the kernel is absolute and clean,
// so it passes unchanged. A relative path whose base is unknown (a process
// seen only after it changed directory, an fd opened before vigil looked)
// stays relative, cleaned.

// maxPathLen bounds a path the engine keeps (a cwd, an fd's path); a
// longer one is forgotten (treated as unknown).
const maxPathLen = 4096

// pathRef says what a path argument is relative to.
type pathRef uint8

const (
	refNone    pathRef = iota // not normalised
	refCwd                    // the working directory
	refDir0                   // the directory fd in arg0 (AT_FDCWD: the working directory)
	refDir1                   // ... in arg1
	refDir2                   // ... in arg2
	refLinkDir                // a symlink's target: the directory of the link (Path2)
	refAbs                    // cleaned only when absolute (mount's source may be a device name)
)

// pathSpec says how an event's Path and Path2 resolve.
type pathSpec struct{ p1, p2 pathRef }

var pathSpecs = buildPathSpecs()

func buildPathSpecs() []pathSpec {
	t := make([]pathSpec, maxNativeNr+1)
	set := func(s pathSpec, names ...string) {
		for _, n := range names {
			if nr, ok := event.SyscallNr(n); ok && nr < len(t) {
				t[nr] = s
			}
		}
	}
	set(pathSpec{p1: refCwd}, "open", "creat", "stat", "lstat", "access", "chdir", "chroot", "unlink", "rmdir",
		"mkdir", "chmod", "chown", "lchown", "truncate", "readlink", "statfs", "mknod", "utime", "utimes", "acct",
		"swapon", "swapoff", "umount2", "uselib", "setxattr", "lsetxattr", "getxattr", "lgetxattr", "listxattr",
		"llistxattr", "removexattr", "lremovexattr", "execve", "inotify_add_watch")
	set(pathSpec{p1: refDir0}, "openat", "openat2", "newfstatat", "statx", "faccessat", "faccessat2", "mkdirat",
		"mknodat", "unlinkat", "fchmodat", "fchmodat2", "fchownat", "readlinkat", "utimensat", "futimesat",
		"name_to_handle_at", "open_tree", "mount_setattr", "move_mount", "execveat")
	set(pathSpec{p1: refCwd, p2: refCwd}, "rename", "link", "pivot_root")
	set(pathSpec{p1: refAbs, p2: refCwd}, "mount")
	set(pathSpec{p1: refDir0, p2: refDir2}, "renameat", "renameat2", "linkat")
	set(pathSpec{p1: refLinkDir, p2: refCwd}, "symlink")
	set(pathSpec{p1: refLinkDir, p2: refDir1}, "symlinkat")
	return t
}

// unixAddrSyscalls take a socket address whose unix path is relative to
// the working directory.
var unixAddrSyscalls = func() []bool {
	t := make([]bool, maxNativeNr+1)
	for _, n := range []string{"connect", "bind", "sendto", "sendmsg", "sendmmsg"} {
		if nr, ok := event.SyscallNr(n); ok && nr < len(t) {
			t[nr] = true
		}
	}
	return t
}()

// isClean reports whether p is an absolute path with no empty, `.` or `..`
// element and no trailing slash: the form normalisation produces. It
// allocates nothing and reads 8 bytes at a time.
func isClean(p string) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	if len(p) == 1 {
		return true
	}
	if p[len(p)-1] == '/' {
		return false
	}
	if !slashDotOrSlash(p) {
		return true
	}
	// a '/' is followed by '/' or '.': "//", ".", ".." or a dot file
	for i := 0; i+1 < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		switch {
		case p[i+1] == '/':
			return false
		case p[i+1] == '.':
			if i+2 == len(p) || p[i+2] == '/' {
				return false // "."
			}
			if p[i+2] == '.' && (i+3 == len(p) || p[i+3] == '/') {
				return false // ".."
			}
		}
	}
	return true
}

const (
	lows  = 0x0101010101010101
	highs = 0x8080808080808080
)

// zeroBytes has the high bit set in (at least) every zero byte of x; a
// byte above a zero one may be marked too, which only costs a slow check.
func zeroBytes(x uint64) uint64 { return (x - lows) & ^x & highs }

func load64(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// slashDotOrSlash reports whether some '/' of p may be followed by '/' or
// '.' (false positives are allowed, false negatives not).
func slashDotOrSlash(p string) bool {
	i := 0
	for ; i+9 <= len(p); i += 8 {
		w, next := load64(p, i), load64(p, i+1)
		slash := zeroBytes(w ^ (lows * '/'))
		after := zeroBytes(next^(lows*'/')) | zeroBytes(next^(lows*'.'))
		if slash&after != 0 {
			return true
		}
	}
	for ; i+1 < len(p); i++ {
		if p[i] == '/' && (p[i+1] == '/' || p[i+1] == '.') {
			return true
		}
	}
	return false
}

// resolve returns p made absolute against base (an absolute clean path, or
// "" when unknown) and cleaned. A clean absolute p is returned as is, so
// the common case allocates nothing. The engine resolves into its
// pathBuf (pathBuf.resolve), which allocates nothing at all.
func resolve(base, p string) string {
	var pb pathBuf
	return pb.resolve(base, p)
}

// pathBuf is the memory of the paths normalisation makes for one event:
// they are views of it, valid until its next reset (the engine resets it
// for every event). The engine copies whatever it keeps of an event's
// paths, as it copies the event's own strings, which the caller reuses.
type pathBuf struct{ b []byte }

func (pb *pathBuf) reset() { pb.b = pb.b[:0] }

// view returns the bytes appended since start as a string. Appends after
// it leave it as it is (a new array keeps the old one alive for it).
func (pb *pathBuf) view(start int) string { return unsafeString(pb.b[start:]) }

// resolve is resolve, made in pb's memory (a clean absolute p is p).
func (pb *pathBuf) resolve(base, p string) string {
	if p == "" {
		return p
	}
	if p[0] == '/' {
		if isClean(p) {
			return p
		}
		return pb.clean("", p)
	}
	if base == "" {
		return pb.clean("", p)
	}
	if isClean(base) {
		// nothing to clean but a leading "./" (tar names the files of its
		// archive so): a file name under a known directory, the common
		// case of *at calls
		q := p
		for len(q) >= 2 && q[0] == '.' && q[1] == '/' {
			q = strings.TrimLeft(q[2:], "/")
		}
		if q == "" || q == "." {
			return pb.clean(base, "")
		}
		if relClean(q) {
			start := len(pb.b)
			pb.b = append(pb.b, base...)
			if base != "/" {
				pb.b = append(pb.b, '/')
			}
			pb.b = append(pb.b, q...)
			return pb.view(start)
		}
	}
	return pb.clean(base, p)
}

// clean returns path.Clean(base + "/" + p), or path.Clean(p) when base is
// "", made in pb's memory.
func (pb *pathBuf) clean(base, p string) string {
	start := len(pb.b)
	if base != "" {
		pb.b = append(pb.b, base...)
		pb.b = append(pb.b, '/')
	}
	pb.b = append(pb.b, p...)
	n := cleanInPlace(pb.b[start:])
	pb.b = pb.b[:start+n]
	return pb.view(start)
}

// cleanInPlace does to the path in b (not empty) what path.Clean does to
// it, in place, and returns the clean path's length. path.Clean's steps,
// writing behind where they read: a cleaned path is never longer than
// what has been read of it, except "" which becomes "." (and b holds a
// byte for it).
func cleanInPlace(b []byte) int {
	n := len(b)
	rooted := b[0] == '/'
	r, w, dotdot := 0, 0, 0
	if rooted {
		r, w, dotdot = 1, 1, 1
	}
	for r < n {
		switch {
		case b[r] == '/':
			// empty path element
			r++
		case b[r] == '.' && (r+1 == n || b[r+1] == '/'):
			// . element
			r++
		case b[r] == '.' && b[r+1] == '.' && (r+2 == n || b[r+2] == '/'):
			// .. element: remove to last /
			r += 2
			switch {
			case w > dotdot:
				// can backtrack
				w--
				for w > dotdot && b[w] != '/' {
					w--
				}
			case !rooted:
				// cannot backtrack, but not rooted, so append .. element.
				if w > 0 {
					b[w] = '/'
					w++
				}
				b[w], b[w+1] = '.', '.'
				w += 2
				dotdot = w
			}
		default:
			// real path element: add slash if needed
			if rooted && w != 1 || !rooted && w != 0 {
				b[w] = '/'
				w++
			}
			for ; r < n && b[r] != '/'; r++ {
				b[w] = b[r]
				w++
			}
		}
	}
	if w == 0 {
		b[0] = '.'
		return 1
	}
	return w
}

// relClean reports whether a relative path needs no cleaning: no empty,
// `.` or `..` element and no trailing slash.
func relClean(p string) bool {
	if p == "" || p[len(p)-1] == '/' {
		return false
	}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if el := p[start:i]; el == "" || el == "." || el == ".." {
				return false
			}
			start = i + 1
		}
	}
	return true
}

// selfAliased reports whether p starts with the process's own /proc
// directory (unaliasSelf may rewrite it). The kernel names such files by
// pid: only a path the process spelled starts so.
func selfAliased(p string) bool {
	return strings.HasPrefix(p, "/proc/self/") || strings.HasPrefix(p, "/proc/thread-self/")
}

// unaliasSelf rewrites the process's own /proc aliases at the head of a
// path it passed to what they name: /proc/self/root/X and
// /proc/thread-self/root/X are /X (the process's root), /proc/self/cwd/X
// is X below its working directory when that is known. So rules see
// /proc/self/root/proc/1/environ as the /proc/1/environ it is, and not as
// an entry of /proc/self. Other processes' aliases are left as they are:
// rules look for them.
func unaliasSelf(p, cwd string) string {
	for range 8 { // a cwd spelled through the aliases cannot loop
		var rest string
		var ok bool
		switch {
		case strings.HasPrefix(p, "/proc/self/root/") || p == "/proc/self/root":
			rest, ok = strings.CutPrefix(p, "/proc/self/root")
			p = "/" + strings.TrimPrefix(rest, "/")
		case strings.HasPrefix(p, "/proc/thread-self/root/") || p == "/proc/thread-self/root":
			rest, ok = strings.CutPrefix(p, "/proc/thread-self/root")
			p = "/" + strings.TrimPrefix(rest, "/")
		case cwd != "" && (strings.HasPrefix(p, "/proc/self/cwd/") || p == "/proc/self/cwd"):
			rest, ok = strings.CutPrefix(p, "/proc/self/cwd")
			p = resolve(cwd, "."+rest)
		}
		if !ok {
			return p
		}
	}
	return p
}

// procRef looks a process up when a relative path first needs it.
type procRef struct {
	ps     *procs
	pid    uint32
	p      *procState
	looked bool
}

func (r *procRef) get() *procState {
	if !r.looked {
		r.p, r.looked = r.ps.get(r.pid, false), true
	}
	return r.p
}

func (r *procRef) cwd() string {
	if p := r.get(); p != nil {
		return p.cwd
	}
	return ""
}

// dirfdBase is the directory a dirfd argument names for the process: its
// cwd for AT_FDCWD, the fd's tracked path otherwise ("" when unknown).
func dirfdBase(r *procRef, arg uint64) string {
	p := r.get()
	if p == nil {
		return ""
	}
	fd := int32(arg)
	if fd == atFDCWD {
		return p.cwd
	}
	return p.fdPath(fd)
}

const atFDCWD = -100

// normalized holds the normalised strings of one event when changed; the
// strings are unset when nothing changed.
type normalized struct {
	path, path2, unix string
	changed           bool
}

// normalize computes the event's normalised paths with the process's state
// before the event takes effect (chdir("..") resolves against the old
// directory), in pb's memory. Clean absolute paths cost a scan and nothing
// else.
func normalize(ev *event.Event, ps *procs, pb *pathBuf) (out normalized) {
	nr := ev.Nr
	if nr < 0 || int(nr) >= len(pathSpecs) {
		return out
	}
	spec := pathSpecs[nr]
	unix := ev.Addr.Family == event.AFUnix && unixAddrSyscalls[nr] && ev.Addr.Path != "" && ev.Addr.Path[0] != '@'
	if spec == (pathSpec{}) && !unix {
		return out
	}
	if !dirty(spec.p1, ev.Path) && !dirty(spec.p2, ev.Path2) && (!unix || isClean(ev.Addr.Path)) {
		return out
	}
	p := procRef{ps: ps, pid: ev.PID}
	out = normalized{path: ev.Path, path2: ev.Path2, unix: ev.Addr.Path}
	// Path2 first: a symlink's target resolves against the link's directory
	out.path2 = resolveRef(ev, &p, pb, spec.p2, ev.Path2, "")
	out.path = resolveRef(ev, &p, pb, spec.p1, ev.Path, out.path2)
	if selfAliased(out.path2) {
		out.path2 = unaliasSelf(out.path2, p.cwd())
	}
	if selfAliased(out.path) {
		out.path = unaliasSelf(out.path, p.cwd())
	}
	if unix {
		if u := ev.Addr.Path; u[0] == '/' {
			out.unix = pb.resolve("", u)
		} else {
			out.unix = pb.resolve(p.cwd(), u)
		}
	}
	out.changed = out.path != ev.Path || out.path2 != ev.Path2 || out.unix != ev.Addr.Path
	return out
}

// dirty reports whether s, a path argument of kind ref, needs normalising.
func dirty(ref pathRef, s string) bool {
	return ref != refNone && s != "" && (!isClean(s) || selfAliased(s))
}

// userPath is what normalize makes of the event's PathUser in place of
// its Path (the path the process passed, beside the kernel's), computed
// without the rest of the event.
func userPath(ev *event.Event, ps *procs, pb *pathBuf) string {
	s := ev.PathUser
	nr := ev.Nr
	if nr < 0 || int(nr) >= len(pathSpecs) {
		return s
	}
	spec := pathSpecs[nr]
	unix := ev.Addr.Family == event.AFUnix && unixAddrSyscalls[nr] && ev.Addr.Path != "" && ev.Addr.Path[0] != '@'
	if spec == (pathSpec{}) && !unix {
		return s
	}
	if !dirty(spec.p1, s) && !dirty(spec.p2, ev.Path2) && (!unix || isClean(ev.Addr.Path)) {
		return s
	}
	p := procRef{ps: ps, pid: ev.PID}
	link := ""
	if spec.p1 == refLinkDir {
		link = resolveRef(ev, &p, pb, spec.p2, ev.Path2, "")
	}
	out := resolveRef(ev, &p, pb, spec.p1, s, link)
	if selfAliased(out) {
		out = unaliasSelf(out, p.cwd())
	}
	return out
}

func resolveRef(ev *event.Event, p *procRef, pb *pathBuf, ref pathRef, s, link string) string {
	if s == "" {
		return s
	}
	switch ref {
	case refCwd:
		if s[0] == '/' {
			return pb.resolve("", s)
		}
		return pb.resolve(p.cwd(), s)
	case refDir0, refDir1, refDir2:
		if s[0] == '/' {
			return pb.resolve("", s)
		}
		return pb.resolve(dirfdBase(p, ev.Args[ref-refDir0]), s)
	case refLinkDir:
		if s[0] == '/' || !strings.HasPrefix(link, "/") {
			return pb.resolve("", s)
		}
		return pb.resolve(path.Dir(link), s)
	case refAbs:
		if s[0] == '/' {
			return pb.resolve("", s)
		}
	}
	return s
}
