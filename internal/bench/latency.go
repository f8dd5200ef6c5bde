package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/pipeline"
)

// LatencyOptions configures RunLatency.
type LatencyOptions struct {
	// Rates are the workload's syscall rates, in events per second
	// (default 1000 and 10000).
	Rates []int
	// Duration of one run (default 3 s).
	Duration time.Duration
	// Reps: runs of each class and rate, interleaved in a shuffled order
	// (default 3); medians are reported.
	Reps int
	// FloodCalls is the getppid calls per thread of the loss runs
	// (default 250000; 0 with NoFlood skips them).
	FloodCalls int
	NoFlood    bool
	Log        io.Writer
}

// ClassLatency is one latency class at one rate: the time from a record's
// kernel timestamp (syscall exit) to the detector's decision on it, through
// the agent's pipeline, and what it cost.
type ClassLatency struct {
	Class string `json:"class"` // normal or realtime
	Rate  int    `json:"events_per_s"`
	// Events per run and the runs' medians of the pipeline's delivery
	// quantiles (a log-linear histogram: each value is the upper edge of
	// its bucket, at most 25% above the true value).
	Events uint64  `json:"events_per_run"`
	P50Us  float64 `json:"p50_us"`
	P99Us  float64 `json:"p99_us"`
	// ReaderP50Us and ReaderP99Us are the same from the kernel timestamp
	// to the reader's decoding of the record: the kernel's wakeup and the
	// scheduler; the rest of P50Us and P99Us is the hand-over to the
	// pipeline's worker and the detector.
	ReaderP50Us float64 `json:"reader_p50_us"`
	ReaderP99Us float64 `json:"reader_p99_us"`
	// AgentCPU is the CPU time of the reader, pipeline and detector (this
	// process) per second of the run, in percent of one CPU; WorkloadCPU
	// the workload's (its cgroup's).
	AgentCPU    float64 `json:"agent_cpu_pct"`
	WorkloadCPU float64 `json:"workload_cpu_pct"`
	Dropped     uint64  `json:"dropped"`
}

// LossRun is a 4-thread getppid flood in one loss class with a reader
// that keeps up as fast as it can: the records lost and what not losing
// them costs.
type LossRun struct {
	Class      string  `json:"class"` // drop or block
	Threads    int     `json:"threads"`
	Syscalls   uint64  `json:"syscalls"` // seen
	Seconds    float64 `json:"seconds"`
	Rate       float64 `json:"syscalls_per_s"`
	Dropped    uint64  `json:"dropped"`
	Throttled  uint64  `json:"throttled"`
	Received   uint64  `json:"received"`
	Stopped    uint64  `json:"stopped"` // times the block class stopped the process
	AgentCPU   float64 `json:"agent_cpu_pct"`
	CgroupRate int     `json:"cgroup_budget_per_s"`
}

// LatencyReport is the result of RunLatency.
type LatencyReport struct {
	Date    string         `json:"date"`
	Kernel  string         `json:"kernel"`
	CPUs    int            `json:"cpus"`
	Reps    int            `json:"reps"`
	Latency []ClassLatency `json:"latency"`
	Loss    []LossRun      `json:"loss,omitempty"`
}

// pacedC makes getppid calls at a steady rate: clock_nanosleep to an
// absolute deadline between them, so half the events are the sleeps.
var pacedC = []byte(`#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
	long rate = atol(argv[1]), n = atol(argv[2]), step = 1000000000L / rate;
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	for (long i = 0; i < n; i++) {
		syscall(SYS_getppid);
		t.tv_nsec += step;
		while (t.tv_nsec >= 1000000000L) { t.tv_nsec -= 1000000000L; t.tv_sec++; }
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, 0);
	}
	return 0;
}
`)

// floodC runs getppid on THREADS threads, CALLS each.
var floodC = []byte(`#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
static long calls;
static void *run(void *a) { for (long i = 0; i < calls; i++) syscall(SYS_getppid); return a; }
int main(int argc, char **argv) {
	int n = atoi(argv[1]);
	calls = atol(argv[2]);
	pthread_t t[64];
	for (int i = 0; i < n && i < 64; i++) pthread_create(&t[i], 0, run, 0);
	for (int i = 0; i < n && i < 64; i++) pthread_join(t[i], 0);
	return 0;
}
`)

// RunLatency measures the realtime latency class against the normal one
// at each rate, and the block loss class against drop under a flood.
func RunLatency(o LatencyOptions) (*LatencyReport, error) {
	if len(o.Rates) == 0 {
		o.Rates = []int{1000, 10000}
	}
	if o.Duration <= 0 {
		o.Duration = 3 * time.Second
	}
	if o.Reps <= 0 {
		o.Reps = 3
	}
	if o.FloodCalls <= 0 {
		o.FloodCalls = 250_000
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	for _, r := range o.Rates {
		if r < 2 || r > 1_000_000 {
			return nil, fmt.Errorf("rate %d: allowed values are 2 to 1000000 events/s", r)
		}
	}
	dir, err := os.MkdirTemp("", "vigil-bench-latency")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	paced, err := buildC(dir, "paced", pacedC)
	if err != nil {
		return nil, err
	}
	floodBin, err := buildC(dir, "flood", floodC, "-pthread")
	if err != nil {
		return nil, err
	}
	eng, err := detector.New(detector.Config{})
	if err != nil {
		return nil, err
	}
	rep := &LatencyReport{Date: time.Now().UTC().Format(time.RFC3339), Kernel: kernel(), CPUs: runtime.NumCPU(), Reps: o.Reps}

	type key struct {
		class string
		rate  int
	}
	runs := map[key][]ClassLatency{}
	var order []key
	for _, rate := range o.Rates {
		for _, class := range []string{"normal", "realtime"} {
			order = append(order, key{class, rate})
		}
	}
	for rep := 0; rep < o.Reps; rep++ {
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			r, err := latencyRun(eng, paced, k.class, k.rate, o.Duration)
			if err != nil {
				return nil, fmt.Errorf("%s at %d/s: %w", k.class, k.rate, err)
			}
			fmt.Fprintf(o.Log, "latency rep %d: %s %d/s: p50 %.1f µs p99 %.1f µs (at the reader %.1f / %.1f µs), agent %.1f%% workload %.1f%% CPU, dropped %d\n",
				rep+1, k.class, k.rate, r.P50Us, r.P99Us, r.ReaderP50Us, r.ReaderP99Us, r.AgentCPU, r.WorkloadCPU, r.Dropped)
			runs[k] = append(runs[k], r)
		}
	}
	for _, rate := range o.Rates {
		for _, class := range []string{"normal", "realtime"} {
			rs := runs[key{class, rate}]
			m := ClassLatency{Class: class, Rate: rate}
			var p50, p99, r50, r99, acpu, wcpu, ev []float64
			for _, r := range rs {
				p50, p99, acpu, wcpu = append(p50, r.P50Us), append(p99, r.P99Us), append(acpu, r.AgentCPU), append(wcpu, r.WorkloadCPU)
				r50, r99 = append(r50, r.ReaderP50Us), append(r99, r.ReaderP99Us)
				ev = append(ev, float64(r.Events))
				m.Dropped += r.Dropped
			}
			m.P50Us, m.P99Us = round(median(p50), 1), round(median(p99), 1)
			m.ReaderP50Us, m.ReaderP99Us = round(median(r50), 1), round(median(r99), 1)
			m.AgentCPU, m.WorkloadCPU = round(median(acpu), 2), round(median(wcpu), 2)
			m.Events = uint64(median(ev))
			rep.Latency = append(rep.Latency, m)
		}
	}
	if !o.NoFlood {
		for _, block := range []bool{false, true} {
			r, err := lossRun(floodBin, block, 4, o.FloodCalls)
			if err != nil {
				return nil, fmt.Errorf("loss run: %w", err)
			}
			fmt.Fprintf(o.Log, "loss %s: %d syscalls in %.2f s (%.0f/s), dropped %d (throttled %d), stopped %d times, agent %.1f%% CPU\n",
				r.Class, r.Syscalls, r.Seconds, r.Rate, r.Dropped, r.Throttled, r.Stopped, r.AgentCPU)
			rep.Loss = append(rep.Loss, r)
		}
	}
	return rep, nil
}

func buildC(dir, name string, src []byte, flags ...string) (string, error) {
	c := filepath.Join(dir, name+".c")
	if err := os.WriteFile(c, src, 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	args := append([]string{"-O2", "-o", bin, c}, flags...)
	if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the %s workload (needs gcc and libc6-dev): %v: %s", name, err, out)
	}
	return bin, nil
}

// cpuNow is this process's CPU time.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// latencyRun runs the paced workload in a fresh cgroup of that class under
// a fresh tracer and pipeline (its delivery quantiles are this run's).
func latencyRun(eng *detector.Engine, paced, class string, rate int, d time.Duration) (ClassLatency, error) {
	res := ClassLatency{Class: class, Rate: rate}
	cg, err := bpf.NewCgroup(fmt.Sprintf("vigil-bench-lat-%d", os.Getpid()))
	if err != nil {
		return res, err
	}
	defer cg.Remove()
	m, err := bpf.Load(bpf.Config{})
	if err != nil {
		return res, err
	}
	defer m.Close()
	if err := m.TrackWith(cg.ID, bpf.TrackOptions{Realtime: class == "realtime"}); err != nil {
		return res, err
	}
	pl := pipeline.New(pipeline.Config{Detector: eng, TimeEvery: 1})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pl.Run(ctx) }()
	readErr := make(chan error, 1)
	var atReader pipeline.Latency
	go func() {
		defer wg.Done()
		readErr <- m.RunBatches(ctx, func(ev *event.Event) {
			if ev.CgroupID == cg.ID {
				if !ev.Time.IsZero() {
					atReader.Add(time.Since(ev.Time))
				}
				pl.Event(ev)
			}
		}, pl.EndBatch)
	}()
	// Loop iterations: each is a getppid and a clock_nanosleep.
	n := int(float64(rate) / 2 * d.Seconds())
	cpu0, t0 := cpuNow(), time.Now()
	cmd := exec.Command(paced, strconv.Itoa(rate/2), strconv.Itoa(n))
	cmd.SysProcAttr = cg.SysProcAttr()
	out, runErr := cmd.CombinedOutput()
	wall := time.Since(t0)
	agentCPU := cpuNow() - cpu0
	time.Sleep(20 * time.Millisecond) // the last records
	pl.Flush()
	cancel()
	wg.Wait()
	if runErr != nil {
		return res, fmt.Errorf("workload: %v: %s", runErr, out)
	}
	if err := <-readErr; err != nil {
		return res, err
	}
	c, err := m.Counters(cg.ID)
	if err != nil {
		return res, err
	}
	st := pl.Stats()
	res.Events = st.Events
	res.P50Us = float64(st.DeliveryP50) / 1e3
	res.P99Us = float64(st.DeliveryP99) / 1e3
	res.ReaderP50Us = float64(atReader.Quantile(.5)) / 1e3
	res.ReaderP99Us = float64(atReader.Quantile(.99)) / 1e3
	res.AgentCPU = 100 * agentCPU.Seconds() / wall.Seconds()
	if cmd.ProcessState != nil {
		w := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		res.WorkloadCPU = 100 * w.Seconds() / wall.Seconds()
	}
	res.Dropped = c.Dropped
	return res, nil
}

// lossRun floods a cgroup of the drop or block class, the reader taking
// records as fast as it can, with the tracer's default budget.
func lossRun(floodBin string, block bool, threads, calls int) (LossRun, error) {
	res := LossRun{Class: "drop", Threads: threads, CgroupRate: bpf.DefaultCgroupRate}
	if block {
		res.Class = "block"
	}
	cg, err := bpf.NewCgroup(fmt.Sprintf("vigil-bench-loss-%d", os.Getpid()))
	if err != nil {
		return res, err
	}
	defer cg.Remove()
	m, err := bpf.Load(bpf.Config{})
	if err != nil {
		return res, err
	}
	defer m.Close()
	if err := m.TrackWith(cg.ID, bpf.TrackOptions{Block: block}); err != nil {
		return res, err
	}
	var got uint64
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	readErr := make(chan error, 1)
	go func() {
		readErr <- m.Run(ctx, func(ev *event.Event) {
			if ev.CgroupID == cg.ID {
				mu.Lock()
				got++
				mu.Unlock()
			}
		})
	}()
	cpu0, t0 := cpuNow(), time.Now()
	cmd := exec.Command(floodBin, strconv.Itoa(threads), strconv.Itoa(calls))
	cmd.SysProcAttr = cg.SysProcAttr()
	out, runErr := cmd.CombinedOutput()
	wall := time.Since(t0)
	agentCPU := cpuNow() - cpu0
	// Wait for the reader to take what was emitted.
	var c bpf.Counters
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err = m.Counters(cg.ID); err != nil {
			break
		}
		mu.Lock()
		n := got
		mu.Unlock()
		if n >= c.Emitted || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if rerr := <-readErr; rerr != nil && err == nil {
		err = rerr
	}
	if runErr != nil {
		return res, fmt.Errorf("flood: %v: %s", runErr, out)
	}
	if err != nil {
		return res, err
	}
	_, stopped, err := m.Class(cg.ID)
	if err != nil && !errors.Is(err, bpf.ErrNotTracked) {
		return res, err
	}
	mu.Lock()
	res.Received = got
	mu.Unlock()
	res.Syscalls, res.Dropped, res.Throttled, res.Stopped = c.Seen, c.Dropped, c.Throttled, stopped
	res.Seconds = round(wall.Seconds(), 3)
	res.Rate = round(float64(c.Seen)/wall.Seconds(), 0)
	res.AgentCPU = round(100*agentCPU.Seconds()/wall.Seconds(), 1)
	return res, nil
}
