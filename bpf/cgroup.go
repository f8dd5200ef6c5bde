package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// CgroupID is the id the kernel gives a cgroup v2 directory: its inode
// number, the value bpf_get_current_cgroup_id() returns for its tasks.
func CgroupID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", dir, err)
	}
	return st.Ino, nil
}

// CgroupRoot finds the cgroup v2 hierarchy: /sys/fs/cgroup on a pure v2
// host, /sys/fs/cgroup/unified on a hybrid one.
func CgroupRoot() (string, error) {
	for _, dir := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return dir, nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified: mount one (mount -t cgroup2 none /sys/fs/cgroup/unified)")
}

// Cgroup is a cgroup v2 directory that vigil made and removes.
type Cgroup struct {
	Path string
	ID   uint64
	fd   int
}

// NewCgroup makes a fresh cgroup named name under the v2 root.
func NewCgroup(name string) (*Cgroup, error) {
	root, err := CgroupRoot()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	id, err := CgroupID(dir)
	if err != nil {
		os.Remove(dir)
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	return &Cgroup{Path: dir, ID: id, fd: fd}, nil
}

// SysProcAttr starts a child directly inside the cgroup (clone3 with
// CLONE_INTO_CGROUP), so that it runs no instruction outside of it.
func (c *Cgroup) SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: c.fd}
}

// Join moves the calling thread's process into the cgroup.
func (c *Cgroup) Join(pid int) error {
	return os.WriteFile(filepath.Join(c.Path, "cgroup.procs"), []byte(fmt.Sprint(pid)), 0)
}

// Kill kills every process left in the cgroup and waits until it is empty
// (up to a second). The cgroup stays, and with it the tracer's counters.
func (c *Cgroup) Kill() error {
	if err := os.WriteFile(filepath.Join(c.Path, "cgroup.kill"), []byte("1"), 0); err != nil {
		return fmt.Errorf("kill cgroup %s: %w", c.Path, err)
	}
	for i := 0; i < 100; i++ {
		b, err := os.ReadFile(filepath.Join(c.Path, "cgroup.events"))
		if err != nil {
			return fmt.Errorf("cgroup events: %w", err)
		}
		if strings.Contains(string(b), "populated 0") {
			return nil
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 10e6}, nil)
	}
	return fmt.Errorf("cgroup %s: processes left after kill", c.Path)
}

// Remove kills what is left in the cgroup and removes it.
func (c *Cgroup) Remove() error {
	unix.Close(c.fd)
	os.WriteFile(filepath.Join(c.Path, "cgroup.kill"), []byte("1"), 0)
	var err error
	for i := 0; i < 100; i++ {
		if err = os.Remove(c.Path); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 10e6}, nil)
	}
	return fmt.Errorf("remove cgroup %s: %w", c.Path, err)
}

// Usage reads the cgroup's cumulative CPU time (cpu.stat usage_usec, in ns)
// and its thread count (cgroup.threads).
func (c *Cgroup) Usage() (cpuNs uint64, threads int, err error) {
	return CgroupUsage(c.Path)
}

// CgroupPressure reads how long the tasks of the cgroup v2 directory dir
// waited for a CPU: the "some" total of cpu.pressure (PSI), cumulative, in
// ns; 0 when the kernel has no PSI.
func CgroupPressure(dir string) uint64 {
	b, err := os.ReadFile(filepath.Join(dir, "cpu.pressure"))
	if err != nil {
		return 0
	}
	// some avg10=0.00 avg60=0.00 avg300=0.00 total=USEC
	line, _, _ := strings.Cut(string(b), "\n")
	if f := strings.Fields(line); len(f) == 5 && f[0] == "some" {
		if v, ok := strings.CutPrefix(f[4], "total="); ok {
			us, _ := strconv.ParseUint(v, 10, 64)
			return us * 1000
		}
	}
	return 0
}

// CgroupSample reads the cpu.stat (one read: usage, and throttled_usec,
// the time its cpu.max quota held it, 0 without the cpu controller) and
// the thread count (cgroup.threads) of the cgroup v2 directory dir. With
// CgroupPressure, the time its tasks waited for a CPU, the detector sees
// the demand of a starved cgroup (detector.Sample.CPUWaitNs,
// CPUThrottledNs).
func CgroupSample(dir string) (st CPUStat, threads int, err error) {
	var buf [cpuStatBuf]byte
	st, err = ReadCPUStat(dir, buf[:])
	if err != nil {
		return CPUStat{}, 0, err
	}
	if threads, err = ReadThreads(dir, buf[:]); err != nil {
		return CPUStat{}, 0, fmt.Errorf("cgroup threads: %w", err)
	}
	return st, threads, nil
}

// ReadThreads counts the threads of the cgroup v2 directory dir
// (cgroup.threads, one a line), reading through buf: a file of any length,
// no allocation but the path.
func ReadThreads(dir string, buf []byte) (int, error) {
	fd, err := unix.Open(dir+"/cgroup.threads", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	n := 0
	for {
		k, err := unix.Read(fd, buf)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return 0, err
		}
		if k == 0 {
			return n, nil
		}
		n += bytes.Count(buf[:k], []byte{'\n'})
	}
}

// CgroupUsage reads the cumulative CPU time (ns) and thread count of the
// cgroup v2 directory dir (cpu.stat usage_usec, cgroup.threads).
func CgroupUsage(dir string) (cpuNs uint64, threads int, err error) {
	st, threads, err := CgroupSample(dir)
	return st.UsageNs, threads, err
}

// cpuStatBuf holds a cpu.stat with every field Linux 6.x writes (about
// 250 bytes) several times over.
const cpuStatBuf = 1024

// CPUStat is what a cgroup's cpu.stat says, in ns (the file's _usec
// fields times 1000). The cpu controller adds the throttling fields;
// without it they are 0 and HasThrottled is false.
type CPUStat struct {
	UsageNs, UserNs, SystemNs uint64
	// NrThrottled is how many periods its cpu.max quota held the cgroup,
	// ThrottledNs for how long.
	NrThrottled  uint64
	ThrottledNs  uint64
	HasThrottled bool
}

// ErrNoUsage is ParseCPUStat's error for a cpu.stat without usage_usec.
var ErrNoUsage = errors.New("cpu.stat: no usage_usec")

// ParseCPUStat parses the contents of a cgroup v2 cpu.stat
// (kernel/cgroup/rstat.c cgroup_base_stat_cputime_show and
// kernel/sched/core.c cpu_extra_stat_show: one "name value" a line). It
// does not allocate unless it fails. Lines it does not know, or without a
// value, are skipped (newer kernels add fields); a field it knows whose
// value is not a decimal number is an error, and so is a cpu.stat without
// usage_usec. A field given twice keeps its last value.
func ParseCPUStat(b []byte) (CPUStat, error) {
	var st CPUStat
	usage := false
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		sp := bytes.IndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		key, val := line[:sp], line[sp+1:]
		var field *uint64
		us := true
		switch string(key) { // no allocation: the compiler compares in place
		case "usage_usec":
			field, usage = &st.UsageNs, true
		case "user_usec":
			field = &st.UserNs
		case "system_usec":
			field = &st.SystemNs
		case "nr_throttled":
			field, us = &st.NrThrottled, false
		case "throttled_usec":
			field, st.HasThrottled = &st.ThrottledNs, true
		default:
			continue
		}
		v, ok := parseDecimal(val)
		if ok && us {
			v, ok = v*1000, v <= math.MaxUint64/1000
		}
		if !ok {
			return CPUStat{}, fmt.Errorf("cpu.stat: %s %q: not a decimal number of %s", key, val, unit(us))
		}
		*field = v
	}
	if !usage {
		return CPUStat{}, ErrNoUsage
	}
	return st, nil
}

func unit(us bool) string {
	if us {
		return "microseconds"
	}
	return "periods"
}

// parseDecimal parses b as an unsigned decimal number (digits only, no
// sign or space) that fits in 64 bits.
func parseDecimal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// ReadCPUStat reads and parses the cpu.stat of the cgroup v2 directory
// dir, with buf as its buffer (the path is built in buf too, so neither
// the read nor the parse allocates; cpuStatBuf bytes are plenty). Each
// read costs the kernel a flush of the cgroup's statistics (rstat), tens
// to hundreds of microseconds once thousands of cgroups run.
func ReadCPUStat(dir string, buf []byte) (CPUStat, error) {
	b, err := readFileInto(dir, "cpu.stat", buf)
	if err != nil {
		return CPUStat{}, fmt.Errorf("cgroup cpu.stat: %w", err)
	}
	return ParseCPUStat(b)
}

// readFileInto reads the file name of directory dir into buf and returns
// what it read; it fails when the file does not fit. The NUL-terminated
// path is built in buf first and opened with openat(2) directly: the
// unix package's Open copies the path onto the heap.
func readFileInto(dir, name string, buf []byte) ([]byte, error) {
	if len(dir)+1+len(name)+1 > len(buf) {
		return nil, fmt.Errorf("%s/%s: path longer than the %d-byte buffer", dir, name, len(buf))
	}
	n := copy(buf, dir)
	buf[n] = '/'
	n++
	n += copy(buf[n:], name)
	buf[n] = 0
	fd, err := openPath(buf)
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", dir, name, err)
	}
	defer unix.Close(fd)
	n = 0
	for {
		if n == len(buf) {
			return nil, fmt.Errorf("%s/%s: larger than the %d-byte buffer", dir, name, len(buf))
		}
		k, err := unix.Read(fd, buf[n:])
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return nil, fmt.Errorf("read %s/%s: %w", dir, name, err)
		}
		if k == 0 {
			return buf[:n], nil
		}
		n += k
	}
}

// openPath opens the NUL-terminated path at the start of p, read-only.
func openPath(p []byte) (int, error) {
	cwd := unix.AT_FDCWD // a negative int: a constant cannot convert to uintptr
	for {
		fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(cwd), uintptr(unsafe.Pointer(&p[0])),
			uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
		switch errno {
		case 0:
			return int(fd), nil
		case unix.EINTR:
			continue
		}
		return -1, errno
	}
}

// openCgroup opens a cgroup v2 directory by its id, the way the kernel
// exports cgroup ids as kernfs file handles (FILEID_KERNFS).
func openCgroup(id uint64) (int, error) {
	mnt, err := cgroupMount()
	if err != nil {
		return -1, err
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], id)
	const fileidKernfs = 0xfe
	fd, err := unix.OpenByHandleAt(mnt, unix.NewFileHandle(fileidKernfs, b[:]), unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT) {
			return -1, fmt.Errorf("no cgroup with id %d: %w", id, ErrNotTracked)
		}
		return -1, fmt.Errorf("open cgroup %d by id: %w", id, err)
	}
	return fd, nil
}

// The cgroup v2 mount, opened once: the agent opens every tracked cgroup by
// id several times a second (counters, samples), and finding and opening
// the mount each time cost more than the open itself.
var (
	mountMu sync.Mutex
	mountFd = -1
)

func cgroupMount() (int, error) {
	mountMu.Lock()
	defer mountMu.Unlock()
	if mountFd >= 0 {
		return mountFd, nil
	}
	root, err := CgroupRoot()
	if err != nil {
		return -1, err
	}
	fd, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open cgroup root: %w", err)
	}
	mountFd = fd
	return fd, nil
}

// CgroupPath finds the cgroup v2 directory of a cgroup id (the kernel's
// own path for it, under the v2 mount).
func CgroupPath(id uint64) (string, error) {
	fd, err := openCgroup(id)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return "", fmt.Errorf("path of cgroup %d: %w", id, err)
	}
	root, err := CgroupRoot()
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(p, "/") && !strings.HasPrefix(p, root) {
		// The link is relative to the cgroup mount on some kernels.
		p = filepath.Join(root, p)
	}
	return p, nil
}
