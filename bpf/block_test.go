package bpf

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/privtest"
)

// selfContEnv makes the test binary one of two processes of a container
// that continue each other: "SELF,PEER,MS,THREADS" writes its pid to file
// SELF, reads its peer's from PEER, then for MS ms runs THREADS threads of
// getppid and one thread sending SIGCONT to the peer.
const selfContEnv = "VIGIL_TEST_SELFCONT"

// gatedEnv makes the test binary wait for a byte on its standard input,
// then make N getppid calls: a child started outside the cgroup and moved
// in, so that the tracer stops it, if at all, only after Go's fork is done
// (a child stopped between vfork and exec would hold the parent's fork lock).
const gatedEnv = "VIGIL_TEST_GATED"

func init() {
	if v := os.Getenv(gatedEnv); v != "" {
		n, err := strconv.Atoi(v)
		var b [1]byte
		if _, rerr := os.Stdin.Read(b[:]); err != nil || rerr != nil {
			fmt.Fprintln(os.Stderr, "gated:", err, rerr)
			os.Exit(2)
		}
		for i := 0; i < n; i++ {
			unix.Getppid()
		}
		os.Exit(0)
	}
	v := os.Getenv(selfContEnv)
	if v == "" {
		return
	}
	f := strings.Split(v, ",")
	ms, err1 := strconv.Atoi(f[2])
	threads, err2 := strconv.Atoi(f[3])
	if len(f) != 4 || err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "selfcont: bad", selfContEnv, v)
		os.Exit(2)
	}
	if err := os.WriteFile(f[0], []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "selfcont:", err)
		os.Exit(2)
	}
	peer := 0
	for peer == 0 {
		b, _ := os.ReadFile(f[1])
		peer, _ = strconv.Atoi(string(b))
		time.Sleep(time.Millisecond)
	}
	deadline := time.Now().Add(time.Duration(ms) * time.Millisecond)
	var wg sync.WaitGroup
	for i := 0; i <= threads; i++ {
		wg.Add(1)
		go func(cont bool) {
			defer wg.Done()
			runtime.LockOSThread()
			for time.Now().Before(deadline) {
				if cont {
					unix.Kill(peer, unix.SIGCONT)
				} else {
					unix.Getppid()
				}
			}
		}(i == threads)
	}
	wg.Wait()
	os.Exit(0)
}

// procState is the state letter of /proc/PID/stat ('T': stopped), or 0.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// startGated starts a child that makes `calls` getppid calls in cg, without
// waiting for it: started outside cg, moved in, then let go (gatedEnv).
func startGated(t *testing.T, cg *Cgroup, calls int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", gatedEnv, calls), "GOMAXPROCS=2")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("gated child: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	if err := cg.Join(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	in.Close()
	return cmd
}

// waitExit waits up to d for cmd to exit; it reports whether it did (a
// child still running is killed with its cgroup when the test ends).
func waitExit(t *testing.T, cmd *exec.Cmd, d time.Duration) bool {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("child %d: %v", cmd.Process.Pid, err)
		}
		return true
	case <-time.After(d):
		return false
	}
}

// waitStopped waits up to d until process pid is stopped.
func waitStopped(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if procState(pid) == 'T' {
			return true
		}
	}
	return false
}

// cgState reads a tracked cgroup's state.
func cgState(t *testing.T, m *Monitor, id uint64) vigilCgState {
	t.Helper()
	fd, err := openCgroup(id)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st vigilCgState
	if err := m.objs.VigilCgroups.Lookup(uint32(fd), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// blockCgroup makes a cgroup tracked in the block class by m.
func blockCgroup(t *testing.T, m *Monitor, name string) *Cgroup {
	t.Helper()
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-%s-%d", name, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cg.Remove() })
	if err := m.TrackWith(cg.ID, TrackOptions{Block: true}); err != nil {
		t.Fatal(err)
	}
	return cg
}

// TestBlockClassSelfContinue: two processes of a block-class container
// that continue each other (SIGCONT) as soon as the tracer stops them do
// not escape the budget. Each record over budget stops its process again,
// and records past twice the burst would be dropped as throttled, so what
// the cgroup writes stays within rate × time + 2 × burst, and the budget's
// debt within twice the burst. Before, a process once continued by its
// sibling was never stopped again and wrote at full speed.
func TestBlockClassSelfContinue(t *testing.T) {
	privtest.Require(t)
	const rate, burst = 2000, 500
	m, err := Load(Config{RingBytes: 4 << 20, CgroupRate: rate, CgroupBurst: burst})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	start := time.Now()
	cg := blockCgroup(t, m, "selfcont")
	var got atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, func(ev *event.Event) {
			if ev.CgroupID == cg.ID {
				got.Add(1)
			}
		})
	}()
	dir := t.TempDir()
	var cmds []*exec.Cmd
	for i := 0; i < 2; i++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%d,%d", selfContEnv,
			filepath.Join(dir, strconv.Itoa(i)), filepath.Join(dir, strconv.Itoa(1-i)), 1500, 2), "GOMAXPROCS=4")
		cmd.SysProcAttr = cg.SysProcAttr()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if !waitExit(t, cmd, 30*time.Second) {
			t.Fatalf("process %d still running 30 s after its 1.5 s of work (state %c)", cmd.Process.Pid, procState(cmd.Process.Pid))
		}
	}
	elapsed := time.Since(start)
	st := cgState(t, m, cg.ID)
	debt := int64(st.Tat - monotonicNow())
	c := waitQuiet(t, m, cg.ID, &got)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, paused, _ := m.Class(cg.ID)
	allowed := uint64(elapsed.Seconds()*rate) + 2*burst + 16 // + a record per CPU of slack (budget reset races)
	t.Logf("in %v: seen %d emitted %d dropped %d throttled %d received %d; stopped %d times, continued %d; debt %v; allowed %d",
		elapsed.Round(time.Millisecond), c.Seen, c.Emitted, c.Dropped, c.Throttled, got.Load(), paused, m.Resumed(), time.Duration(debt), allowed)
	if c.Seen != c.Emitted+c.Dropped || got.Load() != c.Emitted {
		t.Fatalf("counters %+v, received %d: want seen = emitted + dropped, all emitted received", c, got.Load())
	}
	if c.Emitted > allowed {
		t.Errorf("the container wrote %d records in %v: over its budget of %d (rate × time + 2 × burst)", c.Emitted, elapsed, allowed)
	}
	if paused < 2 {
		t.Errorf("stopped %d times: want the processes the container continued stopped again", paused)
	}
	if tau := int64(2 * burst * (1e9 / rate)); debt > tau {
		t.Errorf("budget debt %v, want at most twice the burst (%v)", time.Duration(debt), time.Duration(tau))
	}
	for deadline := time.Now().Add(5 * time.Second); pausedLeft(m) != 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := pausedLeft(m); n != 0 {
		t.Errorf("%d processes left in the paused map", n)
	}
}

// TestBlockClassRingFair: with the ring half full (filled by a normal
// container, no reader), a block container within its budget goes on while
// one that has spent more than half its burst is stopped; past three
// quarters, both are. Once a reader drains the ring, the pacer continues
// them, and neither lost a record.
func TestBlockClassRingFair(t *testing.T) {
	privtest.Require(t)
	const ringBytes = 1 << 20
	const rate, burst = 2000, 20000 // a burst of 10 s
	m, err := Load(Config{RingBytes: ringBytes, CgroupRate: rate, CgroupBurst: burst})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	normal, err := NewCgroup(fmt.Sprintf("vigil-test-fairn-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer normal.Remove()
	if err := m.Track(normal.ID); err != nil {
		t.Fatal(err)
	}
	within := blockCgroup(t, m, "fairin")
	over := blockCgroup(t, m, "fairover")
	fill := func(to int) {
		t.Helper()
		for m.ring.pending() < to {
			flood(t, normal, 1, 1000)
		}
	}
	fill(ringBytes/2 + 16<<10)
	if p := m.ring.pending(); p >= ringBytes*3/4-64<<10 {
		t.Fatalf("ring filled to %d bytes, past what this test can use (< %d)", p, ringBytes*3/4-64<<10)
	}
	in1 := startGated(t, within, 10)
	if !waitExit(t, in1, 10*time.Second) {
		t.Fatalf("ring half full: the block container within its budget was stopped (state %c), want it to go on", procState(in1.Process.Pid))
	}
	if _, paused, _ := m.Class(within.ID); paused != 0 {
		t.Fatalf("ring half full: the block container within its budget was stopped %d times", paused)
	}
	// over has spent 8 s of its 10 s burst: not over its budget, but over
	// half its burst.
	fd, err := openCgroup(over.ID)
	if err != nil {
		t.Fatal(err)
	}
	st := cgState(t, m, over.ID)
	st.Tat = monotonicNow() + uint64(8*time.Second)
	err = m.objs.VigilCgroups.Update(uint32(fd), st, ebpf.UpdateExist)
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	ov := startGated(t, over, 10)
	if !waitStopped(ov.Process.Pid, 10*time.Second) {
		t.Fatalf("ring half full: the block container over half its burst was not stopped")
	}
	fill(ringBytes*3/4 + 16<<10)
	in2 := startGated(t, within, 10)
	if !waitStopped(in2.Process.Pid, 10*time.Second) {
		t.Fatalf("ring three quarters full: the block container within its budget was not stopped")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, func(*event.Event) {}) }()
	for _, cmd := range []*exec.Cmd{ov, in2} {
		if !waitExit(t, cmd, 20*time.Second) {
			t.Errorf("process %d not continued once the ring drained (state %c)", cmd.Process.Pid, procState(cmd.Process.Pid))
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, cg := range []*Cgroup{within, over} {
		c, err := m.Counters(cg.ID)
		if err != nil {
			t.Fatal(err)
		}
		if c.Dropped != 0 {
			t.Errorf("block cgroup %d dropped %d records", cg.ID, c.Dropped)
		}
	}
}

// TestBlockClassReleased: nothing the block class stopped stays stopped
// once no pacer runs. Close continues the stopped processes (unpinned and
// pinned); a pinned tracer without a pacer stops nobody (the block cgroup
// is budgeted as the normal class); Unpin (vigil uninstall) continues what
// an agent that ended without Close left stopped.
func TestBlockClassReleased(t *testing.T) {
	privtest.Require(t)
	const rate, burst = 2000, 500
	stopOne := func(t *testing.T, m *Monitor, cg *Cgroup) *exec.Cmd {
		t.Helper()
		cmd := startGated(t, cg, 20_000)
		if !waitStopped(cmd.Process.Pid, 10*time.Second) {
			t.Fatalf("flood over budget not stopped (state %c)", procState(cmd.Process.Pid))
		}
		return cmd
	}
	t.Run("close", func(t *testing.T) {
		m, err := Load(Config{RingBytes: 1 << 20, CgroupRate: rate, CgroupBurst: burst})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		cg := blockCgroup(t, m, "relclose")
		cmd := stopOne(t, m, cg) // no reader: the pacer waits for the ring
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if !waitExit(t, cmd, 10*time.Second) {
			t.Fatalf("process stopped by the block class still stopped after Close (state %c)", procState(cmd.Process.Pid))
		}
	})
	t.Run("pinned", func(t *testing.T) {
		pin := testPinDir(t)
		cfg := Config{PinDir: pin, RingBytes: 1 << 20, CgroupRate: rate, CgroupBurst: burst}
		m, err := Load(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		cg := blockCgroup(t, m, "relpin")
		cmd := stopOne(t, m, cg)
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if !waitExit(t, cmd, 10*time.Second) {
			t.Fatalf("process stopped by the block class still stopped after Close of a pinned tracer (state %c)", procState(cmd.Process.Pid))
		}
		// The pinned tracer runs on without a pacer: no stop, the excess
		// is the cgroup's own loss.
		m2, err := Load(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer m2.Close()
		before, err := m2.Counters(cg.ID)
		if err != nil {
			t.Fatal(err)
		}
		cmd = startGated(t, cg, 20_000)
		if !waitExit(t, cmd, 20*time.Second) {
			t.Fatalf("without a pacer the block class stopped a process (state %c)", procState(cmd.Process.Pid))
		}
		after, err := m2.Counters(cg.ID)
		if err != nil {
			t.Fatal(err)
		}
		if after.Throttled == before.Throttled {
			t.Errorf("without a pacer: throttled %d before and after a flood over budget, want its excess dropped", after.Throttled)
		}
		// An agent that tracks it again paces it, and dies without Close:
		// Unpin continues what it left stopped.
		if err := m2.Track(cg.ID); err != nil {
			t.Fatal(err)
		}
		cmd = stopOne(t, m2, cg)
		m2.endPacer() // the agent is gone; its last heartbeat is still fresh
		if err := Unpin(pin); err != nil {
			t.Fatal(err)
		}
		if !waitExit(t, cmd, 10*time.Second) {
			t.Fatalf("process stopped by the block class still stopped after Unpin (state %c)", procState(cmd.Process.Pid))
		}
	})
}

// TestReleaseStoppedOnlyInCgroup: the sweep continues a noted process only
// while it is in the cgroup it was stopped in (a pid taken by another
// process is left alone), and empties the map.
func TestReleaseStoppedOnlyInCgroup(t *testing.T) {
	privtest.Require(t)
	m, err := Load(Config{RingBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	if err := unix.Kill(pid, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer unix.Kill(pid, unix.SIGCONT)
	if !waitStopped(pid, 5*time.Second) {
		t.Fatal("sleep not stopped")
	}
	// Noted under a cgroup it is not in: not continued.
	if err := m.objs.VigilPaused.Update(uint32(pid), uint64(1<<62), ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	n, err := releaseStopped(m.objs.VigilPacer, m.objs.VigilPaused)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 || procState(pid) != 'T' || pausedLeft(m) != 0 {
		t.Fatalf("continued %d, state %c, %d left: want a process of another cgroup left alone and the map empty", n, procState(pid), pausedLeft(m))
	}
	// Noted under its own cgroup: continued.
	var own uint64
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); err == nil {
		root, _ := CgroupRoot()
		for _, l := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(l, "0::"); ok {
				var st unix.Stat_t
				if unix.Stat(filepath.Join(root, rest), &st) == nil {
					own = st.Ino
				}
			}
		}
	}
	if own == 0 {
		t.Fatal("cgroup of the sleep process not found")
	}
	if err := m.objs.VigilPaused.Update(uint32(pid), own, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	if n, err := releaseStopped(m.objs.VigilPacer, m.objs.VigilPaused); err != nil || n != 1 {
		t.Fatalf("continued %d, %v: want 1", n, err)
	}
	for deadline := time.Now().Add(5 * time.Second); procState(pid) == 'T' && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if s := procState(pid); s == 'T' {
		t.Fatalf("state %c after the sweep, want continued", s)
	}
}
