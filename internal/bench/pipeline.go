package bench

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"vigil.dev/vigil/agent"
	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/pipeline"
	"vigil.dev/vigil/plugin"
	"vigil.dev/vigil/seccomp"
)

//go:embed workload/load.go
var loadGo []byte

// Modes of the pipeline benchmark. ModeVigil is the agent's path in this
// process; ModeTraceQuiet is `vigil trace --quiet` as a user runs it; the
// others are peer tracers (see peers.go).
const (
	ModeUntraced      = "untraced"
	ModeVigil         = "vigil"
	ModeTraceQuiet    = "trace-quiet"
	ModeBpftracePrint = "bpftrace-print"
	ModeBpftraceCount = "bpftrace-count"
	ModeAuditd        = "auditd"
	ModeStrace        = "strace"
)

// PipelineWorkloads are the workloads of `vigil bench pipeline`.
var PipelineWorkloads = []string{"idle", "tar-rm", "go-build", "http", "getppid"}

// PipelineModes are the modes `vigil bench pipeline` runs by default;
// PeerModes are added by --peers.
var (
	PipelineModes = []string{ModeUntraced, ModeVigil, ModeTraceQuiet}
	PeerModes     = []string{ModeBpftracePrint, ModeBpftraceCount, ModeAuditd, ModeStrace}
	allModes      = append(append([]string{}, PipelineModes...), PeerModes...)
)

// PipelineOptions choose what `vigil bench pipeline` runs.
type PipelineOptions struct {
	// Reps is the number of runs of each mode (medians are reported); at
	// least 5 for a report.
	Reps int
	// Workloads are names from PipelineWorkloads; empty: all.
	Workloads []string
	// Modes are names from PipelineModes and PeerModes; empty:
	// PipelineModes. ModeUntraced is always run: it is the reference.
	Modes []string
	// Duration is the length of an untraced run (the work per run is
	// calibrated to it; default 5s). With peer modes, getppid runs a
	// twentieth of it (strace and auditd make it 50-100 times slower).
	Duration time.Duration
	// HTTPRate is the http workload's request rate (default 2000/s).
	HTTPRate int
	// Vigil is the vigil binary that ModeTraceQuiet runs ("" skips the
	// mode with a note).
	Vigil string
	// InstallPeers installs missing peer tracers with apt-get.
	InstallPeers bool
	WorkDir      string
	Log          io.Writer
	// Ctx, when done, stops the benchmark after the run in progress (with
	// everything it set up removed); nil: never.
	Ctx context.Context
}

// PipelineReport is the JSON output of `vigil bench pipeline`.
type PipelineReport struct {
	Date       string           `json:"date"`
	Commit     string           `json:"commit,omitempty"`
	Machine    string           `json:"machine"`
	Kernel     string           `json:"kernel"`
	CPUs       int              `json:"cpus"`
	Reps       int              `json:"reps"`
	DurationS  float64          `json:"duration_s"`
	LoadBefore string           `json:"loadavg_before"`
	LoadAfter  string           `json:"loadavg_after"`
	Workloads  []PipelineResult `json:"workloads"`
	Notes      []string         `json:"notes,omitempty"`
}

// PipelineResult is one workload under each mode.
type PipelineResult struct {
	Name  string       `json:"name"`
	Work  string       `json:"work"` // what one run does
	Modes []ModeResult `json:"modes"`
}

// ModeResult is one mode's medians over the repetitions, and its ratios
// to the untraced runs of the same workload.
type ModeResult struct {
	Mode string `json:"mode"`
	// WallMs is the run's wall time (http: from the first scheduled
	// request to the last response).
	WallMs float64 `json:"wall_ms"`
	// CPUMs is the workload's CPU (its cgroup, which holds the kernel's
	// tracing work done in its context) plus the tracer's own processes.
	CPUMs         float64 `json:"cpu_ms"`
	WorkloadCPUMs float64 `json:"workload_cpu_ms"`
	TracerCPUMs   float64 `json:"tracer_cpu_ms"`
	WallRatio     float64 `json:"wall_ratio"`
	CPURatio      float64 `json:"cpu_ratio"`
	// Events is the events the tracer delivered per run (ModeStrace: the
	// syscalls vigil counted for the same run, strace loses none).
	Events       uint64  `json:"events_per_run"`
	EventsPerSec float64 `json:"events_per_sec"`
	// Lost is what the tracer lost over all runs (ring, queue, budget or
	// backlog), LostPct its share of the syscalls.
	Lost    uint64  `json:"lost_total"`
	LostPct float64 `json:"lost_pct"`
	// TracerNsPerEvent is the tracer's own CPU per delivered event;
	// MarginalNsPerEvent the same without what the tracer costs when no
	// event comes (the idle workload's tracer CPU per second, times the
	// run's wall time): the cost that grows with events.
	TracerNsPerEvent   float64 `json:"tracer_cpu_ns_per_event,omitempty"`
	MarginalNsPerEvent float64 `json:"marginal_cpu_ns_per_event,omitempty"`
	// IdleCPUPerSecMs is the idle workload's tracer CPU per second of wall
	// time (the reader's polls, sampling, flushes, the Go runtime).
	IdleCPUPerSecMs float64 `json:"idle_tracer_cpu_ms_per_s,omitempty"`
	// Stages splits ModeVigil's CPU per event (see Stages).
	Stages        *Stages `json:"stages_ns_per_event,omitempty"`
	DeliveryP50Us float64 `json:"delivery_p50_us,omitempty"`
	DeliveryP99Us float64 `json:"delivery_p99_us,omitempty"`
	// HTTP request latency (http workload).
	HTTPP50Us    float64 `json:"http_p50_us,omitempty"`
	HTTPP99Us    float64 `json:"http_p99_us,omitempty"`
	HTTPP99Ratio float64 `json:"http_p99_ratio,omitempty"`
	// ModeTraceQuiet: `vigil trace --quiet -- true` timed after each run
	// (loading the tracer, building the pipeline, ending), and the ratios
	// of the run without it.
	StartupMs    float64   `json:"startup_ms,omitempty"`
	StartupCPUMs float64   `json:"startup_cpu_ms,omitempty"`
	NetWallRatio float64   `json:"net_wall_ratio,omitempty"`
	NetCPURatio  float64   `json:"net_cpu_ratio,omitempty"`
	Runs         []float64 `json:"wall_ms_runs"`
	Note         string    `json:"note,omitempty"`
}

// Stages is vigil's CPU per delivered event by stage: Decode is the
// tracer's reader's looks (ring, decoding, hand-over; each look's thread
// CPU, bpf.Consumer.CPU), Enrich/Audit/Export/Detect the pipeline
// worker's sampled stage times, Other the rest of the process (the
// reader's waits, audit compression and writes on the writer's goroutine,
// garbage collection, the Go runtime, sampling).
type Stages struct {
	Decode float64 `json:"decode"`
	Enrich float64 `json:"enrich"`
	Audit  float64 `json:"audit"`
	Export float64 `json:"export"`
	Detect float64 `json:"detect"`
	Other  float64 `json:"other"`
}

// run is what one run measured.
type run struct {
	wall, wlCPU, trCPU  time.Duration
	events, lost, seen  uint64
	stages              *Stages
	delP50, delP99      time.Duration
	httpP50, httpP99    float64
	startWall, startCPU time.Duration
}

// pworkload is one workload of the pipeline benchmark.
type pworkload struct {
	name string
	// argv is the command of run i (unique per run where a build cache
	// would otherwise skip the work).
	argv func(i int) []string
	work string
	http bool
}

type pbench struct {
	*runner
	po    PipelineOptions
	mon   *bpf.Monitor
	root  string
	model string
	load  string
	runs  int
	peers *peers
	// idle is the tracer CPU per second of each mode with no events (the
	// idle workload), when it ran.
	idle map[string]float64
}

// RunPipeline runs `vigil bench pipeline`.
func RunPipeline(o PipelineOptions) (*PipelineReport, error) {
	if err := bpf.CheckKernel(); err != nil {
		return nil, err
	}
	if o.Reps <= 0 {
		o.Reps = 5
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.HTTPRate <= 0 {
		o.HTTPRate = 2000
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Ctx == nil {
		o.Ctx = context.Background()
	}
	if len(o.Workloads) == 0 {
		o.Workloads = PipelineWorkloads
	}
	for _, w := range o.Workloads {
		if !contains(PipelineWorkloads, w) {
			return nil, fmt.Errorf("workload %q: allowed values are %s", w, strings.Join(PipelineWorkloads, ", "))
		}
	}
	if len(o.Modes) == 0 {
		o.Modes = PipelineModes
	}
	for _, m := range o.Modes {
		if !contains(allModes, m) {
			return nil, fmt.Errorf("mode %q: allowed values are %s", m, strings.Join(allModes, ", "))
		}
	}
	if !contains(o.Modes, ModeUntraced) {
		o.Modes = append([]string{ModeUntraced}, o.Modes...)
	}
	dir := o.WorkDir
	if dir == "" {
		// On disk (not /tmp, which may be tmpfs): the audit log is written
		// where the agent writes it.
		d, err := os.MkdirTemp("/var/tmp", "vigil-bench-pipeline")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	// The audit writer of each run says where its key is, through the
	// standard logger: not the benchmark's output.
	logOut := log.Writer()
	log.SetOutput(io.Discard)
	defer log.SetOutput(logOut)
	b := &pbench{runner: &runner{o: Options{Scale: 1}, dir: dir, log: o.Log}, po: o, idle: map[string]float64{}}
	defer func() {
		for _, c := range b.cleanups {
			c()
		}
	}()
	if o.Vigil == "" && contains(o.Modes, ModeTraceQuiet) {
		b.note("%s skipped: no vigil binary given", ModeTraceQuiet)
		o.Modes = without(o.Modes, ModeTraceQuiet)
		b.po.Modes = o.Modes
	}
	var peerModes []string
	for _, m := range o.Modes {
		if contains(PeerModes, m) {
			peerModes = append(peerModes, m)
		}
	}
	if len(peerModes) > 0 {
		p, usable, err := startPeers(peerModes, o.InstallPeers, dir, o.Log)
		if err != nil {
			return nil, err
		}
		defer p.close()
		b.peers = p
		for _, m := range peerModes {
			if !contains(usable, m) {
				b.note("%s skipped: %s", m, p.why[m])
				b.po.Modes = without(b.po.Modes, m)
			}
		}
	}
	if err := b.buildLoop(); err != nil {
		return nil, err
	}
	if contains(o.Workloads, "http") {
		if err := b.buildGo("httpd", httpdGo); err != nil {
			return nil, err
		}
		if err := b.buildGo("load", loadGo); err != nil {
			return nil, err
		}
	}
	// One tracer for the whole benchmark, as the agent has: the runs
	// measure the event path, not its loading.
	mon, err := bpf.Load(bpf.Config{RingBytes: 16 << 20})
	if err != nil {
		return nil, err
	}
	defer mon.Close()
	b.mon = mon
	if b.root, err = bpf.CgroupRoot(); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	rep := &PipelineReport{Date: time.Now().UTC().Format(time.RFC3339), Kernel: kernel(), CPUs: numCPU(), Reps: o.Reps,
		Machine: machine(host), DurationS: o.Duration.Seconds(), LoadBefore: loadavg()}
	ws, err := b.workloads()
	if err != nil {
		return nil, err
	}
	if err := b.trainModel(ws); err != nil {
		return nil, fmt.Errorf("train the model: %w", err)
	}
	for _, w := range ws {
		res, err := b.compare(w)
		if err != nil {
			return nil, fmt.Errorf("workload %s: %w", w.name, err)
		}
		rep.Workloads = append(rep.Workloads, *res)
	}
	rep.LoadAfter = loadavg()
	rep.Notes = b.notes
	return rep, nil
}

func (b *pbench) buildGo(name string, src []byte) error {
	file := filepath.Join(b.dir, name+".go")
	if err := os.WriteFile(file, src, 0o644); err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(b.dir, name), file)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s (needs go): %v: %s", name, err, out)
	}
	if name == "httpd" {
		b.httpd = filepath.Join(b.dir, name)
	} else {
		b.load = filepath.Join(b.dir, name)
	}
	return nil
}

// workloads sets the chosen workloads up and calibrates each so that an
// untraced run lasts about Duration.
func (b *pbench) workloads() ([]*pworkload, error) {
	var out []*pworkload
	for _, name := range b.po.Workloads {
		dir := filepath.Join(b.dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		target := b.po.Duration
		if name == "getppid" && b.peers != nil {
			target /= 20
		}
		w := &pworkload{name: name}
		switch name {
		case "idle":
			w.argv = func(int) []string { return []string{"sleep", strconv.FormatFloat(target.Seconds(), 'f', 3, 64)} }
			w.work = fmt.Sprintf("sleep %v: what the tracer costs with no events", target)
		case "getppid":
			calls := 1_000_000
			w.argv = func(int) []string { return []string{b.loop, "getppid", strconv.Itoa(calls)} }
			d, err := b.timeUntraced(w)
			if err != nil {
				return nil, err
			}
			calls = scaleTo(calls, d, target)
			w.work = fmt.Sprintf("%d getppid calls", calls)
		case "tar-rm":
			if _, err := exec.LookPath("tar"); err != nil {
				return nil, errors.New("tar-rm needs tar")
			}
			// On tmpfs: the workload measures the syscalls, not this VM's disk.
			if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256m"); err != nil {
				return nil, fmt.Errorf("mount tmpfs: %w", err)
			}
			b.cleanups = append(b.cleanups, func() { unix.Unmount(dir, unix.MNT_DETACH) })
			if err := makeTree(dir, 5000); err != nil {
				return nil, err
			}
			loops := 1
			w.argv = func(int) []string {
				return []string{"/bin/sh", "-c", fmt.Sprintf("cd %s && i=0; while [ $i -lt %d ]; do mkdir x && tar -xf tree.tar -C x && rm -rf x; i=$((i+1)); done", dir, loops)}
			}
			d, err := b.timeUntraced(w)
			if err != nil {
				return nil, err
			}
			loops = scaleTo(loops, d, target)
			w.work = fmt.Sprintf("%d x (tar -x of 5000 files, rm -rf) on tmpfs", loops)
		case "go-build":
			if err := goBuildSetup(dir); err != nil {
				return nil, err
			}
			builds := 1
			w.argv = func(i int) []string {
				// A new constant each build, never seen before: the compiler
				// and linker run; everything else comes from the build cache.
				return []string{"/bin/sh", "-c", fmt.Sprintf(`cd %s && i=0; while [ $i -lt %d ]; do printf 'package main\n\nconst gen = %d%%d\n' $i > gen.go && GOFLAGS= CGO_ENABLED=0 go build -o app . || exit 1; i=$((i+1)); done`, dir, builds, i)}
			}
			if _, err := b.timeUntraced(w); err != nil { // warm the cache
				return nil, err
			}
			d, err := b.timeUntraced(w)
			if err != nil {
				return nil, err
			}
			builds = scaleTo(builds, d, target)
			w.work = fmt.Sprintf("%d incremental go builds (one changed file, warm cache)", builds)
		case "http":
			w.http = true
			w.argv = func(int) []string { return []string{b.httpd} }
			w.work = fmt.Sprintf("loopback HTTP server, %d requests/s for %v from 8 keep-alive connections (client outside the traced cgroup)", b.po.HTTPRate, target)
		}
		fmt.Fprintf(b.log, "%s: %s\n", name, w.work)
		out = append(out, w)
	}
	return out, nil
}

// scaleTo scales n, which took d, to take about target.
func scaleTo(n int, d, target time.Duration) int {
	if d <= 0 {
		return n
	}
	return max(1, int(float64(n)*float64(target)/float64(d)+0.5))
}

func (b *pbench) timeUntraced(w *pworkload) (time.Duration, error) {
	b.runs++
	r, err := b.once(w, ModeUntraced)
	return r.wall, err
}

// trainModel learns a model of the workloads (a short traced run of each),
// as an operator trains one before deploying it: the benchmark's vigil
// runs score every event with it.
func (b *pbench) trainModel(ws []*pworkload) error {
	ctr := &event.Container{ID: "bench", Name: "bench", Image: "vigil.dev/bench"}
	learner := detector.NewLearner(0, 0)
	const perWorkload = 60_000
	for _, w := range ws {
		if w.name == "idle" {
			continue
		}
		cg, err := bpf.NewCgroup(fmt.Sprintf("vigil-bench-train-%d-%s", os.Getpid(), w.name))
		if err != nil {
			return err
		}
		err = func() error {
			defer cg.Remove()
			if err := b.mon.Track(cg.ID); err != nil {
				return err
			}
			defer b.mon.Untrack(cg.ID)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			n := 0
			go func() {
				done <- b.mon.RunBatches(ctx, func(ev *event.Event) {
					if ev.CgroupID != cg.ID || n >= perWorkload {
						return
					}
					n++
					ev.Container = ctr
					learner.Observe(ev)
				}, nil)
			}()
			err := b.start(w, cg, ModeUntraced, 0, nil)
			cancel()
			return errors.Join(err, <-done)
		}()
		if err != nil {
			return err
		}
	}
	m, err := learner.Model(detector.WorkloadKey(ctr))
	if err != nil {
		return err
	}
	b.model = filepath.Join(b.dir, "bench.model")
	fmt.Fprintf(b.log, "model: %d windows of the workloads, %d distinct syscalls\n", m.Units, len(m.Vocab))
	return m.SaveFile(b.model)
}

// compare runs every mode of a workload, interleaved in a shuffled order
// each repetition, and reports medians and ratios.
func (b *pbench) compare(w *pworkload) (*PipelineResult, error) {
	modes := append([]string(nil), b.po.Modes...)
	runs := map[string][]run{}
	for rep := 0; rep < b.po.Reps; rep++ {
		rand.Shuffle(len(modes), func(i, j int) { modes[i], modes[j] = modes[j], modes[i] })
		fmt.Fprintf(b.log, "%s rep %d:", w.name, rep+1)
		for _, mode := range modes {
			if err := b.po.Ctx.Err(); err != nil {
				return nil, fmt.Errorf("interrupted: %w", err)
			}
			b.runs++
			r, err := b.once(w, mode)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", mode, err)
			}
			runs[mode] = append(runs[mode], r)
			fmt.Fprintf(b.log, " %s %.0f ms", mode, float64(r.wall)/1e6)
		}
		fmt.Fprintln(b.log)
	}
	res := &PipelineResult{Name: w.name, Work: w.work}
	base := summarize(ModeUntraced, runs[ModeUntraced])
	vigilEvents := float64(summarize(ModeVigil, runs[ModeVigil]).Events)
	for _, mode := range b.po.Modes {
		m := summarize(mode, runs[mode])
		if base.WallMs > 0 {
			m.WallRatio = round(m.WallMs/base.WallMs, 3)
		}
		if base.CPUMs > 0 {
			m.CPURatio = round(m.CPUMs/base.CPUMs, 3)
		}
		if w.http && base.HTTPP99Us > 0 {
			m.HTTPP99Ratio = round(m.HTTPP99Us/base.HTTPP99Us, 3)
		}
		if w.name == "idle" && m.WallMs > 0 {
			b.idle[mode] = m.TracerCPUMs / (m.WallMs / 1e3)
			m.IdleCPUPerSecMs = round(b.idle[mode], 2)
		} else if idle, ok := b.idle[mode]; ok && m.Events > 0 && mode != ModeTraceQuiet {
			m.MarginalNsPerEvent = round((m.TracerCPUMs-idle*m.WallMs/1e3)*1e6/float64(m.Events), 1)
		}
		switch mode {
		case ModeStrace:
			// strace stops the tracee at each syscall and loses none: its
			// events are the syscalls of the run, which vigil counted.
			if vigilEvents > 0 {
				m.Events = uint64(vigilEvents)
				m.EventsPerSec = round(vigilEvents/(m.WallMs/1e3), 0)
				m.Note = "events: the syscalls vigil saw in the same workload (strace loses none)"
			}
		case ModeTraceQuiet:
			// vigil trace runs the workload in a cgroup of its own: its CPU
			// is the process tree's; the tracer's is that minus the
			// untraced workload's.
			m.TracerCPUMs = round(m.CPUMs-base.WorkloadCPUMs, 1)
			m.WorkloadCPUMs = 0
			m.Note = "wall and CPU of the whole command, start-up included; tracer CPU = total - the untraced workload's CPU; net ratios without the start-up (vigil trace -- true, timed after each run)"
			var sw, sc []float64
			for _, r := range runs[mode] {
				sw, sc = append(sw, msf(r.startWall)), append(sc, msf(r.startCPU))
			}
			m.StartupMs, m.StartupCPUMs = round(median(sw), 1), round(median(sc), 1)
			if base.WallMs > 0 && base.CPUMs > 0 {
				m.NetWallRatio = round((m.WallMs-m.StartupMs)/base.WallMs, 3)
				if w.http {
					// Its wall time is the client's, which starts once the
					// server (and so vigil trace) is up.
					m.NetWallRatio = m.WallRatio
				}
				m.NetCPURatio = round((m.CPUMs-m.StartupCPUMs)/base.CPUMs, 3)
			}
			if vigilEvents > 0 {
				m.TracerNsPerEvent = round(m.TracerCPUMs*1e6/vigilEvents, 1)
				m.Events = uint64(vigilEvents)
				m.EventsPerSec = round(vigilEvents/(m.WallMs/1e3), 0)
			}
		}
		res.Modes = append(res.Modes, m)
	}
	return res, nil
}

// summarize takes the medians of a mode's runs.
func summarize(mode string, rs []run) ModeResult {
	m := ModeResult{Mode: mode}
	if len(rs) == 0 {
		return m
	}
	var wall, wl, tr, ev, eps, nsEv, p50, p99, h50, h99 []float64
	var st [6][]float64
	var lost, seen uint64
	for _, r := range rs {
		wall = append(wall, msf(r.wall))
		wl = append(wl, msf(r.wlCPU))
		tr = append(tr, msf(r.trCPU))
		ev = append(ev, float64(r.events))
		if r.wall > 0 {
			eps = append(eps, float64(r.events)/r.wall.Seconds())
		}
		if r.events > 0 {
			nsEv = append(nsEv, float64(r.trCPU)/float64(r.events))
		}
		lost += r.lost
		seen += r.seen
		p50 = append(p50, float64(r.delP50)/1e3)
		p99 = append(p99, float64(r.delP99)/1e3)
		h50, h99 = append(h50, r.httpP50), append(h99, r.httpP99)
		if s := r.stages; s != nil {
			for i, v := range []float64{s.Decode, s.Enrich, s.Audit, s.Export, s.Detect, s.Other} {
				st[i] = append(st[i], v)
			}
		}
		m.Runs = append(m.Runs, round(msf(r.wall), 1))
	}
	m.WallMs, m.WorkloadCPUMs, m.TracerCPUMs = round(median(wall), 1), round(median(wl), 1), round(median(tr), 1)
	cpu := make([]float64, len(rs))
	for i := range rs {
		cpu[i] = wl[i] + tr[i]
	}
	m.CPUMs = round(median(cpu), 1)
	m.Events = uint64(median(ev))
	m.EventsPerSec = round(median(eps), 0)
	m.Lost = lost
	if seen > 0 {
		m.LostPct = round(100*float64(lost)/float64(seen), 2)
	}
	m.TracerNsPerEvent = round(median(nsEv), 1)
	m.DeliveryP50Us, m.DeliveryP99Us = round(median(p50), 1), round(median(p99), 1)
	m.HTTPP50Us, m.HTTPP99Us = round(median(h50), 0), round(median(h99), 0)
	if len(st[0]) > 0 {
		m.Stages = &Stages{Decode: round(median(st[0]), 1), Enrich: round(median(st[1]), 1), Audit: round(median(st[2]), 1),
			Export: round(median(st[3]), 1), Detect: round(median(st[4]), 1), Other: round(median(st[5]), 1)}
	}
	return m
}

func msf(d time.Duration) float64 { return float64(d) / 1e6 }

// once runs the workload once under mode in a fresh cgroup.
func (b *pbench) once(w *pworkload, mode string) (run, error) {
	var r run
	cg, err := bpf.NewCgroup(fmt.Sprintf("vigil-bench-pl-%d-%d", os.Getpid(), b.runs))
	if err != nil {
		return r, err
	}
	defer func() {
		cg.Kill()
		cg.Remove()
	}()
	var stop func(*run) error
	switch mode {
	case ModeVigil:
		stop, err = b.startVigil(w, cg)
	case ModeBpftracePrint, ModeBpftraceCount, ModeAuditd:
		stop, err = b.peers.start(mode, cg)
	}
	if err != nil {
		return r, err
	}
	self0 := cpuSelf()
	err = b.start(w, cg, mode, b.runs, &r)
	if stop != nil {
		err = errors.Join(err, stop(&r))
	}
	if mode == ModeTraceQuiet && err == nil {
		// Its start-up, to tell it from the run's cost.
		cmd := exec.Command(b.po.Vigil, "trace", "--quiet", "--summary=false", "--", "true")
		t0 := time.Now()
		if out, serr := cmd.CombinedOutput(); serr != nil {
			return r, fmt.Errorf("vigil trace -- true: %v: %s", serr, lastLines(string(out), 3))
		}
		r.startWall = time.Since(t0)
		r.startCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if mode != ModeTraceQuiet {
		// The tracer's CPU in this process (the agent's path; nothing else
		// runs here meanwhile), plus what a peer's processes used.
		r.trCPU += cpuSelf() - self0
		if s := r.stages; s != nil && r.events > 0 {
			s.Other = float64(r.trCPU)/float64(r.events) - (s.Decode + s.Enrich + s.Audit + s.Export + s.Detect)
		}
		usage, _, uerr := bpf.CgroupUsage(cg.Path)
		if uerr != nil {
			return r, uerr
		}
		r.wlCPU = time.Duration(usage)
	}
	return r, err
}

// cpuSelf is this process's CPU time (user and system, all threads).
func cpuSelf() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// start runs the workload under mode in cg and times it.
func (b *pbench) start(w *pworkload, cg *bpf.Cgroup, mode string, i int, r *run) error {
	argv := w.argv(i)
	inCgroup := true
	switch mode {
	case ModeStrace:
		argv = append([]string{"strace", "-f", "-qq", "-o", "/dev/null"}, argv...)
	case ModeAuditd:
		argv = append([]string{"/bin/sh", "-c", `echo ` + auditUID + ` > /proc/self/loginuid && exec "$@"`, "sh"}, argv...)
	case ModeTraceQuiet:
		argv = append([]string{b.po.Vigil, "trace", "--quiet", "--summary=false", "--"}, argv...)
		inCgroup = false
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if inCgroup {
		cmd.SysProcAttr = cg.SysProcAttr()
	}
	var out strings.Builder
	cmd.Stderr = &out
	if w.http {
		return b.runHTTP(cmd, cg, r)
	}
	cmd.Stdout = &out
	t0 := time.Now()
	err := cmd.Run()
	if r != nil {
		r.wall = time.Since(t0)
		if mode == ModeTraceQuiet && cmd.ProcessState != nil {
			r.wlCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, lastLines(out.String(), 5))
	}
	return nil
}

// runHTTP starts the server (cmd), runs the fixed-rate client outside the
// traced cgroup and stops the server.
func (b *pbench) runHTTP(cmd *exec.Cmd, cg *bpf.Cgroup, r *run) error {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	br := bufio.NewReader(stdout)
	addr, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("httpd did not start: %w", err)
	}
	go io.Copy(io.Discard, br)
	target := b.po.Duration
	if r == nil {
		target = time.Second // training
	}
	out, err := exec.Command(b.load, "http://"+strings.TrimSpace(addr)+"/", strconv.Itoa(b.po.HTTPRate), target.String(), "8").Output()
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	var res struct {
		Requests  int     `json:"requests"`
		Errors    int     `json:"errors"`
		ElapsedMs float64 `json:"elapsed_ms"`
		P50Us     float64 `json:"p50_us"`
		P99Us     float64 `json:"p99_us"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return fmt.Errorf("load: %w: %s", err, out)
	}
	if res.Errors > 0 {
		return fmt.Errorf("load: %d of %d requests failed", res.Errors, res.Requests+res.Errors)
	}
	if cmd.SysProcAttr != nil {
		// Everything in the cgroup (strace blocks SIGTERM while it traces).
		cg.Kill()
	} else {
		// vigil trace forwards SIGTERM and ends with the server.
		cmd.Process.Signal(syscall.SIGTERM)
	}
	cmd.Wait()
	stopped = true
	if r != nil {
		r.wall = time.Duration(res.ElapsedMs * 1e6)
		r.httpP50, r.httpP99 = res.P50Us, res.P99Us
		if cmd.ProcessState != nil && cmd.SysProcAttr == nil { // vigil trace
			r.wlCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
	}
	return nil
}

// startVigil puts cg under the agent's event path: the registry (the OCI
// hook's registration: metadata, tracking), the tracer's reader, and the
// pipeline a trace builds with the agent's function: enrichment, the audit
// log with its default durability, the detector with the default rules and
// the model, the response ladder in mode detect, the agent's default output
// (alerts) and CPU sampling every 250 ms. stop drains it and fills r.
func (b *pbench) startVigil(w *pworkload, cg *bpf.Cgroup) (func(*run) error, error) {
	rel, err := control.CgroupRelOf(b.root, cg.Path)
	if err != nil {
		return nil, err
	}
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	reg := plugin.New(plugin.Config{CgroupRoot: b.root,
		CgroupOf: func(int) (string, error) { return "/" + rel, nil }}, b.mon, nopNotifier{}, quiet)
	bundle := filepath.Join(b.dir, fmt.Sprintf("bundle-%d", b.runs))
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), fmt.Appendf(nil, `{"ociVersion":"1.0.2","linux":{"cgroupsPath":%q}}`, "/"+rel), 0o644); err != nil {
		return nil, err
	}
	id := fmt.Sprintf("vigil-bench-%d", b.runs)
	ctr := &event.Container{ID: id, Name: "bench", Image: "vigil.dev/bench", Pod: "bench-" + w.name, Namespace: "vigil-bench"}
	if _, err := reg.Register(agentctl.Request{Container: ctr, CgroupsPath: "/" + rel, Bundle: bundle, PID: os.Getpid(),
		Annotations: map[string]string{annotations.KeyMonitor: "true"}}); err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	auditDir := filepath.Join(b.dir, fmt.Sprintf("audit-%d", b.runs))
	host, _ := os.Hostname()
	tr, err := agent.NewTraceRun(agent.TraceConfig{CgroupID: cg.ID, CgroupDir: cg.Path, CgroupRoot: b.root,
		Detect: pipeline.Detection{Model: b.model}, AuditDir: filepath.Join(auditDir, "log"), Mode: annotations.ModeDetect,
		Sinks: []pipeline.Sink{pipeline.NewAlerts(io.Discard, host)}, Counters: b.mon.Counters, Enrich: reg.EnrichRun, Log: quiet})
	if err != nil {
		reg.Unregister(id)
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	readerCPU := make(chan time.Duration, 1)
	done := make(chan error, 1)
	go func() {
		// The reader's CPU is its looks' (Consumer.CPU): it is not locked
		// to a thread of its own while it waits, as the agent's is not.
		var cpu time.Duration
		err := b.mon.Consume(ctx, bpf.Consumer{Event: tr.P.Event, EndBatch: tr.P.EndBatch, String: tr.P.String, Slot: tr.P.Slot,
			CPU: func(d time.Duration) { cpu += d }})
		readerCPU <- cpu
		done <- err
	}()
	stopSampling := tr.Sample(250 * time.Millisecond)
	return func(r *run) error {
		stopSampling()
		cg.Kill()
		// Let the reader take what is left in the ring.
		time.Sleep(20 * time.Millisecond)
		cancel()
		rerr := <-done
		dec := <-readerCPU
		c, cerr := b.mon.Counters(cg.ID)
		ferr := tr.Finish(c, "vigil bench pipeline")
		reg.Unregister(id)
		os.RemoveAll(auditDir)
		os.RemoveAll(bundle)
		st := tr.P.Stats()
		r.events = st.Events
		r.seen = c.Seen
		r.lost = c.Dropped + st.QueueDropped
		r.delP50, r.delP99 = st.DeliveryP50, st.DeliveryP99
		if st.Events > 0 {
			s := tr.P.StageTimes()
			r.stages = &Stages{Decode: float64(dec) / float64(st.Events), Enrich: s.EnrichNs, Audit: s.AuditNs, Export: s.ExportNs, Detect: s.DetectNs}
		}
		return errors.Join(rerr, cerr, ferr)
	}, nil
}

type nopNotifier struct{}

func (nopNotifier) SetPolicy(string, *seccomp.Policy)     {}
func (nopNotifier) RestorePolicy(string, *seccomp.Policy) {}
func (nopNotifier) Forget(string)                         {}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func without(xs []string, x string) []string {
	var out []string
	for _, y := range xs {
		if y != x {
			out = append(out, y)
		}
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// machine describes the host: name, CPU model, memory.
func machine(host string) string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	var si unix.Sysinfo_t
	mem := ""
	if unix.Sysinfo(&si) == nil {
		mem = fmt.Sprintf(", %.1f GiB", float64(si.Totalram)*float64(si.Unit)/(1<<30))
	}
	return fmt.Sprintf("%s: %d x %s%s", host, runtime.NumCPU(), model, mem)
}

// WriteTable writes the report as readable tables: one per workload, then
// vigil's CPU per event by stage.
func (rep *PipelineReport) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "%s, kernel %s; %d reps, medians; load average %s before, %s after\n", rep.Machine, rep.Kernel, rep.Reps, rep.LoadBefore, rep.LoadAfter)
	for _, wl := range rep.Workloads {
		fmt.Fprintf(w, "\n%s: %s\n", wl.Name, wl.Work)
		fmt.Fprintf(w, "  %-15s %9s %7s %9s %7s %9s %9s %11s %8s %16s %10s\n", "mode", "wall ms", "x wall", "cpu ms", "x cpu", "tracer ms", "ns/event", "events/s", "lost %", "deliv p50/p99", "http p99")
		for _, m := range wl.Modes {
			deliv, http := "", ""
			if m.DeliveryP99Us > 0 {
				deliv = fmt.Sprintf("%.0f/%.0f us", m.DeliveryP50Us, m.DeliveryP99Us)
			}
			if m.HTTPP99Us > 0 {
				http = fmt.Sprintf("%.0f us", m.HTTPP99Us)
			}
			lost := fmt.Sprintf("%.2f", m.LostPct)
			if m.Mode == ModeUntraced || m.Mode == ModeTraceQuiet || m.Mode == ModeStrace {
				lost = "-" // nothing to lose, not measured, none by design
			}
			ns := ""
			if m.TracerNsPerEvent > 0 {
				ns = fmt.Sprintf("%.0f", m.TracerNsPerEvent)
			}
			fmt.Fprintf(w, "  %-15s %9.0f %7.3f %9.0f %7.3f %9.0f %9s %11.0f %8s %16s %10s\n", m.Mode, m.WallMs, m.WallRatio, m.CPUMs, m.CPURatio, m.TracerCPUMs, ns, m.EventsPerSec, lost, deliv, http)
			if m.StartupMs > 0 {
				fmt.Fprintf(w, "  %-15s %9.0f %7.3f %9.0f %7.3f   (without its start-up: %.0f ms wall, %.0f ms CPU)\n", "  net", m.WallMs-m.StartupMs, m.NetWallRatio, m.CPUMs-m.StartupCPUMs, m.NetCPURatio, m.StartupMs, m.StartupCPUMs)
			}
		}
	}
	for _, wl := range rep.Workloads {
		for _, m := range wl.Modes {
			if m.IdleCPUPerSecMs > 0 {
				fmt.Fprintf(w, "idle: %s costs %.1f ms CPU per second with no events\n", m.Mode, m.IdleCPUPerSecMs)
			}
		}
	}
	fmt.Fprintf(w, "\nvigil CPU per event by stage (ns): decode = the reader's looks; other = its waits, audit writes, GC, runtime; marginal = total without the idle cost\n")
	fmt.Fprintf(w, "  %-10s %7s %7s %7s %7s %7s %7s %7s %9s\n", "workload", "decode", "enrich", "audit", "export", "detect", "other", "total", "marginal")
	for _, wl := range rep.Workloads {
		for _, m := range wl.Modes {
			if s := m.Stages; m.Mode == ModeVigil && s != nil && wl.Name != "idle" {
				fmt.Fprintf(w, "  %-10s %7.0f %7.0f %7.0f %7.0f %7.0f %7.0f %7.0f %9.0f\n", wl.Name, s.Decode, s.Enrich, s.Audit, s.Export, s.Detect, s.Other, m.TracerNsPerEvent, m.MarginalNsPerEvent)
			}
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}
