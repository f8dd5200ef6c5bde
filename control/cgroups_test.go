package control

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/internal/privtest"
)

const spin = "while :; do :; done"

func TestCgroupRelOf(t *testing.T) {
	for name, tc := range map[string]struct {
		root, dir, want string
		err             bool
	}{
		"below":         {root: "/sys/fs/cgroup/unified", dir: "/sys/fs/cgroup/unified/k8s.io/abc", want: "k8s.io/abc"},
		"trailing":      {root: "/sys/fs/cgroup/", dir: "/sys/fs/cgroup/a/", want: "a"},
		"root":          {root: "/sys/fs/cgroup", dir: "/sys/fs/cgroup", want: ""},
		"outside":       {root: "/sys/fs/cgroup/unified", dir: "/sys/fs/cgroup/cpu/a", err: true},
		"sibling alike": {root: "/sys/fs/cgroup/uni", dir: "/sys/fs/cgroup/unified/a", err: true},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := CgroupRelOf(tc.root, tc.dir)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("CgroupRelOf(%q, %q) = %q, %v; want %q, error %v", tc.root, tc.dir, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestParseCPUMax(t *testing.T) {
	for name, tc := range map[string]struct {
		in     string
		quota  int64
		period uint64
		err    bool
	}{
		"no limit": {in: "max 100000", quota: -1, period: 100000},
		"limit":    {in: "10000 100000\n", quota: 10000, period: 100000},
		"one":      {in: "max", err: true},
		"negative": {in: "-1 100000", err: true},
		"garbage":  {in: "x y", err: true},
	} {
		t.Run(name, func(t *testing.T) {
			q, p, err := parseCPUMax(tc.in)
			if (err != nil) != tc.err || q != tc.quota || p != tc.period {
				t.Fatalf("parseCPUMax(%q) = %d, %d, %v; want %d, %d, error %v", tc.in, q, p, err, tc.quota, tc.period, tc.err)
			}
			if !tc.err && formatCPUMax(q, p) != strings.TrimSpace(tc.in) {
				t.Errorf("formatCPUMax(%d, %d) = %q, want %q", q, p, formatCPUMax(q, p), tc.in)
			}
		})
	}
}

func TestSharesWeight(t *testing.T) {
	for shares, weight := range map[uint64]uint64{0: 1, 2: 1, 1024: 39, 2598: 100, 262144: 10000, 1 << 30: 10000} {
		if got := sharesToWeight(shares); got != weight {
			t.Errorf("sharesToWeight(%d) = %d, want %d", shares, got, weight)
		}
	}
	// Writing back what ReadCPU returned must restore the weight exactly.
	for w := uint64(minWeight); w <= maxWeight; w++ {
		if got := sharesToWeight(weightToShares(w)); got != w {
			t.Fatalf("sharesToWeight(weightToShares(%d) = %d) = %d", w, weightToShares(w), got)
		}
	}
}

func TestInCgroup(t *testing.T) {
	hybrid := "9:name=systemd:/\n4:cpu,cpuacct:/k8s.io/abc\n1:freezer:/k8s.io/abc\n0::/k8s.io/abc/sub\n"
	for name, tc := range map[string]struct {
		proc, rel string
		v2        bool
		want, err bool
	}{
		"v2 below":        {proc: hybrid, rel: "k8s.io/abc", v2: true, want: true},
		"v2 equal":        {proc: "0::/k8s.io/abc\n", rel: "k8s.io/abc", v2: true, want: true},
		"v2 prefix alike": {proc: "0::/k8s.io/abcd\n", rel: "k8s.io/abc", v2: true},
		"v2 other":        {proc: hybrid, rel: "k8s.io/xyz", v2: true},
		"v1 cpu":          {proc: hybrid, rel: "k8s.io/abc", want: true},
		"v1 cpu other":    {proc: "4:cpu,cpuacct:/other\n0::/k8s.io/abc\n", rel: "k8s.io/abc"},
		"v1 cpuset only":  {proc: "3:cpuset:/k8s.io/abc\n", rel: "k8s.io/abc", err: true},
		"no v2 line":      {proc: "4:cpu:/k8s.io/abc\n", rel: "k8s.io/abc", v2: true, err: true},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := inCgroup(tc.proc, tc.rel, tc.v2)
			if got != tc.want || (err != nil) != tc.err {
				t.Fatalf("inCgroup(%q, %q, v2 %v) = %v, %v; want %v, error %v", tc.proc, tc.rel, tc.v2, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestLocateRefusesRoot(t *testing.T) {
	c := &Cgroups{V2Root: "/sys/fs/cgroup/unified"}
	for _, tg := range []Target{{}, {CgroupRel: "/"}, {CgroupDir: "/sys/fs/cgroup/unified"}} {
		if err := c.KillContainer(tg); err == nil {
			t.Errorf("KillContainer(%+v) = nil, want an error: the root is no container", tg)
		}
		if err := c.KillProcess(tg, uint32(os.Getpid())); err == nil {
			t.Errorf("KillProcess(%+v) = nil, want an error", tg)
		}
	}
}

func TestSetCPUThrottles(t *testing.T) {
	privtest.Require(t)
	c := &Cgroups{}
	// The two cgroups share a parent with the largest weight, so that
	// whatever else runs on the machine hardly takes from the unthrottled one.
	parent := newGroup(t, groupName())
	if err := c.SetCPU(parent.target(), CPU{Shares: maxShares}); err != nil {
		t.Skipf("no cpu controller for the test's cgroups: %v", err)
	}
	a := newGroup(t, parent.rel+"/a")
	b := newGroup(t, parent.rel+"/b")
	spinA := a.start(t, spin)
	spinB := b.start(t, spin)

	throttle := CPU{Shares: 2, QuotaUs: 10_000, PeriodUs: 100_000}
	if err := c.SetCPU(a.target(), throttle); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReadCPU(a.target()); err != nil || got != throttle {
		t.Fatalf("ReadCPU after SetCPU(%+v) = %+v, %v", throttle, got, err)
	}
	time.Sleep(200 * time.Millisecond) // past a period or two
	use := usage(t, time.Second, spinA.pid(), spinB.pid())
	t.Logf("throttled to 10%%: %.0f%% of a cpu; unthrottled sibling: %.0f%%", 100*use[0], 100*use[1])
	if use[0] > 0.20 || use[1] < 0.60 {
		t.Errorf("throttled spinner at %.0f%% of a cpu (want ≤ 20%%), its sibling at %.0f%% (want > 60%%)", 100*use[0], 100*use[1])
	}

	restore := CPU{Shares: 1024, QuotaUs: -1}
	if err := c.SetCPU(a.target(), restore); err != nil {
		t.Fatal(err)
	}
	want := CPU{Shares: 1024, QuotaUs: -1, PeriodUs: 100_000}
	if got, err := c.ReadCPU(a.target()); err != nil || got != want {
		t.Fatalf("ReadCPU after SetCPU(%+v) = %+v, %v; want %+v", restore, got, err, want)
	}
	use = usage(t, time.Second, spinA.pid())
	t.Logf("restored: %.0f%% of a cpu", 100*use[0])
	if use[0] < 0.5 {
		t.Errorf("restored spinner at %.0f%% of a cpu, want > 50%%", 100*use[0])
	}
}

func TestSetCPUReadsBack(t *testing.T) {
	privtest.Require(t)
	c := &Cgroups{}
	g := newGroup(t, groupName())
	if _, err := c.ReadCPU(g.target()); err != nil {
		t.Skipf("no cpu controller for the test's cgroups: %v", err)
	}
	for name, tc := range map[string]struct {
		set  CPU
		want string // in the error
	}{
		"shares clamped up":   {set: CPU{Shares: 1}, want: "the kernel holds"},
		"shares clamped down": {set: CPU{Shares: 1 << 20}, want: "the kernel holds"},
		"quota below 1 ms":    {set: CPU{QuotaUs: 500}, want: "invalid argument"},
		"quota negative":      {set: CPU{QuotaUs: -2}, want: "want -1 (no limit)"},
	} {
		t.Run(name, func(t *testing.T) {
			err := c.SetCPU(g.target(), tc.set)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SetCPU(%+v) = %v, want an error with %q", tc.set, err, tc.want)
			}
			t.Log(err)
		})
	}
	if err := c.SetCPU(Target{CgroupRel: groupName()}, CPU{Shares: 512}); err == nil {
		t.Error("SetCPU of a cgroup that does not exist: nil error")
	}
}

func TestFreeze(t *testing.T) {
	privtest.Require(t)
	c := &Cgroups{}
	for name, freeze := range map[string]func(tg Target, frozen bool) error{
		"cgroup v2":  c.Freeze,
		"v1 freezer": func(tg Target, frozen bool) error { return c.freezeV1(tg.CgroupRel, frozen) },
	} {
		t.Run(name, func(t *testing.T) {
			g := newGroup(t, groupName())
			if name == "v1 freezer" && !g.hasV1("freezer") {
				t.Skip("no cgroup v1 freezer mounted under /sys/fs/cgroup")
			}
			p := g.start(t, spin)
			if use := usage(t, 100*time.Millisecond, p.pid()); use[0] == 0 {
				t.Fatal("spinner does not run before the freeze")
			}
			if err := freeze(g.target(), true); err != nil {
				t.Fatal(err)
			}
			if use := usage(t, 300*time.Millisecond, p.pid()); use[0] != 0 {
				t.Errorf("frozen spinner ran %.1f%% of a cpu", 100*use[0])
			}
			if err := freeze(g.target(), false); err != nil {
				t.Fatal(err)
			}
			if use := usage(t, 300*time.Millisecond, p.pid()); use[0] < 0.05 {
				t.Errorf("thawed spinner ran %.1f%% of a cpu, want more", 100*use[0])
			}
		})
	}
}

func TestKillProcess(t *testing.T) {
	privtest.Require(t)
	c := &Cgroups{}
	a := newGroup(t, groupName())
	sub := newGroup(t, a.rel+"/sub")
	other := newGroup(t, groupName())
	victim, bystander, nested := a.start(t, spin), a.start(t, spin), sub.start(t, spin)
	outsider := other.start(t, spin)

	err := c.KillProcess(a.target(), uint32(outsider.pid()))
	if !errors.Is(err, ErrNotInCgroup) {
		t.Errorf("KillProcess of a pid in another cgroup = %v, want ErrNotInCgroup", err)
	}
	if !outsider.alive() {
		t.Error("KillProcess refused but the process is gone")
	}
	for _, p := range []*proc{victim, nested} {
		if err := c.KillProcess(a.target(), uint32(p.pid())); err != nil {
			t.Fatal(err)
		}
		if st := p.wait(t); st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("pid %d ended with %v, want SIGKILL", p.pid(), st)
		}
	}
	if !bystander.alive() || !outsider.alive() {
		t.Error("KillProcess killed more than its process")
	}
	// Reaped: gone, which is done.
	if err := c.KillProcess(a.target(), uint32(victim.pid())); err != nil {
		t.Errorf("KillProcess of a reaped pid = %v, want nil", err)
	}
}

func TestKillContainer(t *testing.T) {
	privtest.Require(t)
	c := &Cgroups{}
	// A shell with children: a spinner, a sleeper and a loop that ignores
	// SIGTERM.
	const family = `sh -c 'trap "" TERM; while :; do sleep 1; done' & sleep 1000 & sh -c '` + spin + `' & wait`
	for name, kill := range map[string]func(tg Target) error{
		"cgroup.kill": c.KillContainer,
		"signal each": func(tg Target) error { return killEach(tg.CgroupDir, tg.CgroupRel, true) },
	} {
		t.Run(name, func(t *testing.T) {
			g := newGroup(t, groupName())
			other := newGroup(t, groupName())
			outsider := other.start(t, spin)
			p := g.start(t, family)
			var pids []int
			waitFor(t, "4 processes in the cgroup", func() bool {
				pids = g.procs(t)
				return len(pids) >= 4
			})
			if err := kill(g.target()); err != nil {
				t.Fatal(err)
			}
			if left := g.procs(t); len(left) != 0 {
				t.Fatalf("processes left in the cgroup: %v", left)
			}
			if st := p.wait(t); st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Errorf("shell ended with %v, want SIGKILL", st)
			}
			for _, pid := range pids {
				waitFor(t, fmt.Sprintf("pid %d reaped", pid), func() bool { return !alive(pid) })
			}
			if !outsider.alive() {
				t.Error("KillContainer killed a process of another cgroup")
			}
		})
	}
}

// testGroup is a cgroup made for one test, at the same relative path in the
// v2 hierarchy and in the v1 cpu and freezer hierarchies (those mounted).
type testGroup struct {
	rel  string
	v2   string
	v1   map[string]string // controller → dir
	v2fd int
}

var groupSeq atomic.Int32

func groupName() string {
	return fmt.Sprintf("vigil-ctltest-%d-%d", os.Getpid(), groupSeq.Add(1))
}

// newGroup makes the cgroup rel and removes it when the test ends, after
// the processes the test started in it.
func newGroup(t *testing.T, rel string) *testGroup {
	t.Helper()
	root, err := bpf.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	g := &testGroup{rel: rel, v2: filepath.Join(root, rel), v1: map[string]string{}}
	dirs := []string{g.v2}
	for _, ctrl := range []string{"cpu", "freezer"} {
		mnt := filepath.Join("/sys/fs/cgroup", ctrl)
		var st unix.Statfs_t
		if unix.Statfs(mnt, &st) == nil && st.Type == unix.CGROUP_SUPER_MAGIC {
			g.v1[ctrl] = filepath.Join(mnt, rel)
			dirs = append(dirs, g.v1[ctrl])
		}
	}
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("create test cgroup: %v", err)
		}
		t.Cleanup(func() { removeGroup(t, d) })
	}
	if g.v2fd, err = unix.Open(g.v2, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		t.Fatalf("open test cgroup: %v", err)
	}
	t.Cleanup(func() { unix.Close(g.v2fd) })
	return g
}

func removeGroup(t *testing.T, dir string) {
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err == nil {
		os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	}
	var err error
	for range 200 {
		if err = os.Remove(dir); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	t.Errorf("remove test cgroup: %v (processes %q)", err, procs)
}

func (g *testGroup) target() Target {
	return Target{CgroupDir: g.v2, CgroupRel: g.rel}
}

func (g *testGroup) hasV1(ctrl string) bool { return g.v1[ctrl] != "" }

func (g *testGroup) procs(t *testing.T) []int {
	t.Helper()
	pids, err := readProcs(g.v2)
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// proc is a process a test started; it is reaped in the background.
type proc struct {
	cmd   *exec.Cmd
	done  chan struct{}
	state *os.ProcessState
}

// start runs the shell script in the cgroup: born in its v2 directory
// (clone into cgroup), then moved into its v1 ones. The process is killed
// and reaped when the test ends, after thawing the cgroup.
func (g *testGroup) start(t *testing.T, script string) *proc {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.v2fd}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", script, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(g.v2, "cgroup.freeze"), []byte("0"), 0)
		if d := g.v1["freezer"]; d != "" {
			os.WriteFile(filepath.Join(d, "freezer.state"), []byte("THAWED"), 0)
		}
		cmd.Process.Kill()
		<-p.done
	})
	for _, d := range g.v1 {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(cmd.Process.Pid)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return alive(p.pid())
	}
}

func (p *proc) wait(t *testing.T) *os.ProcessState {
	t.Helper()
	select {
	case <-p.done:
		return p.state
	case <-time.After(waitTimeout):
		t.Fatalf("pid %d still running", p.pid())
		return nil
	}
}

// alive says whether pid is a process that has not exited.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return rest != "" && rest[0] != 'Z' && rest[0] != 'X'
}

// usage measures the share of one cpu each pid ran over d (schedstat's run
// time, in ns).
func usage(t *testing.T, d time.Duration, pids ...int) []float64 {
	t.Helper()
	before := make([]uint64, len(pids))
	for i, pid := range pids {
		before[i] = cpuTime(t, pid)
	}
	start := time.Now()
	time.Sleep(d)
	use := make([]float64, len(pids))
	for i, pid := range pids {
		use[i] = float64(cpuTime(t, pid)-before[i]) / float64(time.Since(start))
	}
	return use
}

func cpuTime(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		t.Fatalf("cpu time of pid %d: %v", pid, err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		t.Fatalf("cpu time of pid %d: empty schedstat", pid)
	}
	ns, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		t.Fatalf("cpu time of pid %d: %v", pid, err)
	}
	return ns
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitTimeout); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, waitTimeout)
		}
	}
}
