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
	for _, n := range []string{"connect", "bind", "sendto", "sendmsg"} {
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
// the common case allocates nothing.
func resolve(base, p string) string {
	if p == "" {
		return p
	}
	if p[0] == '/' {
		if isClean(p) {
			return p
		}
		return path.Clean(p)
	}
	if base == "" {
		return path.Clean(p)
	}
	if relClean(p) && isClean(base) {
		// nothing to clean: a file name under a known directory, the
		// common case of *at calls
		if base == "/" {
			return "/" + p
		}
		return base + "/" + p
	}
	return path.Clean(base + "/" + p)
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
// directory). Clean absolute paths cost a scan and nothing else.
func normalize(ev *event.Event, ps *procs) (out normalized) {
	nr := ev.Nr
	if nr < 0 || int(nr) >= len(pathSpecs) {
		return out
	}
	spec := pathSpecs[nr]
	unix := ev.Addr.Family == event.AFUnix && unixAddrSyscalls[nr] && ev.Addr.Path != "" && ev.Addr.Path[0] != '@'
	if spec == (pathSpec{}) && !unix {
		return out
	}
	dirty := func(ref pathRef, s string) bool { return ref != refNone && s != "" && (!isClean(s) || selfAliased(s)) }
	if !dirty(spec.p1, ev.Path) && !dirty(spec.p2, ev.Path2) && (!unix || isClean(ev.Addr.Path)) {
		return out
	}
	p := procRef{ps: ps, pid: ev.PID}
	out = normalized{path: ev.Path, path2: ev.Path2, unix: ev.Addr.Path}
	// Path2 first: a symlink's target resolves against the link's directory
	out.path2 = resolveRef(ev, &p, spec.p2, ev.Path2, "")
	out.path = resolveRef(ev, &p, spec.p1, ev.Path, out.path2)
	if selfAliased(out.path2) {
		out.path2 = unaliasSelf(out.path2, p.cwd())
	}
	if selfAliased(out.path) {
		out.path = unaliasSelf(out.path, p.cwd())
	}
	if unix {
		if u := ev.Addr.Path; u[0] == '/' {
			out.unix = resolve("", u)
		} else {
			out.unix = resolve(p.cwd(), u)
		}
	}
	out.changed = out.path != ev.Path || out.path2 != ev.Path2 || out.unix != ev.Addr.Path
	return out
}

func resolveRef(ev *event.Event, p *procRef, ref pathRef, s, link string) string {
	if s == "" {
		return s
	}
	switch ref {
	case refCwd:
		if s[0] == '/' {
			return resolve("", s)
		}
		return resolve(p.cwd(), s)
	case refDir0, refDir1, refDir2:
		if s[0] == '/' {
			return resolve("", s)
		}
		return resolve(dirfdBase(p, ev.Args[ref-refDir0]), s)
	case refLinkDir:
		if s[0] == '/' || !strings.HasPrefix(link, "/") {
			return resolve("", s)
		}
		return resolve(path.Dir(link), s)
	case refAbs:
		if s[0] == '/' {
			return resolve("", s)
		}
	}
	return s
}
