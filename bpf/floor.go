package bpf

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Floor programs (floor.bpf.c), for benchmarks: what vigil is measured
// against besides the untraced workload.
const (
	FloorEmpty  = "empty"  // an empty program on the tracer's hook
	FloorFilter = "filter" // the cgroup filter alone, matching nothing
	FloorFexit  = "fexit"  // an empty fexit trampoline on getppid

	FloorFilterHelper = "filter-helper" // the filter calling the storage helper for every syscall
	FloorKtime        = "ktime"         // one bpf_ktime_get_ns per syscall (the records' clock)
	FloorKtimeBoot    = "ktime-boot"    // one bpf_ktime_get_boot_ns
)

var floorProgs = map[string]string{
	FloorEmpty: "floor_empty", FloorFilter: "floor_filter", FloorFexit: "floor_fexit_getppid",
	FloorFilterHelper: "floor_filter_helper", FloorKtime: "floor_ktime",
	FloorKtimeBoot: "floor_ktime_boot",
}

// ErrFloorUnsupported: this kernel cannot attach that floor program (fexit
// needs CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS).
var ErrFloorUnsupported = errors.New("not supported by this kernel")

// Floor is an attached floor program.
type Floor struct {
	coll *ebpf.Collection
	prog *ebpf.Program
	l    link.Link
}

// AttachFloor attaches one floor program.
func AttachFloor(kind string) (*Floor, error) {
	spec, err := loadFloor()
	if err != nil {
		return nil, fmt.Errorf("load floor spec: %w", err)
	}
	progName := floorProgs[kind]
	if progName == "" {
		return nil, fmt.Errorf("unknown floor %q (allowed: empty, filter, filter-helper, fexit, ktime, ktime-boot)", kind)
	}
	for name := range spec.Programs {
		if name != progName {
			delete(spec.Programs, name)
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		if unsupported(err) {
			return nil, fmt.Errorf("floor %s: %w", kind, ErrFloorUnsupported)
		}
		return nil, fmt.Errorf("load floor objects: %w", err)
	}
	opts := link.TracingOptions{Program: coll.Programs[progName]}
	if kind != FloorFexit {
		opts.AttachType = ebpf.AttachTraceRawTp
	}
	l, err := link.AttachTracing(opts)
	if err != nil {
		coll.Close()
		if unsupported(err) {
			return nil, fmt.Errorf("floor %s: %w", kind, ErrFloorUnsupported)
		}
		return nil, fmt.Errorf("attach floor %s: %w", kind, err)
	}
	return &Floor{coll: coll, prog: coll.Programs[progName], l: l}, nil
}

func unsupported(err error) bool {
	return errors.Is(err, ebpf.ErrNotSupported) || strings.Contains(err.Error(), "not supported")
}

// Detach removes the floor program.
func (f *Floor) Detach() error {
	f.l.Close()
	f.coll.Close()
	return nil
}

// RunStats is how often a program ran and how long it took in all, counted
// by the kernel while EnableRunStats is on.
type RunStats struct {
	Runs  uint64
	Total time.Duration
}

// NsPerRun is the mean time of one run.
func (s RunStats) NsPerRun() float64 {
	if s.Runs == 0 {
		return 0
	}
	return float64(s.Total.Nanoseconds()) / float64(s.Runs)
}

func progStats(p *ebpf.Program) (RunStats, error) {
	st, err := p.Stats()
	if err != nil {
		return RunStats{}, fmt.Errorf("program stats: %w", err)
	}
	return RunStats{Runs: st.RunCount, Total: st.Runtime}, nil
}

// Stats of the floor program.
func (f *Floor) Stats() (RunStats, error) { return progStats(f.prog) }

// ProgramStats of the tracer's sys_exit program.
func (m *Monitor) ProgramStats() (RunStats, error) { return progStats(m.objs.VigilSysExit) }

// EnableRunStats makes the kernel time every BPF program run until the
// returned closer is closed (it costs each run two clock reads).
func EnableRunStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable bpf run stats: %w", err)
	}
	return c, nil
}

// Monotonic is CLOCK_MONOTONIC in ns, the clock of Event.KTime, read
// through Go's monotonic clock (vDSO) rather than a clock_gettime syscall,
// so a consumer can take it per event.
func Monotonic() uint64 { return monoBase + uint64(time.Since(timeBase)) }

var monoBase, timeBase = clockBase()

// clockBase pairs a CLOCK_MONOTONIC reading with a time.Time, taking the
// middle of two Go clock reads around the syscall.
func clockBase() (uint64, time.Time) {
	t0 := time.Now()
	mono := monotonicNow()
	t1 := time.Now()
	return mono, t0.Add(t1.Sub(t0) / 2)
}
