// Package bench measures vigil's tracer against the same workloads
// untraced and against the floor (an empty BPF program on the same hook),
// side by side in one run: modes interleaved in a shuffled order each
// repetition, medians reported. It needs root, gcc and (for two workloads)
// Go and tar.
package bench

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/event"
)

//go:embed workload/loop.c
var loopC []byte

//go:embed workload/httpd.go
var httpdGo []byte

// Options choose what to run.
type Options struct {
	Reps      int           // repetitions of each mode (median reported); at least 5 for a report
	Peers     bool          // also run each workload under strace -f
	Audit     bool          // also run each workload under vigil writing the audit log
	Poll      time.Duration // the reader's poll interval (0: the tracer's default)
	Workloads []string      // names; empty means all
	Scale     float64       // multiplies the work per run (1 = the default sizes)
	WorkDir   string        // where workloads build and write; a temp dir if empty
	Log       io.Writer
}

// Report is the JSON output of `vigil bench tracer`.
type Report struct {
	Date        string           `json:"date"`
	Kernel      string           `json:"kernel"`
	CPUs        int              `json:"cpus"`
	Reps        int              `json:"reps"`
	Workloads   []WorkloadResult `json:"workloads"`
	Unmonitored *Unmonitored     `json:"unmonitored,omitempty"`
	Throughput  *Throughput      `json:"throughput,omitempty"`
	KernelCost  *KernelCost      `json:"kernel_cost,omitempty"`
	Latency     []LatencyPoint   `json:"latency,omitempty"`
	Notes       []string         `json:"notes,omitempty"`
}

// WorkloadResult compares one workload's modes. Times are medians in ms.
type WorkloadResult struct {
	Name        string  `json:"name"`
	Ops         int     `json:"ops"` // syscalls, iterations or requests per run
	OpUnit      string  `json:"op_unit"`
	BaseMs      float64 `json:"base_ms"`
	FloorMs     float64 `json:"floor_ms"`
	VigilMs     float64 `json:"vigil_ms"`
	FloorRatio  float64 `json:"floor_ratio"`
	VigilRatio  float64 `json:"vigil_ratio"`
	AuditMs     float64 `json:"vigil_audit_ms,omitempty"`
	AuditRatio  float64 `json:"vigil_audit_ratio,omitempty"`
	AuditBytes  float64 `json:"audit_bytes_per_event,omitempty"`
	StraceMs    float64 `json:"strace_ms,omitempty"`
	StraceRatio float64 `json:"strace_ratio,omitempty"`
	AddedNsOp   float64 `json:"vigil_added_ns_per_op"`
	Events      uint64  `json:"events_per_run"`
	Dropped     uint64  `json:"dropped_total"`
	Mismatches  int     `json:"counter_mismatches"`
	AddedNsCall float64 `json:"vigil_added_ns_per_syscall"`
}

// Unmonitored is what a process pays while vigil traces another cgroup.
type Unmonitored struct {
	BaseNs       float64 `json:"base_ns_per_syscall"`
	FloorNs      float64 `json:"empty_program_ns_per_syscall"`
	FilterNs     float64 `json:"vigil_loaded_ns_per_syscall"`
	FexitNs      float64 `json:"fexit_getppid_ns_per_syscall,omitempty"`
	AddedNs      float64 `json:"vigil_added_ns"`
	FloorAddedNs float64 `json:"empty_program_added_ns"`
	FexitAddedNs float64 `json:"fexit_added_ns,omitempty"`
}

// KernelCost is the time the kernel measures inside the BPF programs per
// run (bpf_stats), medians over the repetitions of a getppid loop. Each
// figure includes the cost of the timing itself, which the empty program
// shows; the differences are the programs' own costs.
type KernelCost struct {
	EmptyNs   float64 `json:"empty_program_ns_per_run"`
	FilterNs  float64 `json:"filter_miss_ns_per_run"`
	VigilNs   float64 `json:"vigil_ns_per_monitored_syscall"`
	CaptureNs float64 `json:"capture_ns"`     // vigil - empty
	MissNs    float64 `json:"filter_miss_ns"` // filter - empty
}

// Throughput is the event rate one reader takes from one producer.
type Throughput struct {
	EventsPerSec float64 `json:"events_per_sec"`
	Dropped      uint64  `json:"dropped"`
	Seen         uint64  `json:"seen"`
}

// LatencyPoint is delivery latency (syscall exit in the kernel to receipt in
// user space) and overhead for one wakeup setting.
type LatencyPoint struct {
	PollIntervalUs float64 `json:"poll_interval_us"`
	Rate           string  `json:"rate"` // "1k/s", "100k/s" or "saturation"
	EventsPerSec   float64 `json:"events_per_sec"`
	P50Us          float64 `json:"p50_us"`
	P99Us          float64 `json:"p99_us"`
	P999Us         float64 `json:"p999_us"`
	Dropped        uint64  `json:"dropped"`
	GetppidRatio   float64 `json:"getppid_ratio,omitempty"`
}

type workload struct {
	name   string
	unit   string
	ops    int
	setup  func(dir string) error                 // once
	run    func(dir string, cg *bpf.Cgroup) error // one timed run inside cg
	needs  string                                 // a program the workload needs in PATH
	timeFn func() time.Duration                   // set by run when it times itself (http)
}

type runner struct {
	cleanups []func()
	o        Options
	dir      string
	loop     string
	httpd    string
	log      io.Writer
	notes    []string
	cgCount  int
}

// RunTracer runs the tracer benchmarks.
func RunTracer(o Options) (*Report, error) {
	if err := bpf.CheckKernel(); err != nil {
		return nil, err
	}
	if o.Reps <= 0 {
		o.Reps = 5
	}
	if o.Scale <= 0 {
		o.Scale = 1
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	r := &runner{o: o, log: o.Log}
	dir := o.WorkDir
	if dir == "" {
		d, err := os.MkdirTemp("", "vigil-bench")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	r.dir = dir
	// Unmount before the work dir is removed (defers run last-in first-out).
	defer func() {
		for _, c := range r.cleanups {
			c()
		}
	}()
	if err := r.buildLoop(); err != nil {
		return nil, err
	}
	rep := &Report{Date: time.Now().UTC().Format(time.RFC3339), Kernel: kernel(), CPUs: numCPU(), Reps: o.Reps}
	for _, w := range r.workloads() {
		if !r.want(w.name) {
			continue
		}
		if w.needs != "" {
			if _, err := exec.LookPath(w.needs); err != nil {
				r.note("%s skipped: %s not in PATH", w.name, w.needs)
				continue
			}
		}
		res, err := r.compare(w)
		if err != nil {
			return nil, fmt.Errorf("workload %s: %w", w.name, err)
		}
		rep.Workloads = append(rep.Workloads, *res)
	}
	if r.want("unmonitored") {
		u, err := r.unmonitored()
		if err != nil {
			return nil, fmt.Errorf("unmonitored: %w", err)
		}
		rep.Unmonitored = u
	}
	if r.want("throughput") {
		tp, err := r.throughput()
		if err != nil {
			return nil, fmt.Errorf("throughput: %w", err)
		}
		rep.Throughput = tp
	}
	if r.want("kernel-cost") {
		kc, err := r.kernelCost()
		if err != nil {
			return nil, fmt.Errorf("kernel cost: %w", err)
		}
		rep.KernelCost = kc
	}
	if r.want("latency") {
		lat, err := r.latency()
		if err != nil {
			return nil, fmt.Errorf("latency: %w", err)
		}
		rep.Latency = lat
	}
	rep.Notes = r.notes
	return rep, nil
}

// cfg is the tracer configuration of the vigil modes.
// noBudget: the benchmarks measure the tracer's own path, not the per-cgroup
// budget's (a getppid storm is far above its default rate).
const noBudget = -1

func (r *runner) cfg() bpf.Config { return bpf.Config{PollInterval: r.o.Poll, CgroupRate: noBudget} }

func (r *runner) want(name string) bool {
	if len(r.o.Workloads) == 0 {
		return true
	}
	for _, w := range r.o.Workloads {
		if w == name {
			return true
		}
	}
	return false
}

func (r *runner) note(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	r.notes = append(r.notes, s)
	fmt.Fprintln(r.log, "note:", s)
}

func (r *runner) scaled(n int) int { return max(1, int(float64(n)*r.o.Scale)) }

func (r *runner) buildLoop() error {
	src := filepath.Join(r.dir, "loop.c")
	if err := os.WriteFile(src, loopC, 0o644); err != nil {
		return err
	}
	r.loop = filepath.Join(r.dir, "loop")
	if out, err := exec.Command("gcc", "-O2", "-static", "-o", r.loop, src).CombinedOutput(); err != nil {
		return fmt.Errorf("build the loop workload (needs gcc and libc6-dev): %v: %s", err, out)
	}
	return nil
}

// wrapper, when set, runs every workload command under a peer tracer
// (strace), for the peer comparison.
var wrapper []string

func command(name string, args ...string) *exec.Cmd {
	if len(wrapper) > 0 {
		return exec.Command(wrapper[0], append(append(wrapper[1:len(wrapper):len(wrapper)], name), args...)...)
	}
	return exec.Command(name, args...)
}

// runIn runs a command inside the cgroup and waits for it.
func runIn(cg *bpf.Cgroup, name string, args ...string) error {
	cmd := command(name, args...)
	cmd.SysProcAttr = cg.SysProcAttr()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", name, err, out)
	}
	return nil
}

func (r *runner) workloads() []workload {
	getppidN := r.scaled(2_000_000)
	orcN := r.scaled(200_000)
	files := 5000
	requests := r.scaled(20_000)
	http := &workload{name: "http", unit: "request", ops: requests, needs: "go"}
	http.setup = func(dir string) error {
		src := filepath.Join(dir, "httpd.go")
		if err := os.WriteFile(src, httpdGo, 0o644); err != nil {
			return err
		}
		r.httpd = filepath.Join(dir, "httpd")
		cmd := exec.Command("go", "build", "-o", r.httpd, src)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build httpd: %v: %s", err, out)
		}
		return nil
	}
	var httpTime time.Duration
	http.run = func(dir string, cg *bpf.Cgroup) error {
		d, err := r.httpLoad(cg, requests)
		httpTime = d
		return err
	}
	http.timeFn = func() time.Duration { return httpTime }
	return []workload{
		{name: "getppid", unit: "syscall", ops: getppidN,
			run: func(dir string, cg *bpf.Cgroup) error {
				return runIn(cg, r.loop, "getppid", strconv.Itoa(getppidN))
			}},
		{name: "open-read-close", unit: "iteration", ops: orcN,
			setup: func(dir string) error {
				return os.WriteFile(filepath.Join(dir, "orc.txt"), []byte(strings.Repeat("x", 200)), 0o644)
			},
			run: func(dir string, cg *bpf.Cgroup) error {
				return runIn(cg, r.loop, "orc", strconv.Itoa(orcN), filepath.Join(dir, "orc.txt"))
			}},
		{name: "tar-rm-5000", unit: "file", ops: files, needs: "tar",
			setup: func(dir string) error {
				// On tmpfs: the workload measures the syscalls, not this VM's disk.
				if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256m"); err != nil {
					return fmt.Errorf("mount tmpfs: %w", err)
				}
				r.cleanups = append(r.cleanups, func() { unix.Unmount(dir, unix.MNT_DETACH) })
				return makeTree(dir, files)
			},
			run: func(dir string, cg *bpf.Cgroup) error {
				return runIn(cg, "/bin/sh", "-c", "cd "+dir+" && mkdir -p x && tar -xf tree.tar -C x && rm -rf x")
			}},
		{name: "go-build", unit: "build", ops: 1, needs: "go",
			setup: func(dir string) error { return goBuildSetup(dir) },
			run: func(dir string, cg *bpf.Cgroup) error {
				return goBuildRun(dir, cg)
			}},
		*http,
	}
}

// compare runs base, floor and vigil interleaved, reps times.
func (r *runner) compare(w workload) (*WorkloadResult, error) {
	wdir := filepath.Join(r.dir, w.name)
	if err := os.MkdirAll(wdir, 0o755); err != nil {
		return nil, err
	}
	if w.setup != nil {
		if err := w.setup(wdir); err != nil {
			return nil, err
		}
	}
	// One untimed warm-up run (page cache, Go build cache).
	if _, err := r.once(w, wdir, "base", nil); err != nil {
		return nil, err
	}
	times := map[string][]float64{}
	res := &WorkloadResult{Name: w.name, Ops: w.ops, OpUnit: w.unit}
	var events []float64
	modes := []string{"base", "floor", "vigil"}
	if r.o.Audit {
		modes = append(modes, "audit")
	}
	if r.o.Peers {
		modes = append(modes, "strace")
	}
	var auditBytes []float64
	for rep := 0; rep < r.o.Reps; rep++ {
		rand.Shuffle(len(modes), func(i, j int) { modes[i], modes[j] = modes[j], modes[i] })
		for _, mode := range modes {
			st := &runStats{}
			d, err := r.once(w, wdir, mode, st)
			if err != nil {
				return nil, err
			}
			times[mode] = append(times[mode], float64(d)/1e6)
			if mode == "audit" && st.received > 0 {
				auditBytes = append(auditBytes, float64(st.auditBytes)/float64(st.received))
			}
			if mode == "vigil" {
				events = append(events, float64(st.received))
				res.Dropped += st.c.Dropped
				if st.c.Seen != st.c.Emitted+st.c.Dropped || st.received != st.c.Emitted {
					res.Mismatches++
				}
			}
		}
		fmt.Fprintf(r.log, "%s rep %d:", w.name, rep+1)
		for _, mode := range []string{"base", "floor", "vigil", "audit", "strace"} {
			if len(times[mode]) > 0 {
				fmt.Fprintf(r.log, " %s %.1f ms", mode, last(times[mode]))
			}
		}
		fmt.Fprintln(r.log)
	}
	res.BaseMs, res.FloorMs, res.VigilMs = median(times["base"]), median(times["floor"]), median(times["vigil"])
	res.FloorRatio = round(res.FloorMs/res.BaseMs, 3)
	res.VigilRatio = round(res.VigilMs/res.BaseMs, 3)
	res.AddedNsOp = round((res.VigilMs-res.BaseMs)*1e6/float64(w.ops), 1)
	res.Events = uint64(median(events))
	if r.o.Audit {
		res.AuditMs = median(times["audit"])
		res.AuditRatio = round(res.AuditMs/res.BaseMs, 3)
		res.AuditBytes = round(median(auditBytes), 1)
	}
	if r.o.Peers {
		res.StraceMs = median(times["strace"])
		res.StraceRatio = round(res.StraceMs/res.BaseMs, 3)
	}
	if res.Events > 0 {
		res.AddedNsCall = round((res.VigilMs-res.BaseMs)*1e6/float64(res.Events), 1)
	}
	return res, nil
}

type runStats struct {
	received   uint64
	c          bpf.Counters
	auditBytes int64
}

// once makes a cgroup, sets the mode up, runs the workload and returns the
// time of the run itself (setup and teardown excluded).
func (r *runner) once(w workload, dir, mode string, st *runStats) (time.Duration, error) {
	r.cgCount++
	cg, err := bpf.NewCgroup(fmt.Sprintf("vigil-bench-%d-%d", os.Getpid(), r.cgCount))
	if err != nil {
		return 0, err
	}
	defer cg.Remove()
	var stop func() error
	switch mode {
	case "floor":
		stop, err = attachFloor(bpf.FloorEmpty)
	case "vigil":
		stop, err = r.startVigil(cg.ID, r.cfg(), st, nil)
	case "audit":
		stop, err = r.startAudited(cg.ID, st)
	case "strace":
		wrapper = []string{"strace", "-f", "-qq", "-o", "/dev/null"}
		stop = func() error { wrapper = nil; return nil }
	}
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	runErr := w.run(dir, cg)
	d := time.Since(t0)
	if w.timeFn != nil {
		d = w.timeFn()
	}
	if stop != nil {
		if err := stop(); err != nil {
			return 0, err
		}
	}
	return d, runErr
}

// startVigil loads the tracer, tracks cgID and consumes events the way a
// minimal real consumer does: decode, count per syscall, look at strings.
// onEvent, if set, sees each event too. stop drains and reads the counters.
func (r *runner) startVigil(cgID uint64, cfg bpf.Config, st *runStats, onEvent func(*event.Event)) (func() error, error) {
	m, err := bpf.Load(cfg)
	if err != nil {
		return nil, err
	}
	if err := m.Track(cgID); err != nil {
		m.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var counts [1024]uint64
	var strBytes int
	go func() {
		done <- m.Run(ctx, func(ev *event.Event) {
			if ev.CgroupID != cgID {
				return
			}
			if st != nil {
				st.received++
			}
			counts[ev.Nr&1023]++
			strBytes += len(ev.Path) + len(ev.Addr.Path)
			if onEvent != nil {
				onEvent(ev)
			}
		})
	}()
	return func() error {
		cancel()
		err := <-done
		if st != nil {
			st.c, _ = m.Counters(cgID)
		}
		m.Close()
		return err
	}, nil
}

// unmonitored measures the getppid loop in an untracked cgroup: untraced,
// with the empty program, with vigil tracing another cgroup, and with an
// fexit trampoline on getppid instead of the tracepoint.
func (r *runner) unmonitored() (*Unmonitored, error) {
	n := r.scaled(2_000_000)
	w := workload{name: "unmonitored", run: func(dir string, cg *bpf.Cgroup) error {
		return runIn(cg, r.loop, "getppid", strconv.Itoa(n))
	}}
	other, err := bpf.NewCgroup(fmt.Sprintf("vigil-bench-other-%d", os.Getpid()))
	if err != nil {
		return nil, err
	}
	defer other.Remove()
	times := map[string][]float64{}
	modes := []string{"base", "floor", "filter", "fexit"}
	if f, err := bpf.AttachFloor(bpf.FloorFexit); err != nil {
		r.note("fexit comparison skipped: %v", err)
		modes = modes[:3]
	} else {
		f.Detach()
	}
	for rep := 0; rep < r.o.Reps; rep++ {
		rand.Shuffle(len(modes), func(i, j int) { modes[i], modes[j] = modes[j], modes[i] })
		for _, mode := range modes {
			var stop func() error
			var err error
			switch mode {
			case "floor":
				stop, err = attachFloor(bpf.FloorEmpty)
			case "fexit":
				stop, err = attachFloor(bpf.FloorFexit)
			case "filter":
				stop, err = r.startVigil(other.ID, bpf.Config{CgroupRate: noBudget}, nil, nil)
			}
			if err != nil {
				return nil, err
			}
			d, err := r.once(w, r.dir, "base", nil)
			if stop != nil {
				stop()
			}
			if err != nil {
				return nil, err
			}
			times[mode] = append(times[mode], float64(d)/float64(n))
		}
	}
	u := &Unmonitored{
		BaseNs: round(median(times["base"]), 1), FloorNs: round(median(times["floor"]), 1),
		FilterNs: round(median(times["filter"]), 1), FexitNs: round(median(times["fexit"]), 1),
	}
	u.AddedNs = round(u.FilterNs-u.BaseNs, 1)
	u.FloorAddedNs = round(u.FloorNs-u.BaseNs, 1)
	if u.FexitNs > 0 {
		u.FexitAddedNs = round(u.FexitNs-u.BaseNs, 1)
	}
	fmt.Fprintf(r.log, "unmonitored getppid: base %.1f ns, empty program %.1f ns, vigil loaded %.1f ns, fexit %.1f ns\n", u.BaseNs, u.FloorNs, u.FilterNs, u.FexitNs)
	return u, nil
}

// startAudited is startVigil with every event appended to an audit log,
// as vigil trace --audit and the agent do.
func (r *runner) startAudited(cgID uint64, st *runStats) (func() error, error) {
	dir, err := os.MkdirTemp(r.dir, "audit")
	if err != nil {
		return nil, err
	}
	w, err := audit.Open(audit.Options{Dir: filepath.Join(dir, "log"), KeyFile: filepath.Join(dir, "audit.key")})
	if err != nil {
		return nil, err
	}
	var appendErr error
	stop, err := r.startVigil(cgID, r.cfg(), st, func(ev *event.Event) {
		if appendErr == nil {
			appendErr = w.AppendEvent(ev)
		}
	})
	if err != nil {
		w.Close()
		return nil, err
	}
	return func() error {
		err := stop()
		cerr := w.Close()
		st.auditBytes = dirSize(filepath.Join(dir, "log"))
		os.RemoveAll(dir)
		return errors.Join(err, appendErr, cerr)
	}, nil
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

func attachFloor(kind string) (func() error, error) {
	f, err := bpf.AttachFloor(kind)
	if err != nil {
		return nil, err
	}
	return f.Detach, nil
}

// kernelCost times the programs themselves with the kernel's run stats.
func (r *runner) kernelCost() (*KernelCost, error) {
	stats, err := bpf.EnableRunStats()
	if err != nil {
		return nil, err
	}
	defer stats.Close()
	n := strconv.Itoa(r.scaled(1_000_000))
	var empty, filter, vigil []float64
	for rep := 0; rep < r.o.Reps; rep++ {
		for _, kind := range []string{bpf.FloorEmpty, bpf.FloorFilter} {
			f, err := bpf.AttachFloor(kind)
			if err != nil {
				return nil, err
			}
			_, err = r.once(workload{run: func(dir string, cg *bpf.Cgroup) error { return runIn(cg, r.loop, "getppid", n) }}, r.dir, "base", nil)
			st, serr := f.Stats()
			f.Detach()
			if err != nil || serr != nil {
				return nil, errors.Join(err, serr)
			}
			if kind == bpf.FloorEmpty {
				empty = append(empty, st.NsPerRun())
			} else {
				filter = append(filter, st.NsPerRun())
			}
		}
		r.cgCount++
		cg, err := bpf.NewCgroup(fmt.Sprintf("vigil-bench-kc-%d-%d", os.Getpid(), r.cgCount))
		if err != nil {
			return nil, err
		}
		m, err := bpf.Load(bpf.Config{CgroupRate: noBudget})
		if err == nil {
			err = m.Track(cg.ID)
		}
		if err != nil {
			cg.Remove()
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx, func(*event.Event) {}) }()
		err = runIn(cg, r.loop, "getppid", n)
		st, serr := m.ProgramStats()
		cancel()
		<-done
		m.Close()
		cg.Remove()
		if err != nil || serr != nil {
			return nil, errors.Join(err, serr)
		}
		vigil = append(vigil, st.NsPerRun())
		fmt.Fprintf(r.log, "kernel cost rep %d: empty %.1f ns, filter miss %.1f ns, vigil %.1f ns per run\n", rep+1, last(empty), last(filter), last(vigil))
	}
	kc := &KernelCost{EmptyNs: round(median(empty), 1), FilterNs: round(median(filter), 1), VigilNs: round(median(vigil), 1)}
	kc.CaptureNs = round(kc.VigilNs-kc.EmptyNs, 1)
	kc.MissNs = round(kc.FilterNs-kc.EmptyNs, 1)
	return kc, nil
}

// throughput runs a getppid storm with a large ring and reports the event
// rate the reader took and whether anything was dropped.
func (r *runner) throughput() (*Throughput, error) {
	n := r.scaled(6_000_000)
	var best Throughput
	for rep := 0; rep < r.o.Reps; rep++ {
		r.cgCount++
		cg, err := bpf.NewCgroup(fmt.Sprintf("vigil-bench-tp-%d-%d", os.Getpid(), r.cgCount))
		if err != nil {
			return nil, err
		}
		st := &runStats{}
		stop, err := r.startVigil(cg.ID, bpf.Config{RingBytes: 64 << 20, CgroupRate: noBudget}, st, nil)
		if err != nil {
			cg.Remove()
			return nil, err
		}
		t0 := time.Now()
		err = runIn(cg, r.loop, "getppid", strconv.Itoa(n))
		d := time.Since(t0)
		stop()
		cg.Remove()
		if err != nil {
			return nil, err
		}
		rate := float64(st.received) / d.Seconds()
		fmt.Fprintf(r.log, "throughput rep %d: %.2fM events/s, dropped %d\n", rep+1, rate/1e6, st.c.Dropped)
		if st.c.Dropped == 0 && rate > best.EventsPerSec {
			best = Throughput{EventsPerSec: round(rate, 0), Seen: st.c.Seen}
		}
		if best.EventsPerSec == 0 {
			best.Dropped += st.c.Dropped
		}
	}
	return &best, nil
}

// latency sweeps the reader's poll interval: delivery latency at about 1k
// and 100k events/s and at saturation, and the getppid overhead of the
// setting (the kernel's wakeup interval stays at its default).
func (r *runner) latency() ([]LatencyPoint, error) {
	var out []LatencyPoint
	n := r.scaled(100_000)
	baseTimes := []float64{}
	for rep := 0; rep < 3; rep++ {
		d, err := r.once(workload{run: func(dir string, cg *bpf.Cgroup) error {
			return runIn(cg, r.loop, "getppid", strconv.Itoa(r.scaled(2_000_000)))
		}}, r.dir, "base", nil)
		if err != nil {
			return nil, err
		}
		baseTimes = append(baseTimes, float64(d))
	}
	base := median(baseTimes)
	for _, poll := range []time.Duration{100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond} {
		cfg := bpf.Config{PollInterval: poll, CgroupRate: noBudget}
		for _, rate := range []string{"1k/s", "100k/s", "saturation"} {
			var args []string
			switch rate {
			case "1k/s":
				args = []string{"paced", strconv.Itoa(max(1, n/100)), "1000000"}
			case "100k/s":
				args = []string{"paced", strconv.Itoa(n), "10000"}
			default:
				args = []string{"getppid", strconv.Itoa(r.scaled(2_000_000))}
			}
			r.cgCount++
			cg, err := bpf.NewCgroup(fmt.Sprintf("vigil-bench-lat-%d-%d", os.Getpid(), r.cgCount))
			if err != nil {
				return nil, err
			}
			lats := make([]float64, 0, 1<<20)
			st := &runStats{}
			stop, err := r.startVigil(cg.ID, cfg, st, func(ev *event.Event) {
				lats = append(lats, float64(max(0, int64(bpf.Monotonic())-int64(ev.KTime))))
			})
			if err != nil {
				cg.Remove()
				return nil, err
			}
			t0 := time.Now()
			err = runIn(cg, r.loop, args...)
			d := time.Since(t0)
			stop()
			cg.Remove()
			if err != nil {
				return nil, err
			}
			sort.Float64s(lats)
			p := LatencyPoint{PollIntervalUs: float64(poll) / 1e3, Rate: rate, EventsPerSec: round(float64(st.received)/d.Seconds(), 0),
				P50Us: round(pct(lats, 0.5)/1e3, 1), P99Us: round(pct(lats, 0.99)/1e3, 1), P999Us: round(pct(lats, 0.999)/1e3, 1), Dropped: st.c.Dropped}
			if rate == "saturation" {
				p.GetppidRatio = round(float64(d)/base, 3)
			}
			fmt.Fprintf(r.log, "latency poll %v %s: %.0f ev/s p50 %.1f us p99 %.1f us p99.9 %.1f us dropped %d ratio %.2f\n",
				poll, rate, p.EventsPerSec, p.P50Us, p.P99Us, p.P999Us, p.Dropped, p.GetppidRatio)
			out = append(out, p)
		}
	}
	return out, nil
}

// httpLoad starts the server in cg and times `requests` requests from 4
// keep-alive clients in vigil's own (untraced) cgroup.
func (r *runner) httpLoad(cg *bpf.Cgroup, requests int) (time.Duration, error) {
	cmd := command(r.httpd)
	cmd.SysProcAttr = cg.SysProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("httpd did not start: %w", err)
	}
	url := "http://" + strings.TrimSpace(addr) + "/"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}}
	get := func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	if err := get(); err != nil { // connected and warm
		return 0, err
	}
	var left atomic.Int64
	left.Store(int64(requests))
	var wg sync.WaitGroup
	var firstErr atomic.Value
	t0 := time.Now()
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if err := get(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(t0)
	if e, ok := firstErr.Load().(error); ok {
		return d, e
	}
	return d, nil
}

func makeTree(dir string, files int) error {
	src := filepath.Join(dir, "src")
	for i := 0; i < files; i++ {
		sub := filepath.Join(src, fmt.Sprintf("d%02d", i%50))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		body := strings.Repeat(fmt.Sprintf("file %d\n", i), 10+i%20)
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%04d.txt", i)), []byte(body), 0o644); err != nil {
			return err
		}
	}
	if out, err := exec.Command("tar", "-cf", filepath.Join(dir, "tree.tar"), "-C", src, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("tar: %v: %s", err, out)
	}
	return os.RemoveAll(src)
}

const goBuildMain = `package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
)

const build = %d

type reply struct {
	Build int      ` + "`json:\"build\"`" + `
	Args  []string ` + "`json:\"args\"`" + `
}

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(reply{Build: build, Args: os.Args})
	})
	fmt.Println(strings.ToUpper("ready"), build)
}
`

var goBuildN int

func goBuildSetup(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module benchapp\n\ngo 1.22\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "main.go"), fmt.Appendf(nil, goBuildMain, 0), 0o644)
}

// goBuildRun changes the program (so compile and link run) and builds it
// with a warm cache for everything else.
func goBuildRun(dir string, cg *bpf.Cgroup) error {
	goBuildN++
	if err := os.WriteFile(filepath.Join(dir, "main.go"), fmt.Appendf(nil, goBuildMain, goBuildN), 0o644); err != nil {
		return err
	}
	return runIn(cg, "/bin/sh", "-c", "cd "+dir+" && GOFLAGS= CGO_ENABLED=0 go build -o app .")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

func last(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return xs[len(xs)-1]
}

func round(x float64, digits int) float64 {
	p := 1.0
	for i := 0; i < digits; i++ {
		p *= 10
	}
	return float64(int64(x*p+0.5*sign(x))) / p
}

func sign(x float64) float64 {
	if x < 0 {
		return -1
	}
	return 1
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func numCPU() int { return runtime.NumCPU() }
