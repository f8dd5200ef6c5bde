package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Floor programs (floor.bpf.c), for benchmarks: what vigil is measured
// against besides the untraced workload.
const (
	FloorEmpty  = "empty"  // an empty program on the tracer's hook
	FloorFilter = "filter" // the cgroup filter alone
	FloorFexit  = "fexit"  // an empty fexit trampoline on getppid
)

// ErrFloorUnsupported: this kernel cannot attach that floor program (fexit
// needs CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS).
var ErrFloorUnsupported = errors.New("not supported by this kernel")

// AttachFloor attaches one floor program and returns its detach. With
// FloorFilter, cgroupID (if not 0) is the one cgroup the filter matches.
func AttachFloor(kind string, cgroupID uint64) (detach func() error, err error) {
	spec, err := loadFloor()
	if err != nil {
		return nil, fmt.Errorf("load floor spec: %w", err)
	}
	progName := map[string]string{FloorEmpty: "floor_empty", FloorFilter: "floor_filter", FloorFexit: "floor_fexit_getppid"}[kind]
	if progName == "" {
		return nil, fmt.Errorf("unknown floor %q (allowed: empty, filter, fexit)", kind)
	}
	for name := range spec.Programs {
		if name != progName {
			delete(spec.Programs, name)
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) || strings.Contains(err.Error(), "not supported") {
			return nil, fmt.Errorf("floor %s: %w", kind, ErrFloorUnsupported)
		}
		return nil, fmt.Errorf("load floor objects: %w", err)
	}
	if kind == FloorFilter && cgroupID != 0 {
		if err := coll.Maps["floor_cgroups"].Put(cgroupID, uint64(1)); err != nil {
			coll.Close()
			return nil, err
		}
	}
	opts := link.TracingOptions{Program: coll.Programs[progName]}
	if kind != FloorFexit {
		opts.AttachType = ebpf.AttachTraceRawTp
	}
	l, err := link.AttachTracing(opts)
	if err != nil {
		coll.Close()
		if errors.Is(err, ebpf.ErrNotSupported) || strings.Contains(err.Error(), "not supported") {
			return nil, fmt.Errorf("floor %s: %w", kind, ErrFloorUnsupported)
		}
		return nil, fmt.Errorf("attach floor %s: %w", kind, err)
	}
	return func() error {
		l.Close()
		coll.Close()
		return nil
	}, nil
}

// Monotonic is CLOCK_MONOTONIC in ns, the clock of Event.KTime.
func Monotonic() uint64 { return monotonicNow() }
