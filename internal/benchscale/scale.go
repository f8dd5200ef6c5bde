// Package benchscale measures vigil at scale: N containers tracked at once,
// each a real cgroup v2 with a small real process making a steady mix of
// syscalls, plus a few heavy ones. It runs the real agent binary (`vigil
// agent --hook-only`, its own sockets, no pins) and registers every cgroup
// through the control socket as the OCI hook does (the plugin's path:
// registry, tracer, pipeline, detector, audit), then reads what it costs:
// the agent's memory and CPU, the kernel maps, events per second, drops,
// decision time, and the time to track and untrack them all.
//
// It needs root, a cgroup v2 hierarchy (pure or hybrid) and a C compiler
// (cc or clang) for the workload, a static binary without libc.
package benchscale

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/event"
)

//go:embed helper.c
var helperSource []byte

// Options configures Run.
type Options struct {
	// Counts are the numbers of containers to run, one after the other
	// (default 1000, 5000, 10000, 20000). A count the machine cannot hold
	// (free memory, pid_max, open files) gets a line saying why.
	Counts []int
	// Heavy containers among them (0: none), each making HeavyRate
	// syscalls per second (default 20000).
	Heavy     int
	HeavyRate int
	// Rate is how many rounds of openat, read, close, getpid and
	// nanosleep (5 syscalls) a light container makes per second
	// (default 2).
	Rate float64
	// Warmup runs before the steady window (default 5 s); Steady is the
	// window measured (default 20 s).
	Warmup, Steady time.Duration
	// Vigil is the agent binary (default: this executable).
	Vigil string
	// NoAudit runs the agent without its audit log.
	NoAudit bool
	// Clients register and unregister containers at once (default 8).
	Clients int
	// ProfileDir, when set, gets the agent's CPU profiles (go tool pprof):
	// N-register.pprof, the first 15 s of registering, and
	// N-steady.pprof, the steady window.
	ProfileDir string
	// AgentArgs are added to the agent's command line.
	AgentArgs []string
	// Log gets progress; Out one JSON line per count.
	Log, Out io.Writer
}

// Result is one count's line.
type Result struct {
	Containers int    `json:"containers"`
	Machine    string `json:"machine"`
	Heavy      int    `json:"heavy"`
	Skipped    string `json:"skipped,omitempty"`
	Error      string `json:"error,omitempty"`

	// Events per second the agent processed in the steady window, and
	// what the workloads were set to make.
	EventsPerSec   float64 `json:"events_per_s"`
	ExpectedPerSec float64 `json:"expected_events_per_s"`
	// Drops are the records lost in the steady window: the containers'
	// kernel counters (ring full or over budget) and the pipeline queue's
	// (QueueDropped of them); DropsTotal from tracking to the window's
	// end; Throttled the part over a container's budget.
	Drops        uint64 `json:"drops"`
	QueueDropped uint64 `json:"queue_dropped"`
	DropsTotal   uint64 `json:"drops_total"`
	Throttled    uint64 `json:"throttled"`
	// DecisionP99Ns is the detector's time per event (p50 beside it);
	// DeliveryP99Ns kernel timestamp to decision.
	DecisionP50Ns int64 `json:"decision_p50_ns"`
	DecisionP99Ns int64 `json:"decision_p99_ns"`
	DeliveryP99Ns int64 `json:"delivery_p99_ns"`
	// AgentCPU is the agent's CPU in cores over the steady window.
	AgentCPU float64 `json:"agent_cpu_cores"`
	// RSSBytes is the agent's resident memory in the steady window,
	// RSSIdleBytes before any container was registered; per container:
	// their difference over Containers.
	RSSBytes             int64   `json:"rss_bytes"`
	RSSIdleBytes         int64   `json:"rss_idle_bytes"`
	RSSPerContainerBytes float64 `json:"rss_bytes_per_container"`
	// MapBytes is the memory of the agent's BPF maps as the kernel
	// reports it (memlock in fdinfo), by map in Maps; a map's figure does
	// not grow with the containers it holds when it is preallocated, and
	// cgroup local storage is charged to the cgroups, not the map.
	MapBytes int64            `json:"map_bytes"`
	Maps     map[string]int64 `json:"maps"`
	// SlabPerContainerBytes is the kernel's slab growth from registering
	// the containers (cgroups and processes existed before), over
	// Containers: the tracer's per-cgroup storage and whatever else the
	// kernel allocated meanwhile (noisy).
	SlabPerContainerBytes float64 `json:"kernel_slab_bytes_per_container"`
	// TrackSeconds is the time to register (track) all containers,
	// UntrackSeconds to unregister them all, ReleasedSeconds from the
	// last unregister until the agent held no state for any of them.
	TrackSeconds float64 `json:"track_all_s"`
	// TrackRetries counts registrations sent again because the agent had
	// not answered within the control socket's 10 s.
	TrackRetries    int64   `json:"track_retries"`
	UntrackSeconds  float64 `json:"untrack_all_s"`
	ReleasedSeconds float64 `json:"released_s"`
	// Held is what the agent held in the steady window, HeldAfter once
	// the containers were gone (it must be back to HeldIdle).
	HeldIdle  *agentctl.Held `json:"held_idle,omitempty"`
	Held      *agentctl.Held `json:"held,omitempty"`
	HeldAfter *agentctl.Held `json:"held_after,omitempty"`
	// WorkloadBytesPerContainer is a workload process's own memory
	// (RssAnon + page tables), for the record: not vigil's cost.
	WorkloadBytesPerContainer int64 `json:"workload_bytes_per_container"`
	// MachineBytesPerContainer is how much MemAvailable fell from before
	// the workloads started to the steady window, over Containers: all a
	// container of the benchmark takes (its process and cgroup, the
	// kernel's and the agent's share; what room bounds).
	MachineBytesPerContainer float64 `json:"machine_bytes_per_container"`
}

// Run measures each count in turn and writes its line to o.Out. It stops
// at the first error or when ctx ends, and removes what it made
// (processes, cgroups, the agent, files) in every case.
func Run(ctx context.Context, o Options) error {
	if len(o.Counts) == 0 {
		o.Counts = []int{1000, 5000, 10000, 20000}
	}
	for _, n := range o.Counts {
		if n <= 0 {
			return fmt.Errorf("--counts: %d: each count must be a positive number of containers", n)
		}
	}
	if o.Heavy < 0 {
		return fmt.Errorf("--heavy %d: must be 0 or more", o.Heavy)
	}
	if o.HeavyRate <= 0 {
		o.HeavyRate = 20000
	}
	if o.Rate <= 0 {
		o.Rate = 2
	}
	if o.Rate > 1000 {
		return fmt.Errorf("--rate %g: at most 1000 rounds per second per container", o.Rate)
	}
	if o.Warmup <= 0 {
		o.Warmup = 5 * time.Second
	}
	if o.Steady <= 0 {
		o.Steady = 20 * time.Second
	}
	if o.Clients <= 0 {
		o.Clients = 8
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Vigil == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Vigil = exe
	}
	if os.Geteuid() != 0 {
		return errors.New("bench scale needs root (cgroups, the tracer): run it with sudo")
	}
	root, err := bpf.CgroupRoot()
	if err != nil {
		return err
	}
	if o.ProfileDir != "" {
		if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
			return fmt.Errorf("--profile: %w", err)
		}
	}
	removeStale(root, o.Log)
	work, err := os.MkdirTemp("", "vigil-bench-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	helper, err := buildHelper(work)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(o.Out)
	for _, n := range o.Counts {
		if err := ctx.Err(); err != nil {
			return err
		}
		res := Result{Containers: n, Machine: Machine(), Heavy: min(o.Heavy, n)}
		if why := room(n); why != "" {
			res.Skipped = why
			fmt.Fprintf(o.Log, "bench scale: %d containers: skipped: %s\n", n, why)
		} else if err := runOne(ctx, o, root, work, helper, &res); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res.Error = err.Error()
			fmt.Fprintf(o.Log, "bench scale: %d containers: %v\n", n, err)
		}
		if err := enc.Encode(res); err != nil {
			return err
		}
		if res.Error != "" {
			return fmt.Errorf("%d containers: %s", n, res.Error)
		}
	}
	return nil
}

// perContainer is a generous bound of what one container of the benchmark
// takes from the machine (its process, cgroup, the agent's and kernel's
// share), for room: 5 times the 96-102 KiB MemAvailable fell by per
// container at 5,000 and 10,000 (machine_bytes_per_container).
const perContainer = 512 << 10

// room says why n containers do not fit this machine ("" when they do).
func room(n int) string {
	if avail := memAvailable(); avail > 0 && int64(n)*perContainer > avail*3/4 {
		return fmt.Sprintf("%d containers need about %d MiB, %d MiB available", n, int64(n)*perContainer>>20, avail>>20)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		max, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if used := countProcs(); max > 0 && n+used+1000 > max {
			return fmt.Sprintf("%d processes and %d running exceed kernel.pid_max %d less a margin of 1000 (sysctl kernel.pid_max=%d)", n, used, max, 4*(n+used+1000))
		}
	}
	return ""
}

func memAvailable() int64 {
	v, _ := meminfo("MemAvailable")
	return v
}

// meminfo reads one /proc/meminfo field in bytes.
func meminfo(field string) (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/meminfo", field)
}

func countProcs() int {
	es, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range es {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	return n
}

// buildHelper compiles the workload into dir.
func buildHelper(dir string) (string, error) {
	src := filepath.Join(dir, "helper.c")
	if err := os.WriteFile(src, helperSource, 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "helper")
	var lastErr error
	for _, cc := range []string{"cc", "clang", "gcc"} {
		if _, err := exec.LookPath(cc); err != nil {
			continue
		}
		b, err := exec.Command(cc, "-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector", "-fno-builtin", "-O2", "-o", out, src).CombinedOutput()
		if err == nil {
			return out, nil
		}
		lastErr = fmt.Errorf("%s: %v: %s", cc, err, b)
	}
	if lastErr == nil {
		lastErr = errors.New("no C compiler (cc, clang or gcc): install one (install/deps.sh installs clang)")
	}
	return "", fmt.Errorf("build the workload: %w", lastErr)
}

// parentPrefix names the benchmark's parent cgroups (with the pid).
const parentPrefix = "vigil-bench-scale-"

// removeStale removes the parent cgroups of earlier runs whose process is
// gone (killed before it could clean up).
func removeStale(root string, log io.Writer) {
	es, _ := os.ReadDir(root)
	for _, e := range es {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), parentPrefix))
		if !strings.HasPrefix(e.Name(), parentPrefix) || err != nil {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue // a run in progress
		}
		fmt.Fprintf(log, "bench scale: removing %s left by an earlier run\n", e.Name())
		removeTree(filepath.Join(root, e.Name()))
		rmdir(filepath.Join(v1CPU, e.Name()))
	}
}

// removeTree kills every process below dir and removes its cgroups.
func removeTree(dir string) error {
	os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	for i := 0; i < 500; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil || strings.Contains(string(b), "populated 0") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	es, _ := os.ReadDir(dir)
	var errs []error
	for _, e := range es {
		if e.IsDir() {
			if err := rmdir(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := rmdir(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func rmdir(dir string) error {
	var err error
	for i := 0; i < 100; i++ {
		if err = unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}

// run is one count's machinery: what runOne made, for cleanup.
type run struct {
	o        Options
	root     string
	parent   string // the parent cgroup
	rel      string // parent relative to root, with a leading /
	work     string
	agent    *exec.Cmd
	pprof    string // the agent's metrics address with /debug/pprof ("" none)
	done     chan struct{}
	sock     string
	pids     []int
	ids      []string
	cpuGroup string // the workloads' v1 cpu cgroup ("" on a pure v2 host)
	// retries counts requests sent again after the agent's answer timed out.
	retries atomic.Int64
}

func runOne(ctx context.Context, o Options, root, work, helper string, res *Result) (err error) {
	n := res.Containers
	r := &run{o: o, root: root, work: filepath.Join(work, strconv.Itoa(n)), sock: filepath.Join(work, strconv.Itoa(n), "vigil.sock")}
	r.rel = "/" + parentPrefix + strconv.Itoa(os.Getpid())
	r.parent = filepath.Join(root, r.rel)
	if err := os.MkdirAll(r.work, 0o700); err != nil {
		return err
	}
	defer func() {
		if cerr := r.cleanup(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := os.Mkdir(r.parent, 0o755); err != nil {
		return fmt.Errorf("parent cgroup: %w", err)
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(o.Log, "bench scale: %d containers: "+format+"\n", append([]any{n}, args...)...)
	}
	if err := r.startAgent(ctx); err != nil {
		return err
	}
	pid := r.agent.Process.Pid
	time.Sleep(time.Second)
	res.RSSIdleBytes = rss(pid)
	if res.HeldIdle, err = r.held(); err != nil {
		return err
	}

	// The containers: cgroups, each with its process, and a bundle whose
	// config.json names its cgroups path (what the agent checks a hook's
	// registration against).
	// On a hybrid host the workloads share one v1 cpu cgroup, as a node's
	// pods share kubepods: thousands of them in the root group would each
	// weigh as much as the agent, which no real node does.
	if err := r.groupCPU(); err != nil {
		return err
	}
	avail0 := memAvailable()
	logf("starting %d workloads", n)
	period := int64(1e6 / o.Rate)
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		args := []string{helper, strconv.FormatInt(period, 10), "1"}
		if i < res.Heavy {
			// 1 ms rounds of BURST×4 syscalls and a nanosleep.
			args = []string{helper, "1000", strconv.Itoa(max(1, o.HeavyRate/1000/4))}
		}
		if err := r.start(i, args); err != nil {
			return err
		}
	}
	res.ExpectedPerSec = float64(n-res.Heavy)*o.Rate*5 + float64(res.Heavy)*float64(o.HeavyRate)
	res.WorkloadBytesPerContainer = processBytes(r.pids[len(r.pids)-1])
	time.Sleep(2 * time.Second) // the workloads' start settles
	slab0, _ := meminfo("Slab")

	// Track them all, as the OCI hook registers containers.
	logf("registering")
	profDone := r.profile(ctx, fmt.Sprintf("%d-register.pprof", n), 15*time.Second)
	t0 := time.Now()
	if err := r.each(ctx, r.register); err != nil {
		return err
	}
	res.TrackSeconds = time.Since(t0).Seconds()
	res.TrackRetries = r.retries.Load()
	<-profDone
	logf("tracked all in %.2fs; warming up %v", res.TrackSeconds, o.Warmup)
	if err := sleep(ctx, o.Warmup); err != nil {
		return err
	}
	slab1, _ := meminfo("Slab")
	res.SlabPerContainerBytes = float64(slab1-slab0) / float64(n)

	// The steady window.
	st0, err := r.status()
	if err != nil {
		return err
	}
	cpu0, at0 := cpuTicks(pid), time.Now()
	profDone = r.profile(ctx, fmt.Sprintf("%d-steady.pprof", n), o.Steady-time.Second)
	if err := sleep(ctx, o.Steady); err != nil {
		return err
	}
	<-profDone
	cpu1, at1 := cpuTicks(pid), time.Now()
	res.RSSBytes = rss(pid)
	res.MachineBytesPerContainer = float64(avail0-memAvailable()) / float64(n)
	st1, err := r.status()
	if err != nil {
		return err
	}
	secs := at1.Sub(at0).Seconds()
	res.EventsPerSec = float64(st1.Events-st0.Events) / secs
	res.AgentCPU = float64(cpu1-cpu0) / clockTicks / secs
	res.RSSPerContainerBytes = float64(res.RSSBytes-res.RSSIdleBytes) / float64(n)
	res.DecisionP50Ns, res.DecisionP99Ns, res.DeliveryP99Ns = int64(st1.DecisionP50), int64(st1.DecisionP99), int64(st1.DeliveryP99)
	res.Held = st1.Held
	res.MapBytes, res.Maps = mapMemory(pid)
	d0, _, _ := drops(st0)
	d1, throttled, tracked := drops(st1)
	res.Drops, res.DropsTotal, res.Throttled = d1-d0, d1, throttled
	res.QueueDropped = st1.QueueDropped - st0.QueueDropped
	if tracked != n {
		return fmt.Errorf("%d of %d containers tracked in the agent's status", tracked, n)
	}
	logf("%.0f events/s (%.0f expected), %d drops (%d queue, %d since tracking), agent %.2f cores, RSS %d MiB (%.0f B per container)",
		res.EventsPerSec, res.ExpectedPerSec, res.Drops, res.QueueDropped, res.DropsTotal, res.AgentCPU, res.RSSBytes>>20, res.RSSPerContainerBytes)

	// The containers stop: their processes end, then they unregister (the
	// hook's poststop), and the agent must let go of all of them.
	if err := r.killAll(); err != nil {
		return err
	}
	t0 = time.Now()
	if err := r.each(ctx, r.unregister); err != nil {
		return err
	}
	res.UntrackSeconds = time.Since(t0).Seconds()
	t0 = time.Now()
	for {
		h, err := r.held()
		if err != nil {
			return err
		}
		res.HeldAfter = h
		if h.Tracked == res.HeldIdle.Tracked && h.Detector == res.HeldIdle.Detector && h.Audit <= res.HeldIdle.Audit {
			break
		}
		if time.Since(t0) > 30*time.Second {
			return fmt.Errorf("30s after the last container stopped the agent still holds %+v (before any: %+v)", *h, *res.HeldIdle)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	res.ReleasedSeconds = time.Since(t0).Seconds()
	logf("untracked all in %.2fs, state released %.2fs later", res.UntrackSeconds, res.ReleasedSeconds)
	return nil
}

// drops sums the records the benchmark's containers lost (kernel counters
// and the pipeline's queue) and those over budget, and counts them.
func drops(st *agentctl.Status) (lost, throttled uint64, tracked int) {
	for _, c := range st.Containers {
		if c.Tracked && strings.HasPrefix(c.ID, "bench-") {
			tracked++
			lost += c.Dropped
			throttled += c.Throttled
		}
	}
	return lost + st.QueueDropped, throttled, tracked
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on every
// Linux architecture vigil supports).
const clockTicks = 100

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func (r *run) startAgent(ctx context.Context) error {
	cfg := filepath.Join(r.work, "node.yaml")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o600); err != nil {
		return err
	}
	metrics := ""
	if r.o.ProfileDir != "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		metrics = ln.Addr().String()
		ln.Close()
		r.pprof = metrics
	}
	args := []string{"agent", "--hook-only", "--config", cfg, "--control-socket", r.sock,
		"--listener", filepath.Join(r.work, "seccomp.sock"), "--pin-dir", "", "--state", "", "--notify-keeper", "",
		"--metrics-addr", metrics, "--alerts", filepath.Join(r.work, "alerts.jsonl"), "--log-level", "warn"}
	if metrics != "" {
		args = append(args, "--debug-pprof")
	}
	args = append(args, r.o.AgentArgs...)
	if !r.o.NoAudit {
		args = append(args, "--audit", filepath.Join(r.work, "audit"))
	}
	logf, err := os.Create(filepath.Join(r.work, "agent.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	r.agent = exec.Command(r.o.Vigil, args...)
	r.agent.Stdout, r.agent.Stderr = logf, logf
	if err := r.agent.Start(); err != nil {
		return fmt.Errorf("start the agent: %w", err)
	}
	r.done = make(chan struct{})
	go func() { r.agent.Wait(); close(r.done) }()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-r.done:
			return fmt.Errorf("the agent exited: %s", r.agentLog())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if _, err := r.status(); err == nil {
			return nil
		}
	}
	return fmt.Errorf("the agent did not answer on %s within 15s: %s", r.sock, r.agentLog())
}

// profile writes the agent's CPU profile over the next d to name in
// ProfileDir (nothing without one); the channel closes when it is written.
func (r *run) profile(ctx context.Context, name string, d time.Duration) <-chan struct{} {
	done := make(chan struct{})
	if r.pprof == "" || d < time.Second {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", r.pprof, int(d.Seconds())), nil)
		if err != nil {
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Fprintf(r.o.Log, "bench scale: profile %s: %v\n", name, err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(filepath.Join(r.o.ProfileDir, name))
		if err != nil {
			fmt.Fprintf(r.o.Log, "bench scale: profile %s: %v\n", name, err)
			return
		}
		defer f.Close()
		io.Copy(f, resp.Body)
	}()
	return done
}

func (r *run) agentLog() string {
	b, _ := os.ReadFile(filepath.Join(r.work, "agent.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return strings.TrimSpace(string(b))
}

func (r *run) status() (*agentctl.Status, error) {
	resp, err := agentctl.Call(r.sock, agentctl.Request{Op: agentctl.OpStatus})
	if err != nil {
		return nil, fmt.Errorf("agent status: %w", err)
	}
	return resp.Status, nil
}

func (r *run) held() (*agentctl.Held, error) {
	st, err := r.status()
	if err != nil {
		return nil, err
	}
	if st.Held == nil {
		return nil, errors.New("the agent's status has no held counts: is --vigil an older binary?")
	}
	return st.Held, nil
}

// start makes container i's cgroup and starts its process in it (cloned
// straight into the cgroup), and writes its bundle.
func (r *run) start(i int, args []string) error {
	name := fmt.Sprintf("c%d", i)
	dir := filepath.Join(r.parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("create cgroup: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open cgroup: %w", err)
	}
	pid, err := syscall.ForkExec(args[0], args, &syscall.ProcAttr{Dir: "/", Env: []string{},
		Sys: &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Setpgid: true}})
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("start workload %d: %w", i, err)
	}
	r.pids = append(r.pids, pid)
	r.ids = append(r.ids, fmt.Sprintf("bench-%d-%d", os.Getpid(), i))
	bundle := filepath.Join(r.work, "bundles", name)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return err
	}
	spec := fmt.Sprintf(`{"ociVersion":"1.0.2","linux":{"cgroupsPath":%q}}`, r.rel+"/"+name)
	return os.WriteFile(filepath.Join(bundle, "config.json"), []byte(spec), 0o600)
}

// v1CPU is the cgroup v1 cpu hierarchy of a hybrid host.
const v1CPU = "/sys/fs/cgroup/cpu"

// groupCPU moves the benchmark into a v1 cpu cgroup of its own (on a
// hybrid host), so that the workloads it starts are one group for the CPU
// scheduler; the agent, started before, stays where it was.
func (r *run) groupCPU() error {
	var st unix.Statfs_t
	if err := unix.Statfs(v1CPU, &st); err != nil || st.Type != unix.CGROUP_SUPER_MAGIC {
		return nil // pure v2: the parent cgroup is the group
	}
	r.cpuGroup = filepath.Join(v1CPU, filepath.Base(r.parent))
	if err := os.Mkdir(r.cpuGroup, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cpu cgroup for the workloads: %w", err)
	}
	if err := os.WriteFile(filepath.Join(r.cpuGroup, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return fmt.Errorf("cpu cgroup for the workloads: %w", err)
	}
	return nil
}

// ungroupCPU moves the benchmark back to the root cpu cgroup and removes
// the workloads' group.
func (r *run) ungroupCPU() error {
	if r.cpuGroup == "" {
		return nil
	}
	os.WriteFile(filepath.Join(v1CPU, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
	err := rmdir(r.cpuGroup)
	r.cpuGroup = ""
	return err
}

// each runs f for every container with o.Clients at once.
func (r *run) each(ctx context.Context, f func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for c := 0; c < r.o.Clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(r.ids) {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// call sends one request, again when the agent did not answer in time (a
// registration of the same container again is answered as the first).
func (r *run) call(req agentctl.Request) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var resp *agentctl.Response
		resp, err = agentctl.Call(r.sock, req)
		if err == nil && resp.Error != "" {
			return errors.New(resp.Error)
		}
		var ne interface{ Timeout() bool }
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
			return err
		}
		r.retries.Add(1)
	}
	return err
}

func (r *run) register(i int) error {
	name := fmt.Sprintf("c%d", i)
	req := agentctl.Request{Op: agentctl.OpRegister,
		Container:   &event.Container{ID: r.ids[i], Name: name, Pod: "scale-" + name, Namespace: "bench", Image: "vigil-bench-helper"},
		CgroupsPath: r.rel + "/" + name, Annotations: map[string]string{"ebpf-monitor": "true"},
		Bundle: filepath.Join(r.work, "bundles", name), PID: r.pids[i]}
	if err := r.call(req); err != nil {
		return fmt.Errorf("register container %d: %w", i, err)
	}
	return nil
}

func (r *run) unregister(i int) error {
	if err := r.call(agentctl.Request{Op: agentctl.OpUnregister, Container: &event.Container{ID: r.ids[i]}}); err != nil {
		return fmt.Errorf("unregister container %d: %w", i, err)
	}
	return nil
}

// killAll kills every workload and reaps it.
func (r *run) killAll() error {
	if r.parent == "" {
		return nil
	}
	if err := os.WriteFile(filepath.Join(r.parent, "cgroup.kill"), []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kill the workloads: %w", err)
	}
	for _, pid := range r.pids {
		var ws syscall.WaitStatus
		for {
			_, err := syscall.Wait4(pid, &ws, 0, nil)
			if err != syscall.EINTR {
				break
			}
		}
	}
	r.pids = r.pids[:0]
	return nil
}

// cleanup stops the agent and removes the processes, cgroups and files
// of a count, whatever state the run is in.
func (r *run) cleanup() error {
	var errs []error
	if err := r.killAll(); err != nil {
		errs = append(errs, err)
	}
	if r.agent != nil && r.agent.Process != nil {
		r.agent.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(15 * time.Second):
			r.agent.Process.Kill()
			<-r.done
		}
	}
	if _, err := os.Stat(r.parent); err == nil {
		if err := removeTree(r.parent); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.ungroupCPU(); err != nil {
		errs = append(errs, err)
	}
	os.RemoveAll(r.work)
	return errors.Join(errs...)
}

// rss is a process's resident memory in bytes (VmRSS).
func rss(pid int) int64 {
	v, _ := procStatus(pid, "VmRSS")
	return v
}

// processBytes is what a process has of its own: anonymous memory and
// page tables.
func processBytes(pid int) int64 {
	a, _ := procStatus(pid, "RssAnon")
	p, _ := procStatus(pid, "VmPTE")
	return a + p
}

func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// cpuTicks is a process's user and system time in clock ticks.
func cpuTicks(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces): state is field 3,
	// utime 14 and stime 15.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return u + st
}

// mapMemory sums the memlock the kernel reports for each BPF map a
// process holds (fdinfo), by map name.
func mapMemory(pid int) (int64, map[string]int64) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	es, _ := os.ReadDir(dir)
	seen := map[uint32]bool{}
	byName := map[string]int64{}
	var total int64
	for _, e := range es {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err != nil || l != "anon_inode:bpf-map" {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		var id uint32
		var memlock int64
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			switch k {
			case "map_id":
				n, _ := strconv.ParseUint(v, 10, 32)
				id = uint32(n)
			case "memlock":
				memlock, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		if id == 0 || seen[id] {
			continue
		}
		seen[id] = true
		name := fmt.Sprintf("id%d", id)
		if m, err := ebpf.NewMapFromID(ebpf.MapID(id)); err == nil {
			if info, err := m.Info(); err == nil && info.Name != "" {
				name = info.Name
			}
			m.Close()
		}
		byName[name] += memlock
		total += memlock
	}
	return total, byName
}

// Machine describes where the benchmark ran, for the report.
func Machine() string {
	host, _ := os.Hostname()
	var u unix.Utsname
	unix.Uname(&u)
	mem, _ := meminfo("MemTotal")
	return fmt.Sprintf("%s, Linux %s, %d cpus, %d MiB", host, unix.ByteSliceToString(u.Release[:]), runtime.NumCPU(), mem>>20)
}
