package seccomp

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The seccomp user-notification structures (include/uapi/linux/seccomp.h);
// golang.org/x/sys/unix has the ioctl numbers but not these.

// seccompData is struct seccomp_data.
type seccompData struct {
	Nr                 int32
	Arch               uint32
	InstructionPointer uint64
	Args               [6]uint64
}

// notif is struct seccomp_notif.
type notif struct {
	ID    uint64
	PID   uint32
	Flags uint32
	Data  seccompData
}

// notifResp is struct seccomp_notif_resp.
type notifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

func ioctlPtr(fd int, req uint, p unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(p))
	if errno != 0 {
		return errno
	}
	return nil
}

// notifRecv receives one notification (SECCOMP_IOCTL_NOTIF_RECV). n must be
// zeroed by the caller; the kernel rejects a dirty buffer with EINVAL.
func notifRecv(fd int, n *notif) error {
	return ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(n))
}

// notifIDValid reports whether the notification id is still pending (the
// caller has not died or been interrupted): SECCOMP_IOCTL_NOTIF_ID_VALID.
func notifIDValid(fd int, id uint64) error {
	return ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id))
}

// notifSend answers a notification (SECCOMP_IOCTL_NOTIF_SEND).
func notifSend(fd int, r *notifResp) error {
	return ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(r))
}

// response builds the answer for decision d.
func response(id uint64, d Decision) notifResp {
	if d.Allow {
		return notifResp{ID: id, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	}
	return notifResp{ID: id, Error: -int32(d.Errno), Val: 0}
}

// nativeAuditArch is the AUDIT_ARCH_* value of this build's ABI, the one
// event's syscall tables describe.
var nativeAuditArch = func() uint32 {
	switch runtime.GOARCH {
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64
	default:
		return unix.AUDIT_ARCH_X86_64
	}
}()
