package bpf

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/privtest"
)

// floodEnv makes the test binary a flood: THREADS,CALLS getppid calls on
// each of THREADS threads at once.
const floodEnv = "VIGIL_TEST_FLOOD"

func init() {
	v := os.Getenv(floodEnv)
	if v == "" {
		return
	}
	var threads, calls int
	if _, err := fmt.Sscanf(v, "%d,%d", &threads, &calls); err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(2)
	}
	var wg sync.WaitGroup
	for i := 0; i < threads; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			for j := 0; j < calls; j++ {
				unix.Getppid()
			}
		}()
	}
	wg.Wait()
	os.Exit(0)
}

// flood runs threads×calls getppid calls in a child process of cg, and
// returns how long it took.
func flood(t *testing.T, cg *Cgroup, threads, calls int) time.Duration {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%d", floodEnv, threads, calls), "GOMAXPROCS="+strconv.Itoa(threads+1))
	cmd.SysProcAttr = cg.SysProcAttr()
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("flood: %v", err)
	}
	return time.Since(start)
}

// TestBlockClassLosesNothing floods a cgroup with 4 threads of getppid
// faster than the reader takes the records, once in the normal class
// (records are dropped: the flood really outruns the reader) and once in
// the block class: no record dropped, every one delivered, the process
// stopped and continued on the way. Ring: the reader holds its first
// record until the normal class has dropped or the block class has been
// stopped, so the ring fills whatever the machine's speed. Budget: a
// budget far below any flood's rate.
func TestBlockClassLosesNothing(t *testing.T) {
	privtest.Require(t)
	for _, tc := range []struct {
		name          string
		rate, burst   int // the cgroup budget (rate -1: none, only the ring limits)
		calls         int // per thread
		block, lossy  bool
		holdTillFirst bool
	}{
		{"ring full, normal class", -1, 0, 10_000, false, true, true},
		{"ring full, block class", -1, 0, 10_000, true, false, true},
		{"over budget, normal class", 2000, 500, 2500, false, true, false},
		{"over budget, block class", 2000, 500, 2500, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const threads = 4
			r := startHeld(t, Config{RingBytes: 256 << 10, CgroupRate: tc.rate, CgroupBurst: tc.burst}, tc.block, tc.holdTillFirst)
			m, cg := r.m, r.cg
			took := flood(t, cg, threads, tc.calls)
			c, got := r.finish(t)
			class, paused, err := m.Class(cg.ID)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d syscalls in %v: seen %d emitted %d dropped %d throttled %d received %d; stopped %d times, continued %d",
				tc.name, threads*tc.calls, took.Round(time.Millisecond), c.Seen, c.Emitted, c.Dropped, c.Throttled, got, paused, m.Resumed())
			if class.Block != tc.block {
				t.Fatalf("class %+v, want block %v", class, tc.block)
			}
			if c.Seen < uint64(threads*tc.calls) || c.Seen != c.Emitted+c.Dropped || got != c.Emitted {
				t.Fatalf("counters %+v, received %d: want seen >= %d = emitted + dropped, all emitted received", c, got, threads*tc.calls)
			}
			if tc.lossy && c.Dropped == 0 {
				t.Fatalf("normal class dropped nothing: the flood did not outrun the reader, so the block case proves nothing")
			}
			if tc.block {
				if c.Dropped != 0 {
					t.Fatalf("block class dropped %d records (throttled %d)", c.Dropped, c.Throttled)
				}
				if paused == 0 || m.Resumed() == 0 {
					t.Fatalf("block class: stopped %d times, continued %d: want both", paused, m.Resumed())
				}
			}
			if n := pausedLeft(m); n != 0 {
				t.Fatalf("%d processes left in the paused map", n)
			}
		})
	}
}

// heldRun is a fresh Monitor tracking a new cgroup (in the block class or
// not) with its reader running.
type heldRun struct {
	m      *Monitor
	cg     *Cgroup
	got    atomic.Uint64 // the cgroup's records received
	cancel context.CancelFunc
	done   chan error
}

// startHeld loads a Monitor with cfg, tracks a new cgroup and runs the
// reader. With hold, the reader holds the cgroup's first record until the
// tracer has dropped one of its records or stopped its process, so that
// the ring fills whatever the machine's speed. Everything is closed and
// removed at the end of the test.
func startHeld(t *testing.T, cfg Config, block, hold bool) *heldRun {
	t.Helper()
	m, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-block-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cg.Remove() })
	if err := m.TrackWith(cg.ID, TrackOptions{Block: block}); err != nil {
		t.Fatal(err)
	}
	r := &heldRun{m: m, cg: cg, done: make(chan error, 1)}
	release := make(chan struct{})
	if !hold {
		close(release)
	}
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	go func() {
		r.done <- m.Run(ctx, func(ev *event.Event) {
			if ev.CgroupID == cg.ID {
				<-release
				r.got.Add(1)
			}
		})
	}()
	if hold {
		go func() {
			defer close(release)
			for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				c, _ := m.Counters(cg.ID)
				_, paused, _ := m.Class(cg.ID)
				if c.Dropped > 0 || paused > 0 {
					return
				}
			}
		}()
	}
	return r
}

// finish waits until every record the cgroup emitted is received, stops
// the reader and returns the counters and the records received.
func (r *heldRun) finish(t *testing.T) (Counters, uint64) {
	t.Helper()
	c := waitQuiet(t, r.m, r.cg.ID, &r.got)
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
	return c, r.got.Load()
}

// waitQuiet waits until every record the cgroup emitted is received.
func waitQuiet(t *testing.T, m *Monitor, id uint64, got *atomic.Uint64) Counters {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := m.Counters(id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Load() >= c.Emitted || time.Now().After(deadline) {
			return c
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pausedLeft(m *Monitor) int {
	var k uint32
	var v uint64
	n := 0
	for it := m.objs.VigilPaused.Iterate(); it.Next(&k, &v); {
		n++
	}
	return n
}

// TestRealtimeClassWakes checks the kernel side of the realtime class: with
// a wakeup policy that wakes nobody for seconds, the records of a normal
// cgroup wake no reader, those of a realtime cgroup wake it at once
// (edge-triggered epoll on the ring sees only the kernel's wakeups).
func TestRealtimeClassWakes(t *testing.T) {
	privtest.Require(t)
	m, err := Load(Config{RingBytes: 1 << 20, IdleAfter: 20 * time.Second, WakeInterval: 19 * time.Second, WakeBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var cgs [2]*Cgroup
	for i, rt := range []bool{false, true} {
		cg, err := NewCgroup(fmt.Sprintf("vigil-test-rt%d-%d", i, os.Getpid()))
		if err != nil {
			t.Fatal(err)
		}
		defer cg.Remove()
		if err := m.TrackWith(cg.ID, TrackOptions{Realtime: rt}); err != nil {
			t.Fatal(err)
		}
		if o, _, err := m.Class(cg.ID); err != nil || o.Realtime != rt {
			t.Fatalf("class %+v, %v: want realtime %v", o, err, rt)
		}
		cgs[i] = cg
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(epfd)
	fd := m.objs.VigilEvents.FD()
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(fd)}); err != nil {
		t.Fatal(err)
	}
	wakeups := func(timeout time.Duration) int {
		var evs [4]unix.EpollEvent
		n, err := unix.EpollWait(epfd, evs[:], int(timeout/time.Millisecond))
		if err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
		return n
	}
	// The first record after the load wakes (no wakeup yet): take it.
	flood(t, cgs[0], 1, 10)
	wakeups(200 * time.Millisecond)
	for wakeups(0) > 0 {
	}
	flood(t, cgs[0], 1, 1000)
	if n := wakeups(200 * time.Millisecond); n != 0 {
		t.Fatalf("normal class: %d wakeups, want none within the wake interval", n)
	}
	flood(t, cgs[1], 1, 10)
	if n := wakeups(2 * time.Second); n == 0 {
		t.Fatal("realtime class: no wakeup")
	}
}

// TestRealtimeReaderTakesRecordsAtOnce: with a realtime cgroup tracked,
// the reader waits between looks for the kernel's wakeup, so a realtime
// record reaches the consumer long before the next look is due (here the
// looks are 10 s apart; a reader that only slept between them would
// deliver after up to 10 s).
func TestRealtimeReaderTakesRecordsAtOnce(t *testing.T) {
	privtest.Require(t)
	const poll = 10 * time.Second
	m, err := Load(Config{RingBytes: 1 << 20, PollInterval: poll, MaxPollInterval: poll, IdleAfter: 60 * time.Second,
		WakeInterval: 50 * time.Second, WakeBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-rtread-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Remove()
	if err := m.TrackWith(cg.ID, TrackOptions{Realtime: true}); err != nil {
		t.Fatal(err)
	}
	got := make(chan time.Time, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, func(ev *event.Event) {
			if ev.CgroupID == cg.ID {
				select {
				case got <- time.Now():
				default:
				}
			}
		})
	}()
	defer func() {
		cancel()
		m.Close()
		<-done
	}()
	time.Sleep(300 * time.Millisecond) // the reader is parked between looks
	start := time.Now()
	flood(t, cg, 1, 10)
	select {
	case at := <-got:
		if d := at.Sub(start); d > poll/2 {
			t.Fatalf("realtime record delivered after %v, as late as the next look (%v)", d, poll)
		} else {
			t.Logf("realtime record delivered %v after its process started", d)
		}
	case <-time.After(poll / 2):
		t.Fatalf("no realtime record within %v (looks every %v)", poll/2, poll)
	}
	if _, err := m.Untrack(cg.ID); err != nil {
		t.Fatal(err)
	}
	if n := m.rtCount.Load(); n != 0 {
		t.Errorf("%d realtime cgroups after untrack, want 0", n)
	}
}

// TestTrackKeepsClass: a cgroup tracked again with plain Track (an agent
// after a restart, its policy no longer asking for a class) keeps the
// class the tracer holds for it, and this Monitor's reader serves it.
func TestTrackKeepsClass(t *testing.T) {
	privtest.Require(t)
	m, err := Load(Config{RingBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-keep-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Remove()
	if err := m.TrackWith(cg.ID, TrackOptions{Realtime: true}); err != nil {
		t.Fatal(err)
	}
	m.setRealtime(cg.ID, false) // as a new agent's Monitor would start
	if err := m.Track(cg.ID); err != nil {
		t.Fatal(err)
	}
	if o, _, err := m.Class(cg.ID); err != nil || !o.Realtime {
		t.Fatalf("class after Track: %+v, %v: want realtime kept", o, err)
	}
	if n := m.rtCount.Load(); n != 1 {
		t.Errorf("%d realtime cgroups for the reader after Track, want 1", n)
	}
	if _, err := m.Untrack(cg.ID); err != nil {
		t.Fatal(err)
	}
}

// TestBlockClassPendingStop: a SIGSTOP pending for the whole process that
// no thread takes (here the kernel woke the main thread for it, which
// waits in vfork; on a busy node, a thread that does not get a CPU) must
// not let the other threads of a block-class process write past a full
// ring: each one stops itself on its way out. Without that, every record
// past the full ring was dropped.
func TestBlockClassPendingStop(t *testing.T) {
	privtest.Require(t)
	bin := filepath.Join(t.TempDir(), "stopflood")
	if out, err := exec.Command("gcc", "-static", "-O1", "-pthread", "-o", bin, "testdata/stopflood.c").CombinedOutput(); err != nil {
		t.Fatalf("build stopflood: gcc: %v: %s", err, out)
	}
	const threads, calls = 4, 10_000
	r := startHeld(t, Config{RingBytes: 256 << 10}, true, true)
	m, cg := r.m, r.cg
	cmd := exec.Command(bin, strconv.Itoa(threads), strconv.Itoa(calls), "1500")
	cmd.SysProcAttr = cg.SysProcAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("stopflood said %q (%v), want ready", line, err)
	}
	// The main thread waits in vfork: the kernel wakes it for this stop,
	// and it cannot take it. Then the threads flood.
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stdin.Write([]byte("\n"))
	// A process left stopped fails the test instead of hanging it.
	stuck := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer stuck.Stop()
	rest, _ := io.ReadAll(out)
	if err := cmd.Wait(); err != nil || string(rest) != "done\n" {
		t.Fatalf("stopflood: %v, said %q", err, rest)
	}
	c, got := r.finish(t)
	_, paused, _ := m.Class(cg.ID)
	t.Logf("%d syscalls: seen %d emitted %d dropped %d received %d; stopped %d times, continued %d",
		threads*calls, c.Seen, c.Emitted, c.Dropped, got, paused, m.Resumed())
	if c.Seen < threads*calls || c.Seen != c.Emitted+c.Dropped || got != c.Emitted {
		t.Fatalf("counters %+v, received %d: want seen >= %d = emitted + dropped, all emitted received", c, got, threads*calls)
	}
	if c.Dropped != 0 {
		t.Fatalf("dropped %d records while the process's SIGSTOP was pending", c.Dropped)
	}
	if paused == 0 || m.Resumed() == 0 {
		t.Fatalf("stopped %d times, continued %d: want both", paused, m.Resumed())
	}
	if n := pausedLeft(m); n != 0 {
		t.Fatalf("%d processes left in the paused map", n)
	}
}

// TestPacerRecheck: a process the pacer continued that is found stopped
// with no note once stopGrace has passed (a stop the tracer sent before
// the pacer removed its note, landing after the SIGCONT) is continued
// again; one with a note, or continued just now, is left to the pacer's
// usual pass.
func TestPacerRecheck(t *testing.T) {
	m := loadMonitor(t, Config{})
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-recheck-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Remove()
	root, err := CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = cg.SysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := uint32(cmd.Process.Pid)
	waitState := func(stopped bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); procStopped(int(pid)) != stopped; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("process stopped %v, want %v", !stopped, stopped)
			}
		}
	}
	if err := syscall.Kill(int(pid), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitState(true)
	p := &pacer{paused: m.objs.VigilPaused, root: root}
	entry := continued{stopped{pid, cg.ID}, time.Now()}

	p.recent = []continued{entry}
	p.recheck(entry.at.Add(stopGrace / 2))
	if len(p.recent) != 1 || !procStopped(int(pid)) {
		t.Fatalf("continued within stopGrace: %d entries kept, stopped %v", len(p.recent), procStopped(int(pid)))
	}
	if err := p.paused.Put(pid, cg.ID); err != nil {
		t.Fatal(err)
	}
	p.recheck(entry.at.Add(time.Second))
	if len(p.recent) != 0 || !procStopped(int(pid)) || p.resumed.Load() != 0 {
		t.Fatalf("a noted process: %d entries kept, stopped %v, continued %d; want it left to the pass", len(p.recent), procStopped(int(pid)), p.resumed.Load())
	}
	if err := p.paused.Delete(pid); err != nil {
		t.Fatal(err)
	}
	p.recent = []continued{entry}
	p.recheck(entry.at.Add(time.Second))
	waitState(false)
	if len(p.recent) != 0 || p.resumed.Load() != 1 {
		t.Fatalf("%d entries kept, continued %d; want none kept, 1", len(p.recent), p.resumed.Load())
	}
}
