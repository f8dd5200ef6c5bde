// Package event owns vigil's syscall record: the Event that the tracer
// produces and that audit, detector and control consume, its JSON form, and
// the syscall name tables of the ABIs vigil reads (x86_64, i386, arm64).
// It is pure: no kernel, no root, no imports from the rest of vigil.
package event

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Flags says how a record came to be.
type Flags uint16

const (
	// NoReturn marks a syscall that never returned to its caller: exit,
	// exit_group, and the old image of a successful execve. Ret is 0.
	NoReturn Flags = 1 << iota
	// Truncated marks a record whose decoded strings hit their bound.
	Truncated
	// Lost marks a synthetic record that stands for Count-1 dropped ones,
	// made by a reader from a gap in the sequence numbers.
	Lost
	// UserDiffers marks a record whose Path or Addr the tracer took from the
	// kernel's objects (the opened file, the connected or bound socket) and
	// whose user-space string said something else: PathUser or AddrUser
	// holds what the task passed. Relative paths, symbolic links and port 0
	// differ legitimately; a string rewritten by another thread while the
	// syscall ran differs too.
	UserDiffers
)

var flagNames = []string{"noreturn", "truncated", "lost", "user-differs"}

func (f Flags) String() string {
	var parts []string
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	return strings.Join(parts, ",")
}

// Container is what the runtime told vigil about the container a cgroup
// belongs to. Events of one container share one *Container: it is never
// changed once made (PodLabels included).
type Container struct {
	ID        string `json:"id,omitempty"`
	Name      string `json:"name,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Image     string `json:"image,omitempty"`
	// PodUID is the pod's uid (Kubernetes metadata.uid) and PodLabels its
	// labels, as the runtime passed them; Node is the node's name.
	PodUID    string            `json:"pod_uid,omitempty"`
	PodLabels map[string]string `json:"pod_labels,omitempty"`
	Node      string            `json:"node,omitempty"`
	// OwnerKind and OwnerName name the workload that made the pod
	// (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, or Node for a
	// static pod), inferred from the names and labels Kubernetes gives its
	// pods: the runtime passes no owner references. Empty for a bare pod.
	OwnerKind string `json:"owner_kind,omitempty"`
	OwnerName string `json:"owner_name,omitempty"`
}

// Address families of Addr (linux/socket.h).
const (
	AFUnix  = 1
	AFInet  = 2
	AFInet6 = 10
)

// Addr is a decoded socket address (connect, sendto, bind, accept).
type Addr struct {
	Family uint16     // AFInet, AFInet6, AFUnix; 0 when there is none
	IP     netip.Addr // inet and inet6
	Port   uint16     // inet and inet6
	Path   string     // unix; an abstract name starts with "@"
}

// IsZero reports whether the event carried no address.
func (a Addr) IsZero() bool { return a.Family == 0 }

// String is the address in the form the JSON and the rules use:
// "127.0.0.1:53", "[::1]:53", "unix:/run/x.sock", "family:<n>".
func (a Addr) String() string {
	switch a.Family {
	case 0:
		return ""
	case AFInet, AFInet6:
		return netip.AddrPortFrom(a.IP, a.Port).String()
	case AFUnix:
		return "unix:" + a.Path
	}
	return "family:" + strconv.Itoa(int(a.Family))
}

// ParseAddr reads the String form back.
func ParseAddr(s string) (Addr, error) {
	switch {
	case s == "":
		return Addr{}, nil
	case strings.HasPrefix(s, "unix:"):
		return Addr{Family: AFUnix, Path: s[5:]}, nil
	case strings.HasPrefix(s, "family:"):
		n, err := strconv.ParseUint(s[7:], 10, 16)
		if err != nil {
			return Addr{}, fmt.Errorf("address %q: bad family", s)
		}
		return Addr{Family: uint16(n)}, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return Addr{}, fmt.Errorf("address %q: want ip:port, [ip6]:port or unix:path", s)
	}
	fam := uint16(AFInet)
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		fam = AFInet6
	}
	return Addr{Family: fam, IP: ap.Addr(), Port: ap.Port()}, nil
}

// Event is one completed syscall of a monitored cgroup.
type Event struct {
	Seq       uint64     // per-cgroup sequence number, from 1; a gap is a drop
	KTime     uint64     // CLOCK_MONOTONIC ns when the syscall completed
	Time      time.Time  // wall clock of KTime
	CgroupID  uint64     // cgroup v2 id (inode of the cgroup directory)
	Container *Container // nil outside a runtime (vigil trace)
	PID       uint32     // thread group id
	TID       uint32     // thread id
	Comm      string     // task name
	Nr        int32      // syscall number in the native ABI
	Args      [6]uint64  // raw arguments
	Ret       int64      // return value; -errno on failure
	Flags     Flags
	Count     uint64   // with Lost: how many records the gap stands for
	Path      string   // first decoded path (open/stat/exec/unlink/rename/mount/chmod families); of a successful open, the opened file's
	Path2     string   // second path: rename/link target, mount target, symlink linkpath
	Argv      []string // execve arguments (bounded)
	Addr      Addr     // connect/sendto/bind socket address; of a connect or bind that took effect, the socket's
	PathUser  string   // with UserDiffers: the path the task passed, when not Path
	AddrUser  Addr     // with UserDiffers: the sockaddr the task passed, when not Addr
	// CloneFlags is clone3's flags, read from its struct clone_args (clone
	// and unshare pass theirs in Args[0]); 0 for other syscalls or when the
	// struct could not be read.
	CloneFlags uint64
	// Env holds the entries of a successful execve's new environment that
	// set the dynamic loader's LD_PRELOAD, LD_AUDIT or LD_LIBRARY_PATH, as
	// NAME=value (bounded, like Argv).
	Env []string
}

// CloneFlagsOf is the namespace and sharing flags (CLONE_*) of a clone,
// clone3, unshare or setns event, whichever way the syscall passed them
// (setns: the namespace type to join, 0 for any); ok is false for other
// syscalls and for clone3's return in the child.
func (e *Event) CloneFlagsOf() (flags uint64, ok bool) {
	switch e.Name() {
	case "clone", "unshare":
		return e.Args[0], true
	case "clone3":
		// The child's return (0) carries no flags of its own: its
		// clone_args pointer is into memory the parent may have reused
		// by then (a thread shares it), so what the tracer read there
		// is not the call's.
		if e.Ret == 0 {
			return 0, false
		}
		return e.CloneFlags, true
	case "setns":
		return e.Args[1], true
	}
	return 0, false
}

// Name is the syscall's name in the native ABI.
func (e *Event) Name() string { return SyscallName(int(e.Nr)) }

// Errno is the error a failed syscall returned, or 0.
func (e *Event) Errno() int {
	if e.Ret < 0 && e.Ret > -4096 {
		return int(-e.Ret)
	}
	return 0
}
