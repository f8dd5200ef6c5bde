package bpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"vigil.dev/vigil/event"
)

// Record layout, as written by syscalls.bpf.c (struct rec_hdr, little
// endian): a 48-byte header (ktime, cgroup, seq, ret, pid, tid, s32 nr,
// nargs, flags with the item count in the high nibble, cpu), nargs u64
// arguments, a 16-byte comm when
// fComm is set, then nstr items {u8 kind, u8, u16 len, u32, bytes padded to 8}.
const (
	hdrSize = 48
	fComm   = 1
	fNoRet  = 2
	fTrunc  = 4
)

// Item kinds: syscalls.bpf.c's enum item_kind, generated.
const (
	sPath     = uint8(vigilItemKindS_PATH)
	sPath2    = uint8(vigilItemKindS_PATH2)
	sArgv     = uint8(vigilItemKindS_ARGV)
	sSock     = uint8(vigilItemKindS_SOCK)
	sPathUser = uint8(vigilItemKindS_PATH_USER) // an open's path as the user passed it, when not the file's path
	sSockUser = uint8(vigilItemKindS_SOCK_USER) // a connect's or bind's sockaddr as passed, when not the socket's
	sClone    = uint8(vigilItemKindS_CLONE)     // clone3's flags (struct clone_item)
	sEnv      = uint8(vigilItemKindS_ENV)       // an exec's loader variables, NUL-separated
)

// Decoders: syscalls.bpf.c's enum dec, generated.
const (
	dNone    = uint8(vigilDecD_NONE)
	dPath0   = uint8(vigilDecD_PATH0)
	dPath1   = uint8(vigilDecD_PATH1)
	dPath01  = uint8(vigilDecD_PATH01)
	dPath13  = uint8(vigilDecD_PATH13)
	dPath02  = uint8(vigilDecD_PATH02)
	dExec    = uint8(vigilDecD_EXEC)
	dExecAt  = uint8(vigilDecD_EXECAT)
	dSock1   = uint8(vigilDecD_SOCK1)
	dSock4   = uint8(vigilDecD_SOCK4)
	dAccept  = uint8(vigilDecD_ACCEPT)
	dMsg     = uint8(vigilDecD_MSG)
	dOpen0   = uint8(vigilDecD_OPEN0)
	dOpen1   = uint8(vigilDecD_OPEN1)
	dConnect = uint8(vigilDecD_CONNECT)
	dBind    = uint8(vigilDecD_BIND)
	dClone3  = uint8(vigilDecD_CLONE3)
)

// decoders says which strings the tracer reads for which syscall: paths of
// the open/stat/exec/unlink/rename/mount/chmod families, execve filename and
// argv, socket addresses of connect/sendto/bind/accept/sendmsg/sendmmsg,
// clone3's flags.
var decoders = map[string]uint8{
	// opens: the opened file's path (the user's path at arg0 or arg1 too
	// when it differs); a failed open has the user's path
	"open": dOpen0, "creat": dOpen0, "openat": dOpen1, "openat2": dOpen1,
	// path at arg0
	"stat": dPath0, "lstat": dPath0, "access": dPath0,
	"chdir": dPath0, "chroot": dPath0, "unlink": dPath0, "rmdir": dPath0, "mkdir": dPath0,
	"chmod": dPath0, "chown": dPath0, "lchown": dPath0, "truncate": dPath0, "readlink": dPath0,
	"statfs": dPath0, "mknod": dPath0, "utime": dPath0, "utimes": dPath0, "acct": dPath0,
	"swapon": dPath0, "swapoff": dPath0, "umount2": dPath0, "uselib": dPath0,
	"setxattr": dPath0, "lsetxattr": dPath0, "getxattr": dPath0, "lgetxattr": dPath0,
	"listxattr": dPath0, "llistxattr": dPath0, "removexattr": dPath0, "lremovexattr": dPath0,
	"quotactl": dPath0,
	// path at arg1: the *at family
	"newfstatat": dPath1, "statx": dPath1,
	"faccessat": dPath1, "faccessat2": dPath1, "mkdirat": dPath1, "mknodat": dPath1,
	"unlinkat": dPath1, "fchmodat": dPath1, "fchmodat2": dPath1, "fchownat": dPath1,
	"readlinkat": dPath1, "utimensat": dPath1, "futimesat": dPath1,
	"name_to_handle_at": dPath1, "inotify_add_watch": dPath1, "open_tree": dPath1,
	"fsconfig": dNone, "mount_setattr": dPath1, "move_mount": dPath1,
	// two paths
	"rename": dPath01, "link": dPath01, "symlink": dPath01, "mount": dPath01, "pivot_root": dPath01,
	"renameat": dPath13, "renameat2": dPath13, "linkat": dPath13,
	"symlinkat": dPath02,
	// exec
	"execve": dExec, "execveat": dExecAt,
	// sockets
	// connect, bind: the socket's own address once it took effect (the
	// user's sockaddr too when it differs); sendto, accept, sendmsg: as
	// passed; sendmmsg: its first message's (a struct mmsghdr starts with
	// the struct msghdr that sendmsg takes)
	"connect": dConnect, "bind": dBind, "sendto": dSock4,
	"accept": dAccept, "accept4": dAccept, "sendmsg": dMsg, "sendmmsg": dMsg,
	// clone3: the flags in its struct clone_args
	"clone3": dClone3,
}

// fillSysmeta tells the BPF program, per syscall number, how many arguments
// to copy and what to decode. exit and exit_group get the 0x80 mark: their
// records come from sched_process_exit.
func (m *Monitor) fillSysmeta() error {
	abi := event.NativeABI()
	for nr := 0; nr <= abi.MaxNr() && nr < 1024; nr++ {
		name := abi.Name(nr)
		nargs, ok := sysArgs[name]
		if !ok {
			nargs = 6 // unknown to this kernel's tables: keep every argument
		}
		if name == "exit" || name == "exit_group" {
			nargs |= 0x80
		}
		meta := vigilSysmeta{Nargs: nargs, Dec: decoders[name]}
		if err := m.objs.VigilSysmeta.Update(uint32(nr), meta, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("fill syscall table (%s): %w", name, err)
		}
	}
	return nil
}

// decoder turns records into events. The kernel sends a comm only when the
// writing CPU's last record was of another thread or comm; the decoder
// mirrors that per-CPU cache, so every event gets its comm without a
// per-thread table.
type decoder struct {
	boot int64 // wall clock ns at monotonic 0
	cpus []cpuComm
	// str makes the events' strings from the record's bytes (nil: each is
	// allocated); see Consumer.String.
	str func([]byte) string
	// comms interns thread names: a CPU that runs another thread sends its
	// comm again, most often one seen before.
	comms map[string]string
}

// maxComms bounds the interned thread names (the table starts again when
// full).
const maxComms = 4096

// comm returns c as a string, interned.
func (d *decoder) comm(c []byte) string {
	if s, ok := d.comms[string(c)]; ok {
		return s
	}
	if d.comms == nil || len(d.comms) >= maxComms {
		d.comms = make(map[string]string, 64)
	}
	s := string(c)
	d.comms[s] = s
	return s
}

type cpuComm struct {
	tid  uint32
	comm string
}

func newDecoder() decoder {
	now := time.Now().UnixNano()
	return decoder{boot: now - int64(monotonicNow())}
}

// decode fills ev from one record; false if the record is malformed.
func (d *decoder) decode(b []byte, ev *event.Event) bool {
	if len(b) < hdrSize {
		return false
	}
	le := binary.LittleEndian
	nargs := int(b[44])
	flags := b[45] & 0x0f
	nstr := int(b[45] >> 4)
	if nargs > 6 || len(b) < hdrSize+8*nargs {
		return false
	}
	// Cleared in place, then filled: a composite literal is built on the
	// stack and copied over the event (344 bytes cleared and 344 copied
	// more per record).
	*ev = event.Event{}
	ev.KTime = le.Uint64(b[0:])
	ev.CgroupID = le.Uint64(b[8:])
	ev.Seq = le.Uint64(b[16:])
	ev.Ret = int64(le.Uint64(b[24:]))
	ev.PID = le.Uint32(b[32:])
	ev.TID = le.Uint32(b[36:])
	ev.Nr = int32(le.Uint32(b[40:]))
	ev.Time = time.Unix(0, d.boot+int64(ev.KTime))
	off := hdrSize
	for i := 0; i < nargs; i++ {
		ev.Args[i] = le.Uint64(b[off:])
		off += 8
	}
	if flags&fNoRet != 0 {
		ev.Flags |= event.NoReturn
	}
	if flags&fTrunc != 0 {
		ev.Flags |= event.Truncated
	}
	cpu := int(le.Uint16(b[46:]))
	if cpu >= len(d.cpus) {
		d.cpus = append(d.cpus, make([]cpuComm, cpu+1-len(d.cpus))...)
	}
	cc := &d.cpus[cpu]
	if flags&fComm != 0 {
		if len(b) < off+16 {
			return false
		}
		c := cstring(b[off : off+16])
		if cc.comm != string(c) {
			cc.comm = d.comm(c)
		}
		cc.tid = ev.TID
		off += 16
	}
	if cc.tid == ev.TID {
		ev.Comm = cc.comm
	}
	for i := 0; i < nstr; i++ {
		if len(b) < off+8 {
			return false
		}
		kind, n := b[off], int(le.Uint16(b[off+2:]))
		off += 8
		if len(b) < off+n {
			return false
		}
		s := b[off : off+n]
		switch kind {
		case sPath:
			ev.Path = d.string(s)
		case sPath2:
			ev.Path2 = d.string(s)
		case sArgv:
			ev.Argv = d.strings(ev.Argv, s)
		case sEnv:
			ev.Env = d.strings(ev.Env, s)
		case sClone:
			if len(s) < int(unsafe.Sizeof(vigilCloneItem{})) {
				return false
			}
			ev.CloneFlags = le.Uint64(s[unsafe.Offsetof(vigilCloneItem{}.Flags):])
		case sSock:
			ev.Addr = d.sockaddr(s)
		case sPathUser:
			ev.PathUser = d.string(s)
			ev.Flags |= event.UserDiffers
		case sSockUser:
			ev.AddrUser = d.sockaddr(s)
			ev.Flags |= event.UserDiffers
		}
		off += (n + 7) &^ 7
	}
	return true
}

// strings appends the NUL-separated strings of b to l.
func (d *decoder) strings(l []string, b []byte) []string {
	for len(b) > 0 {
		end := 0
		for end < len(b) && b[end] != 0 {
			end++
		}
		l = append(l, d.string(b[:end]))
		if end == len(b) {
			break
		}
		b = b[end+1:]
	}
	return l
}

// string is a string of the record's bytes b, made by the consumer's
// String or allocated.
func (d *decoder) string(b []byte) string {
	if d.str != nil && len(b) > 0 {
		return d.str(b)
	}
	return string(b)
}

func cstring(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// sockaddr decodes a struct sockaddr of the inet, inet6 and unix families
// (include/uapi/linux/in.h, in6.h, un.h). Ports are in network order.
func (d *decoder) sockaddr(b []byte) event.Addr {
	if len(b) < 2 {
		return event.Addr{}
	}
	fam := binary.LittleEndian.Uint16(b)
	switch fam {
	case event.AFInet:
		if len(b) < 8 {
			break
		}
		return event.Addr{Family: fam, Port: binary.BigEndian.Uint16(b[2:]), IP: netip.AddrFrom4([4]byte(b[4:8]))}
	case event.AFInet6:
		if len(b) < 24 {
			break
		}
		return event.Addr{Family: fam, Port: binary.BigEndian.Uint16(b[2:]), IP: netip.AddrFrom16([16]byte(b[8:24]))}
	case event.AFUnix:
		p := b[2:]
		if len(p) > 0 && p[0] == 0 { // abstract: the name is the bytes after the NUL
			return event.Addr{Family: fam, Path: "@" + string(cstring(p[1:]))}
		}
		return event.Addr{Family: fam, Path: d.string(cstring(p))}
	}
	return event.Addr{Family: fam}
}
