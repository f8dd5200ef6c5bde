package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

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

// CgroupWait reads how long the tasks of the cgroup v2 directory dir
// waited for a CPU: the "some" total of cpu.pressure (PSI; 0 when the
// kernel has no PSI) and cpu.stat throttled_usec (the time its cpu.max
// quota held it; 0 without the cpu controller), both cumulative, in ns.
// The detector adds them to the CPU time to see the demand of a starved
// cgroup (detector.Sample.CPUWaitNs, CPUThrottledNs).
func CgroupWait(dir string) (waitNs, throttledNs uint64) {
	waitNs = CgroupPressure(dir)
	if b, err := os.ReadFile(filepath.Join(dir, "cpu.stat")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "throttled_usec "); ok {
				us, _ := strconv.ParseUint(v, 10, 64)
				throttledNs = us * 1000
			}
		}
	}
	return waitNs, throttledNs
}

// CgroupUsage reads the cumulative CPU time (ns) and thread count of the
// cgroup v2 directory dir (cpu.stat usage_usec, cgroup.threads).
func CgroupUsage(dir string) (cpuNs uint64, threads int, err error) {
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, 0, fmt.Errorf("cgroup cpu.stat: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("cgroup cpu.stat: %w", err)
			}
			cpuNs = us * 1000
		}
	}
	t, err := os.ReadFile(filepath.Join(dir, "cgroup.threads"))
	if err != nil {
		return 0, 0, fmt.Errorf("cgroup threads: %w", err)
	}
	return cpuNs, strings.Count(string(t), "\n"), nil
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
