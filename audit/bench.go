package audit

import (
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"vigil.dev/vigil/event"
)

// BenchResult is what Bench measured.
type BenchResult struct {
	Events         int     `json:"events"`
	Seconds        float64 `json:"seconds"`
	EventsPerSec   float64 `json:"events_per_s"`
	BytesPerEvent  float64 `json:"bytes_per_event"`
	CPUNsPerEvent  float64 `json:"cpu_ns_per_event"` // user+system CPU of the whole process per event
	AllocsPerEvent float64 `json:"allocs_per_event"`
	Compression    string  `json:"compression"`
	Fsync          string  `json:"fsync"`
	BatchRecords   int     `json:"batch_records"`
	Noisy          bool    `json:"noisy"`
	Segments       int     `json:"segments"`
}

// Bench appends n synthetic events (a realistic mix: openat with paths,
// getppid, read, connect with addresses, execve with argv, over three
// containers; noisy adds random pointers, results, timing and file names)
// to a new log in o.Dir (which must not hold one) and measures the
// sustained rate, the CPU and the bytes on disk per event.
func Bench(o Options, n int, noisy bool) (BenchResult, error) {
	if segs, _ := listSegments(o.Dir); len(segs) > 0 {
		return BenchResult{}, fmt.Errorf("bench: %s already holds a log; give an empty directory", o.Dir)
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	w, err := Open(o)
	if err != nil {
		return BenchResult{}, err
	}
	evs := make([]event.Event, 1<<16)
	m := newMix()
	if noisy {
		m.rnd = rand.New(rand.NewSource(1))
	}
	for i := range evs {
		m.next(&evs[i])
	}
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuTime()
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := w.AppendEvent(&evs[i%len(evs)]); err != nil {
			w.Close()
			return BenchResult{}, err
		}
	}
	if err := w.Close(); err != nil {
		return BenchResult{}, err
	}
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&ms1)
	st := w.Stats()
	size := dirBytes(o.Dir)
	return BenchResult{Events: n, Seconds: el.Seconds(), EventsPerSec: float64(n) / el.Seconds(),
		BytesPerEvent: float64(size) / float64(n), CPUNsPerEvent: float64(cpu.Nanoseconds()) / float64(n),
		AllocsPerEvent: float64(ms1.Mallocs-ms0.Mallocs) / float64(n), Compression: string(w.opts.Compression),
		Fsync: w.opts.Fsync.String(), BatchRecords: w.opts.BatchRecords, Noisy: noisy, Segments: st.Segments}, nil
}

// cpuTime is the process's user+system CPU time (all threads: the
// writer's goroutines, compression, the garbage collector).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func dirBytes(dir string) int64 {
	var n int64
	segs, _ := listSegments(dir)
	for _, s := range segs {
		if info, err := os.Stat(s.path); err == nil {
			n += info.Size()
		}
	}
	if info, err := os.Stat(filepath.Join(dir, anchorName)); err == nil {
		n += info.Size()
	}
	return n
}

// mix makes a realistic event stream: openat with paths, getppid, read,
// connect with addresses and execve with argv, over a few containers, with
// pointer-valued arguments like a real process's.
type mix struct {
	n     int
	rnd   *rand.Rand // noisy: random pointers, results, gaps, file names
	seq   map[uint64]uint64
	conts []*event.Container
	cgs   []uint64
	base  time.Time
	kt    uint64
}

func newMix() *mix {
	m := &mix{seq: map[uint64]uint64{}, base: time.Unix(1_790_000_000, 123456789), kt: 5_000_000_000}
	for i := 0; i < 3; i++ {
		m.cgs = append(m.cgs, uint64(10_000+i*7))
		m.conts = append(m.conts, &event.Container{ID: fmt.Sprintf("c0ffee%02d5a1b2c3d4e5f60718293a4b5c6d7e8f9", i), Name: fmt.Sprintf("web-%d", i),
			Pod: "shop-7f9c", Namespace: "prod", Image: "registry.local/shop/web:1.4.2"})
	}
	return m
}

var nrOpenat, nrGetppid, nrRead, nrConnect, nrExecve = sysnr("openat"), sysnr("getppid"), sysnr("read"), sysnr("connect"), sysnr("execve")

func sysnr(name string) int32 {
	n, ok := event.SyscallNr(name)
	if !ok {
		panic("no syscall " + name)
	}
	return int32(n)
}

var paths = []string{"/etc/ld.so.cache", "/lib/x86_64-linux-gnu/libc.so.6", "/etc/passwd", "/app/config/settings.yaml",
	"/proc/self/status", "/var/log/app/access.log", "/usr/share/zoneinfo/UTC", "/tmp/upload-3fa9.part"}

// next fills ev (reused, like the tracer does) with the next event.
func (m *mix) next(ev *event.Event) {
	i := m.n
	m.n++
	c := i % 7 % len(m.cgs)
	cg := m.cgs[c]
	m.seq[cg]++
	m.kt += 300 + uint64(i*7919%900)
	if m.rnd != nil {
		m.kt += uint64(m.rnd.Intn(20000))
	}
	*ev = event.Event{Seq: m.seq[cg], KTime: m.kt, Time: m.base.Add(time.Duration(m.kt)), CgroupID: cg, Container: m.conts[c],
		PID: uint32(4000 + c), TID: uint32(4000 + c), Comm: "web", Ret: 0}
	if i%11 == 0 {
		ev.TID = uint32(4100 + c)
	}
	sp := uint64(0x7ffd_3a00_0000 + uint64(i%4096)*16)
	if m.rnd != nil {
		sp = 0x7ff0_0000_0000 + uint64(m.rnd.Int63n(1<<36))&^7
		ev.PID = uint32(4000 + m.rnd.Intn(40))
		ev.TID = ev.PID + uint32(m.rnd.Intn(3))
	}
	switch k := i % 20; {
	case k < 6: // openat
		ev.Nr = nrOpenat
		ev.Path = paths[i%len(paths)]
		if m.rnd != nil && i%3 == 0 {
			ev.Path = fmt.Sprintf("/var/cache/app/%016x.tmp", m.rnd.Uint64())
		}
		ev.Args = [6]uint64{0xffffff9c, sp, 0x80000, 0, 0, 0}
		ev.Ret = int64(3 + i%20)
		if i%9 == 0 {
			ev.Ret = -2
		}
	case k < 10: // getppid
		ev.Nr = nrGetppid
		ev.Ret = 1
	case k < 17: // read
		ev.Nr = nrRead
		ev.Args = [6]uint64{uint64(3 + i%20), 0x5600_1234_0000 + uint64(i%64)*4096, 4096, 0, 0, 0}
		ev.Ret = int64(i * 131 % 4097)
		if m.rnd != nil {
			ev.Args[1], ev.Ret = sp, m.rnd.Int63n(4097)
		}
	case k < 19: // connect
		ev.Nr = nrConnect
		ev.Args = [6]uint64{uint64(5 + i%3), sp + 64, 16, 0, 0, 0}
		ev.Addr = event.Addr{Family: event.AFInet, IP: netip.AddrFrom4([4]byte{10, 96, 0, byte(10 + i%5)}), Port: uint16(5432 + i%2)}
		if i%3 == 0 {
			ev.Addr = event.Addr{Family: event.AFInet6, IP: netip.MustParseAddr("fd00::a:1"), Port: 443}
		}
		ev.Ret = -115
	default: // execve
		ev.Nr = nrExecve
		ev.Path = "/usr/bin/curl"
		ev.Argv = []string{"curl", "-fsS", "--max-time", "5", "http://inventory.prod.svc:8080/items?page=" + fmt.Sprint(i%50)}
		ev.Args = [6]uint64{sp, sp + 256, sp + 512, 0, 0, 0}
		ev.Flags = event.NoReturn
	}
}
