package control

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/bpf"
)

// Cgroups is the cgroup edge of the response ladder: CPU shares and CFS
// quota, the freezer, and SIGKILL of one process or of a whole container.
// It works on a cgroup v2 host, on a hybrid one (v1 controllers under
// V1Root/<controller>, the v2 core files under V2Root) and on a v1-only one
// (the v1 cpu and freezer controllers, and signals to each process). Each method returns once the change is in force
// in the kernel (read back, or the processes gone), or after about two
// seconds with an error.
//
// It writes the cgroup files itself rather than through containerd's
// cgroups module: that module's v1 CPU controller writes without reading
// back, its v2 freeze loops without a bound, it converts shares to weight
// with the quadratic formula of newer runc (not the linear one used here),
// and it would bring systemd and D-Bus dependencies that vigil does
// not use. The files are a few lines each.
//
// The zero value is ready to use. Kernel requirements: pidfd_open and
// pidfd_send_signal (Linux 5.3); cgroup.kill (5.14) with a fallback to
// signalling every process; cgroup.freeze (5.2) with a fallback to the v1
// freezer.
type Cgroups struct {
	// V1Root holds the cgroup v1 controllers' mounts (cpu, freezer);
	// default /sys/fs/cgroup. A combined mount such as cpu,cpuacct is found
	// through its usual symlink.
	V1Root string
	// V2Root is the cgroup v2 hierarchy; default detected (/sys/fs/cgroup on
	// a v2 host, /sys/fs/cgroup/unified on a hybrid one).
	V2Root string
}

// ErrNotInCgroup says KillProcess refused: the pid belongs to a process
// outside the target's cgroup (it has moved, or the pid was reused).
var ErrNotInCgroup = errors.New("process is not in the target cgroup")

// waitTimeout bounds every wait for the kernel: frozen, thawed, gone, empty.
const waitTimeout = 2 * time.Second

// CgroupRelOf returns dir's path relative to the hierarchy root, without a
// leading slash ("k8s.io/abc"; "" for the root itself), or an error when dir
// is not under root.
func CgroupRelOf(root, dir string) (string, error) {
	rel, err := filepath.Rel(filepath.Clean(root), filepath.Clean(dir))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("cgroup %s is not under the hierarchy root %s", dir, root)
	}
	if rel == "." {
		return "", nil
	}
	return rel, nil
}

// ReadCPU reads the container's CPU shares and CFS quota and period: from
// the v1 cpu controller when the container has a cgroup there, else from
// cpu.weight (converted to shares) and cpu.max of its v2 directory.
func (c *Cgroups) ReadCPU(t Target) (CPU, error) {
	rel, dir, err := c.locate(t)
	if err != nil {
		return CPU{}, err
	}
	if d, ok := c.v1Dir("cpu", rel); ok {
		return readCPUv1(d)
	}
	if dir == "" {
		return CPU{}, fmt.Errorf("read cpu of cgroup %s: no v1 cpu controller and no v2 directory", rel)
	}
	got, err := readCPUv2(dir)
	if err != nil {
		return CPU{}, err
	}
	got.Shares = weightToShares(got.Shares)
	return got, nil
}

// SetCPU writes the non-zero fields of want (QuotaUs -1 lifts the limit),
// then reads them back and fails unless the kernel holds exactly those
// values (it clamps shares, for one).
func (c *Cgroups) SetCPU(t Target, want CPU) error {
	if want.QuotaUs < -1 {
		return fmt.Errorf("set cpu: quota %d µs: want -1 (no limit), 0 (unchanged) or a positive number", want.QuotaUs)
	}
	rel, dir, err := c.locate(t)
	if err != nil {
		return err
	}
	if d, ok := c.v1Dir("cpu", rel); ok {
		return setCPUv1(d, want)
	}
	if dir == "" {
		return fmt.Errorf("set cpu of cgroup %s: no v1 cpu controller and no v2 directory", rel)
	}
	return setCPUv2(dir, want)
}

func readCPUv1(dir string) (CPU, error) {
	var got CPU
	var err error
	if got.Shares, err = readUint(filepath.Join(dir, "cpu.shares")); err != nil {
		return CPU{}, err
	}
	if got.QuotaUs, err = readInt(filepath.Join(dir, "cpu.cfs_quota_us")); err != nil {
		return CPU{}, err
	}
	if got.PeriodUs, err = readUint(filepath.Join(dir, "cpu.cfs_period_us")); err != nil {
		return CPU{}, err
	}
	return got, nil
}

func setCPUv1(dir string, want CPU) error {
	// The period first: the kernel checks each quota against the period in
	// force.
	if want.PeriodUs != 0 {
		if err := writeFile(filepath.Join(dir, "cpu.cfs_period_us"), strconv.FormatUint(want.PeriodUs, 10)); err != nil {
			return fmt.Errorf("set cpu period: %w", err)
		}
	}
	if want.QuotaUs != 0 {
		if err := writeFile(filepath.Join(dir, "cpu.cfs_quota_us"), strconv.FormatInt(want.QuotaUs, 10)); err != nil {
			return fmt.Errorf("set cpu quota: %w", err)
		}
	}
	if want.Shares != 0 {
		if err := writeFile(filepath.Join(dir, "cpu.shares"), strconv.FormatUint(want.Shares, 10)); err != nil {
			return fmt.Errorf("set cpu shares: %w", err)
		}
	}
	got, err := readCPUv1(dir)
	if err != nil {
		return fmt.Errorf("read back cpu: %w", err)
	}
	if !cpuHolds(got, want) {
		return fmt.Errorf("set cpu of %s: the kernel holds %s, not %s", dir, fmtCPU(got), fmtCPU(want))
	}
	return nil
}

// readCPUv2 reads cpu.weight (into Shares, unconverted) and cpu.max.
func readCPUv2(dir string) (CPU, error) {
	var got CPU
	var err error
	if got.Shares, err = readUint(filepath.Join(dir, "cpu.weight")); err != nil {
		return CPU{}, err
	}
	p := filepath.Join(dir, "cpu.max")
	s, err := readFile(p)
	if err != nil {
		return CPU{}, err
	}
	if got.QuotaUs, got.PeriodUs, err = parseCPUMax(s); err != nil {
		return CPU{}, fmt.Errorf("read %s: %w", p, err)
	}
	return got, nil
}

func setCPUv2(dir string, want CPU) error {
	cur, err := readCPUv2(dir)
	if err != nil {
		return fmt.Errorf("set cpu: %w", err)
	}
	// cpu.max takes quota and period together: keep what is not asked.
	lim := CPU{QuotaUs: cur.QuotaUs, PeriodUs: cur.PeriodUs}
	if want.QuotaUs != 0 {
		lim.QuotaUs = want.QuotaUs
	}
	if want.PeriodUs != 0 {
		lim.PeriodUs = want.PeriodUs
	}
	if want.QuotaUs != 0 || want.PeriodUs != 0 {
		if err := writeFile(filepath.Join(dir, "cpu.max"), formatCPUMax(lim.QuotaUs, lim.PeriodUs)); err != nil {
			return fmt.Errorf("set cpu max: %w", err)
		}
	}
	native := want // v2 units: Shares holds the weight
	if want.Shares != 0 {
		native.Shares = sharesToWeight(want.Shares)
		if err := writeFile(filepath.Join(dir, "cpu.weight"), strconv.FormatUint(native.Shares, 10)); err != nil {
			return fmt.Errorf("set cpu weight: %w", err)
		}
	}
	got, err := readCPUv2(dir)
	if err != nil {
		return fmt.Errorf("read back cpu: %w", err)
	}
	if !cpuHolds(got, native) {
		return fmt.Errorf("set cpu of %s: the kernel holds weight %d, max %q; want weight %d, max %q", dir,
			got.Shares, formatCPUMax(got.QuotaUs, got.PeriodUs), native.Shares, formatCPUMax(lim.QuotaUs, lim.PeriodUs))
	}
	return nil
}

// cpuHolds says whether got has every non-zero field of want.
func cpuHolds(got, want CPU) bool {
	return (want.Shares == 0 || got.Shares == want.Shares) &&
		(want.QuotaUs == 0 || got.QuotaUs == want.QuotaUs) &&
		(want.PeriodUs == 0 || got.PeriodUs == want.PeriodUs)
}

// fmtCPU names c's set fields.
func fmtCPU(c CPU) string {
	var f []string
	if c.Shares != 0 {
		f = append(f, fmt.Sprintf("shares %d", c.Shares))
	}
	if c.QuotaUs != 0 {
		f = append(f, fmt.Sprintf("quota %d µs", c.QuotaUs))
	}
	if c.PeriodUs != 0 {
		f = append(f, fmt.Sprintf("period %d µs", c.PeriodUs))
	}
	return strings.Join(f, ", ")
}

// parseCPUMax parses cgroup v2 cpu.max, "$MAX $PERIOD" with MAX "max" for no
// limit (QuotaUs -1).
func parseCPUMax(s string) (quota int64, period uint64, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("cpu.max %q: want \"max|QUOTA PERIOD\"", s)
	}
	if f[0] == "max" {
		quota = -1
	} else if quota, err = strconv.ParseInt(f[0], 10, 64); err != nil || quota <= 0 {
		return 0, 0, fmt.Errorf("cpu.max %q: quota is not \"max\" or a positive number", s)
	}
	if period, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("cpu.max %q: period is not a number", s)
	}
	return quota, period, nil
}

func formatCPUMax(quota int64, period uint64) string {
	if quota < 0 {
		return fmt.Sprintf("max %d", period)
	}
	return fmt.Sprintf("%d %d", quota, period)
}

// Shares (v1, 2..262144, default 1024) and weight (v2, 1..10000, default
// 100) convert with the linear mapping runc used before 1.3.2:
// weight = 1 + (shares-2)*9999/262142. Newer runc and crun map with a
// quadratic formula (1024 shares → weight 100, which reads back here as
// 2598 shares); what matters here is that writing back what ReadCPU
// returned restores the weight exactly.
const (
	minShares = 2
	maxShares = 262144
	minWeight = 1
	maxWeight = 10000
)

func sharesToWeight(shares uint64) uint64 {
	shares = min(max(shares, minShares), maxShares)
	return 1 + (shares-minShares)*(maxWeight-minWeight)/(maxShares-minShares)
}

// weightToShares is the inverse of sharesToWeight: the least shares that
// map to weight, so that writing back what ReadCPU returned restores the
// weight exactly.
func weightToShares(weight uint64) uint64 {
	weight = min(max(weight, minWeight), maxWeight)
	n := (weight - minWeight) * (maxShares - minShares)
	d := uint64(maxWeight - minWeight)
	return minShares + (n+d-1)/d
}

// Freeze freezes (or thaws) every process of the container and returns once
// the kernel reports the cgroup frozen (thawed): cgroup.freeze and
// cgroup.events of its v2 directory, or the v1 freezer where the v2 file is
// missing. A cgroup whose parent is frozen cannot thaw: an error after the
// wait.
func (c *Cgroups) Freeze(t Target, frozen bool) error {
	rel, dir, err := c.locate(t)
	if err != nil {
		return err
	}
	if dir != "" {
		_, err := os.Stat(filepath.Join(dir, "cgroup.freeze"))
		if err == nil {
			return freezeV2(dir, frozen)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("freeze: %w", err)
		}
	}
	return c.freezeV1(rel, frozen)
}

func freezeV2(dir string, frozen bool) error {
	val, want := "0", "frozen 0"
	if frozen {
		val, want = "1", "frozen 1"
	}
	if err := writeFile(filepath.Join(dir, "cgroup.freeze"), val); err != nil {
		return fmt.Errorf("freeze: %w", err)
	}
	events := filepath.Join(dir, "cgroup.events")
	return waitUntil(func() (bool, error) {
		s, err := readFile(events)
		if err != nil {
			return false, fmt.Errorf("freeze: %w", err)
		}
		for _, line := range strings.Split(s, "\n") {
			if line == want {
				return true, nil
			}
		}
		return false, nil
	}, func() error { return fmt.Errorf("freeze: %s does not say %q after %v", events, want, waitTimeout) })
}

func (c *Cgroups) freezeV1(rel string, frozen bool) error {
	d, ok := c.v1Dir("freezer", rel)
	if !ok {
		return fmt.Errorf("freeze cgroup %s: no cgroup.freeze (v2) and no v1 freezer cgroup under %s", rel, c.v1Root())
	}
	want := "THAWED"
	if frozen {
		want = "FROZEN"
	}
	p := filepath.Join(d, "freezer.state")
	// The v1 freezer may stay FREEZING while a task does not reach the
	// refrigerator; writing again retries it (as runc does).
	return waitUntil(func() (bool, error) {
		if err := writeFile(p, want); err != nil {
			return false, fmt.Errorf("freeze: %w", err)
		}
		s, err := readFile(p)
		if err != nil {
			return false, fmt.Errorf("freeze: %w", err)
		}
		return s == want, nil
	}, func() error { return fmt.Errorf("freeze: %s is not %s after %v", p, want, waitTimeout) })
}

// KillProcess sends SIGKILL to pid if it belongs to the container's cgroup
// (or one below it) and waits until it has exited; it may remain a zombie
// until its parent reaps it. It opens a pidfd first, checks the process's
// cgroup, then signals through the pidfd: a signal that succeeds reached the
// very process checked, never one that reused the pid meanwhile. (What the
// check cannot tell is whether pid was already reused, before the call, by
// another process of the same container.) A process already gone is done:
// nil. A pid outside the cgroup is refused with ErrNotInCgroup and left
// alone.
func (c *Cgroups) KillProcess(t Target, pid uint32) error {
	rel, dir, err := c.locate(t)
	if err != nil {
		return err
	}
	fd, err := signalMember(int(pid), rel, hasV2(dir))
	if err != nil || fd < 0 {
		return err
	}
	defer unix.Close(fd)
	return waitExit(fd, int(pid))
}

// signalMember sends SIGKILL to pid through a pidfd if the process is in rel
// (by its v2 cgroup, or its v1 cpu cgroup when v2 is false), and returns the
// pidfd, or -1 when the process is gone.
func signalMember(pid int, rel string, v2 bool) (int, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return -1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("kill pid %d: open pidfd: %w", pid, err)
	}
	p := fmt.Sprintf("/proc/%d/cgroup", pid)
	b, err := os.ReadFile(p)
	if err == nil {
		var in bool
		if in, err = inCgroup(string(b), rel, v2); err == nil && !in {
			err = fmt.Errorf("kill pid %d: %w %s (%s)", pid, ErrNotInCgroup, rel, strings.TrimSpace(string(b)))
		}
	}
	if err != nil {
		// The process was reaped (and the pid perhaps reused) since the
		// pidfd was opened: it is gone, whatever the file said.
		if errors.Is(unix.PidfdSendSignal(fd, 0, nil, 0), unix.ESRCH) {
			unix.Close(fd)
			return -1, nil
		}
		unix.Close(fd)
		return -1, fmt.Errorf("kill pid %d: check %s: %w", pid, p, err)
	}
	// The process was alive (not reaped) when signalled, so it was the one
	// whose cgroup was read.
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.ESRCH) {
			return -1, nil
		}
		return -1, fmt.Errorf("kill pid %d: %w", pid, err)
	}
	return fd, nil
}

// inCgroup says whether the /proc/<pid>/cgroup text puts the process in rel
// or below: by its cgroup v2 line ("0::/path"), or by its v1 cpu controller
// line when v2 is false.
func inCgroup(procCgroup, rel string, v2 bool) (bool, error) {
	for _, line := range strings.Split(procCgroup, "\n") {
		id, rest, ok1 := strings.Cut(line, ":")
		ctrls, p, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			continue
		}
		match := id == "0" && ctrls == ""
		if !v2 {
			match = false
			for _, ctrl := range strings.Split(ctrls, ",") {
				match = match || ctrl == "cpu"
			}
		}
		if match {
			p = cleanRel(p)
			return p == rel || strings.HasPrefix(p, rel+"/"), nil
		}
	}
	want := "cgroup v2 (0::)"
	if !v2 {
		want = "cpu controller"
	}
	return false, fmt.Errorf("no %s line", want)
}

// waitExit polls the pidfd until the process has exited.
func waitExit(fd, pid int) error {
	deadline := time.Now().Add(waitTimeout)
	for {
		ms := time.Until(deadline).Milliseconds()
		if ms <= 0 {
			return fmt.Errorf("kill pid %d: still running %v after SIGKILL", pid, waitTimeout)
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(ms))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("kill pid %d: wait for exit: %w", pid, err)
		}
		if n > 0 {
			return nil
		}
	}
}

// KillContainer kills every process of the container and returns once its
// cgroup.procs is empty: one write of cgroup.kill (Linux 5.14), else SIGKILL
// to each process listed (v2 cgroup.procs, or v1 cpu's on a v1-only host),
// again until none is left.
func (c *Cgroups) KillContainer(t Target) error {
	rel, dir, err := c.locate(t)
	if err != nil {
		return err
	}
	if hasV2(dir) {
		err := writeFile(filepath.Join(dir, "cgroup.kill"), "1")
		if err == nil {
			return waitEmpty(dir)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("kill container: %w", err)
		}
		return killEach(dir, rel, true)
	}
	d, ok := c.v1Dir("cpu", rel)
	if !ok {
		return fmt.Errorf("kill container of cgroup %s: no v2 directory and no v1 cpu cgroup", rel)
	}
	return killEach(d, rel, false)
}

// killEach signals every process listed in dir's cgroup.procs until the
// list is empty. No freezing is needed against forks: a process with
// SIGKILL pending forks no more, so each round leaves only children forked
// before it was signalled.
func killEach(dir, rel string, v2 bool) error {
	return waitUntil(func() (bool, error) {
		pids, err := readProcs(dir)
		if err != nil || len(pids) == 0 {
			return err == nil, err
		}
		for _, pid := range pids {
			fd, err := signalMember(pid, rel, v2)
			if errors.Is(err, ErrNotInCgroup) {
				continue // moved out since listed
			}
			if err != nil {
				return false, fmt.Errorf("kill container: %w", err)
			}
			if fd >= 0 {
				unix.Close(fd)
			}
		}
		return false, nil
	}, func() error { return fmt.Errorf("kill container: processes left in %s after %v", dir, waitTimeout) })
}

func waitEmpty(dir string) error {
	return waitUntil(func() (bool, error) {
		pids, err := readProcs(dir)
		return err == nil && len(pids) == 0, err
	}, func() error { return fmt.Errorf("kill container: processes left in %s after %v", dir, waitTimeout) })
}

func readProcs(dir string) ([]int, error) {
	p := filepath.Join(dir, "cgroup.procs")
	s, err := readFile(p)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, f := range strings.Fields(s) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("list processes: %s: %q is not a pid", p, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// locate returns the target's cgroup path relative to each hierarchy root
// (never "", the root: no action applies to the whole host) and its v2
// directory ("" when there is no v2 hierarchy), each derived from the other
// when the target gives only one.
func (c *Cgroups) locate(t Target) (rel, dir string, err error) {
	rel, dir = cleanRel(t.CgroupRel), t.CgroupDir
	if rel == "" && dir != "" {
		root, err := c.v2Root()
		if err != nil {
			return "", "", err
		}
		if rel, err = CgroupRelOf(root, dir); err != nil {
			return "", "", err
		}
	}
	if rel == "" {
		return "", "", fmt.Errorf("target cgroup %d (CgroupRel %q, CgroupDir %q): not a cgroup below the root", t.CgroupID, t.CgroupRel, t.CgroupDir)
	}
	if dir == "" {
		if root, err := c.v2Root(); err == nil {
			dir = filepath.Join(root, rel)
		}
	}
	return rel, dir, nil
}

func (c *Cgroups) v1Root() string {
	if c.V1Root != "" {
		return c.V1Root
	}
	return "/sys/fs/cgroup"
}

func (c *Cgroups) v2Root() (string, error) {
	if c.V2Root != "" {
		return c.V2Root, nil
	}
	return bpf.CgroupRoot()
}

// v1Dir returns the directory of rel (a cgroup v2 path) in the v1
// hierarchy of controller, if that controller is mounted as cgroup v1 and
// the directory exists: rel itself, or else the v1 cgroup of a process of
// the v2 cgroup. The v1 hierarchies need not mirror the v2 path: runc given
// no cgroups path (CRI-O run with _CRIO_ROOTLESS) makes a container's v1
// cgroups below its monitor's (/crio-conmon-ID/ID) and its v2 cgroup below
// its own (/ID).
func (c *Cgroups) v1Dir(controller, rel string) (string, bool) {
	mnt := filepath.Join(c.v1Root(), controller)
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil || st.Type != unix.CGROUP_SUPER_MAGIC {
		return "", false
	}
	d := filepath.Join(mnt, rel)
	if fi, err := os.Stat(d); err == nil && fi.IsDir() {
		return d, true
	}
	if p, ok := c.v1PathOfMember(controller, rel); ok {
		if fi, err := os.Stat(filepath.Join(mnt, p)); err == nil && fi.IsDir() {
			return filepath.Join(mnt, p), true
		}
	}
	return d, false
}

// v1PathOfMember is the v1 cgroup path, for controller, of the first
// process of the v2 cgroup rel.
func (c *Cgroups) v1PathOfMember(controller, rel string) (string, bool) {
	root, err := c.v2Root()
	if err != nil {
		return "", false
	}
	procs, err := os.ReadFile(filepath.Join(root, rel, "cgroup.procs"))
	if err != nil {
		return "", false
	}
	pid, _, _ := strings.Cut(string(procs), "\n")
	if pid == "" {
		return "", false
	}
	data, err := os.ReadFile(filepath.Join("/proc", pid, "cgroup"))
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(data), "\n") {
		// hierarchy-ID:controller-list:path
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && slices.Contains(strings.Split(f[1], ","), controller) {
			return cleanRel(f[2]), cleanRel(f[2]) != ""
		}
	}
	return "", false
}

func hasV2(dir string) bool {
	if dir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, "cgroup.procs"))
	return err == nil
}

// cleanRel turns "/a/b/", "a/b" or "/" into "a/b" or "".
func cleanRel(s string) string {
	return strings.TrimPrefix(path.Clean("/"+s), "/")
}

// waitUntil calls done every few milliseconds until it says true or fails,
// or returns timeout() after waitTimeout.
func waitUntil(done func() (bool, error), timeout func() error) error {
	deadline := time.Now().Add(waitTimeout)
	for sleep := time.Millisecond; ; sleep = min(2*sleep, 20*time.Millisecond) {
		ok, err := done()
		if ok || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return timeout()
		}
		time.Sleep(sleep)
	}
}

// writeFile writes v to the cgroup file p; the error names both.
func writeFile(p, v string) error {
	if err := os.WriteFile(p, []byte(v), 0); err != nil {
		return fmt.Errorf("write %q to %s: %w", v, p, unwrapPath(err))
	}
	return nil
}

func readFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", p, unwrapPath(err))
	}
	return strings.TrimSpace(string(b)), nil
}

// unwrapPath drops the *fs.PathError around a syscall error, whose path the
// caller's message already names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func readUint(p string) (uint64, error) {
	s, err := readFile(p)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read %s: %q is not a number", p, s)
	}
	return v, nil
}

func readInt(p string) (int64, error) {
	s, err := readFile(p)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read %s: %q is not a number", p, s)
	}
	return v, nil
}
