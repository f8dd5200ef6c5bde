package bpf

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/privtest"
)

var (
	probeOnce sync.Once
	probePath string
	probeErr  error
)

// buildProbe compiles testdata/probe.c statically (no loader syscalls).
func buildProbe(t *testing.T) string {
	t.Helper()
	probeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vigil-probe")
		if err != nil {
			probeErr = err
			return
		}
		probePath = filepath.Join(dir, "probe")
		out, err := exec.Command("gcc", "-static", "-O1", "-pthread", "-o", probePath, "testdata/probe.c").CombinedOutput()
		if err != nil {
			probeErr = fmt.Errorf("gcc: %v: %s", err, out)
		}
	})
	if probeErr != nil {
		t.Fatalf("build probe: %v", probeErr)
	}
	return probePath
}

// tracedRun runs argv in a fresh tracked cgroup, with the Monitor reading
// throughout (unless readLate: then only after the command ended), and
// returns the events and final counters.
func tracedRun(t *testing.T, m *Monitor, readLate bool, argv ...string) ([]event.Event, Counters, *Cgroup) {
	t.Helper()
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-%d-%s", os.Getpid(), filepath.Base(t.Name())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cg.Remove() })
	if err := m.Track(cg.ID); err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := func() {
		go func() {
			done <- m.Run(ctx, func(ev *event.Event) {
				if ev.CgroupID == cg.ID {
					evs = append(evs, *ev)
				}
			})
		}()
	}
	if !readLate {
		start()
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = cg.SysProcAttr()
	cmd.Stderr = os.Stderr
	cmd.Run()
	if readLate {
		start()
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c, err := m.Untrack(cg.ID)
	if err != nil {
		t.Fatal(err)
	}
	return evs, c, cg
}

func loadMonitor(t *testing.T, cfg Config) *Monitor {
	t.Helper()
	privtest.Require(t)
	m, err := Load(cfg)
	if err != nil {
		t.Fatalf("load: %v", err) // a verifier error is printed in full
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func nr(t *testing.T, name string) int32 {
	n, ok := event.SyscallNr(name)
	if !ok {
		t.Fatalf("no syscall %s", name)
	}
	return int32(n)
}

// closedPort returns a loopback TCP port with no listener.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestExactness(t *testing.T) {
	m := loadMonitor(t, Config{})
	probe := buildProbe(t)
	file := filepath.Join(t.TempDir(), "known")
	if err := os.WriteFile(file, []byte("twenty-one bytes here"), 0o644); err != nil {
		t.Fatal(err)
	}
	const n, mm, threads, k = 50, 20, 6, 2000
	port := closedPort(t)
	evs, c, cg := tracedRun(t, m, false, probe, strconv.Itoa(n), strconv.Itoa(mm), file, strconv.Itoa(port), strconv.Itoa(threads), strconv.Itoa(k))

	if c.Dropped != 0 || c.Seen != c.Emitted || uint64(len(evs)) != c.Emitted {
		t.Fatalf("counters %+v, received %d: want no drops and every record received", c, len(evs))
	}
	// Every event belongs to the cgroup and the sequence is 1..seen.
	seqs := make([]uint64, 0, len(evs))
	for _, e := range evs {
		if e.CgroupID != cg.ID {
			t.Fatalf("event of cgroup %d in a trace of %d", e.CgroupID, cg.ID)
		}
		seqs = append(seqs, e.Seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("sequence numbers: position %d holds %d", i, s)
		}
	}

	// The probe's own records, from its first exec on.
	var probeEvs []event.Event
	started := false
	for _, e := range evs {
		if e.Nr == nr(t, "execve") && e.Path == probe {
			started = true
		}
		if started {
			probeEvs = append(probeEvs, e)
		}
	}
	if !started {
		t.Fatal("no execve of the probe in the trace")
	}
	exec0 := probeEvs[0]
	if exec0.Ret != 0 || len(exec0.Argv) != 7 || exec0.Argv[0] != probe || exec0.Argv[3] != file || exec0.Comm != "probe" {
		t.Errorf("execve record: %+v", exec0)
	}
	mainTID := exec0.TID

	// Per thread, in order: the main thread's marked syscalls.
	type step struct {
		name  string
		check func(e event.Event) error
	}
	var want []step
	for i := 0; i < n; i++ {
		want = append(want, step{"getppid", func(e event.Event) error {
			if e.Ret <= 0 {
				return fmt.Errorf("getppid returned %d", e.Ret)
			}
			return nil
		}})
	}
	for i := 0; i < mm; i++ {
		want = append(want, step{"openat", func(e event.Event) error {
			if e.Path != "/nonexistent/vigil-probe" || e.Ret != -int64(syscall.ENOENT) || int32(e.Args[0]) != -100 {
				return fmt.Errorf("openat path %q ret %d dfd %d", e.Path, e.Ret, int32(e.Args[0]))
			}
			return nil
		}})
	}
	var fd int64
	want = append(want,
		step{"openat", func(e event.Event) error {
			fd = e.Ret
			if e.Path != file || e.Ret < 0 {
				return fmt.Errorf("open of known file: path %q ret %d", e.Path, e.Ret)
			}
			return nil
		}},
		step{"read", func(e event.Event) error {
			if int64(e.Args[0]) != fd || e.Ret != 21 || e.Args[2] != 64 {
				return fmt.Errorf("read fd %d ret %d len %d, want fd %d ret 21 len 64", e.Args[0], e.Ret, e.Args[2], fd)
			}
			return nil
		}},
		step{"close", func(e event.Event) error {
			if int64(e.Args[0]) != fd || e.Ret != 0 {
				return fmt.Errorf("close fd %d ret %d", e.Args[0], e.Ret)
			}
			return nil
		}},
		step{"socket", func(e event.Event) error { fd = e.Ret; return nil }},
		step{"connect", func(e event.Event) error {
			want := fmt.Sprintf("127.0.0.1:%d", port)
			if e.Addr.String() != want || e.Ret != -int64(syscall.ECONNREFUSED) || int64(e.Args[0]) != fd {
				return fmt.Errorf("connect addr %q ret %d, want %s ECONNREFUSED", e.Addr, e.Ret, want)
			}
			return nil
		}},
		step{"close", func(e event.Event) error { return nil }},
		step{"sys_9999", func(e event.Event) error {
			if e.Nr != 9999 || e.Ret != -int64(syscall.ENOSYS) || e.Args != [6]uint64{1, 2, 3, 4, 5, 6} {
				return fmt.Errorf("invalid syscall: nr %d ret %d args %v", e.Nr, e.Ret, e.Args)
			}
			return nil
		}},
	)
	var mainEvs []event.Event
	for _, e := range probeEvs {
		if e.TID == mainTID {
			mainEvs = append(mainEvs, e)
		}
	}
	// Find the first getppid of the main thread, then match in order.
	i := 0
	for i < len(mainEvs) && mainEvs[i].Nr != nr(t, "getppid") {
		i++
	}
	for j, s := range want {
		if i+j >= len(mainEvs) {
			t.Fatalf("trace ends before step %d (%s)", j, s.name)
		}
		e := mainEvs[i+j]
		if e.Name() != s.name {
			t.Fatalf("step %d: got %s, want %s", j, e.Name(), s.name)
		}
		if err := s.check(e); err != nil {
			t.Fatalf("step %d (%s): %v", j, s.name, err)
		}
	}

	// Threads: each made exactly k getppid, each followed by an openat of
	// its own path, and ended with exit.
	perThread := map[uint32]int{}
	threadPath := map[uint32]string{}
	lastCall := map[uint32]string{}
	exits := map[uint32]bool{}
	for _, e := range probeEvs {
		if e.TID == mainTID || e.PID != exec0.PID {
			continue
		}
		if e.Comm != "probe" {
			t.Errorf("thread %d: comm %q, want probe", e.TID, e.Comm)
		}
		prev := lastCall[e.TID]
		lastCall[e.TID] = e.Name()
		switch e.Name() {
		case "getppid":
			perThread[e.TID]++
		case "openat":
			if prev != "getppid" || e.Ret != -int64(syscall.ENOENT) {
				t.Errorf("thread %d: openat after %s, ret %d", e.TID, prev, e.Ret)
			}
			if p, ok := threadPath[e.TID]; ok && p != e.Path {
				t.Errorf("thread %d opened %q, then %q: records mixed up", e.TID, p, e.Path)
			}
			threadPath[e.TID] = e.Path
		case "exit":
			if e.Flags&event.NoReturn == 0 {
				t.Errorf("thread exit without the noreturn flag")
			}
			exits[e.TID] = true
		}
	}
	if len(perThread) != threads {
		t.Errorf("threads seen: %d, want %d", len(perThread), threads)
	}
	paths := map[string]bool{}
	for _, p := range threadPath {
		paths[p] = true
	}
	if len(paths) != threads {
		t.Errorf("distinct thread paths %v, want %d", paths, threads)
	}
	for tid, got := range perThread {
		if got != k || !exits[tid] {
			t.Errorf("thread %d: %d getppid (want %d), exit seen %v", tid, got, k, exits[tid])
		}
	}
	// The exec of itself, then exit_group(7), which never returns.
	last := probeEvs[len(probeEvs)-1]
	if last.Name() != "exit_group" || last.Args[0] != 7 || last.Flags&event.NoReturn == 0 {
		t.Errorf("last record: %s(%d) flags %v, want exit_group(7) noreturn", last.Name(), last.Args[0], last.Flags)
	}
	var reexec bool
	for _, e := range probeEvs[1:] {
		if e.Name() == "execve" && e.Ret == 0 && len(e.Argv) == 2 && e.Argv[1] == "--exec-done" && e.Path == "/proc/self/exe" {
			reexec = true
		}
	}
	if !reexec {
		t.Error("no record of the probe's execve of itself with --exec-done")
	}
}

func TestLossAccounting(t *testing.T) {
	// One page of ring and a reader that starts only after the storm: most
	// records are dropped, and every one of them is counted.
	m := loadMonitor(t, Config{RingBytes: os.Getpagesize()})
	probe := buildProbe(t)
	evs, c, _ := tracedRun(t, m, true, probe, "20000", "0", "/proc/self/comm", strconv.Itoa(closedPort(t)), "2", "5000")
	if c.Dropped == 0 {
		t.Fatalf("counters %+v: the storm should overflow a one-page ring", c)
	}
	if c.Seen != c.Emitted+c.Dropped {
		t.Fatalf("seen %d != emitted %d + dropped %d", c.Seen, c.Emitted, c.Dropped)
	}
	if uint64(len(evs)) != c.Emitted {
		t.Fatalf("received %d, emitted %d", len(evs), c.Emitted)
	}
	if c.Seen < 30000 {
		t.Fatalf("seen %d: the probe makes at least 30000 syscalls", c.Seen)
	}
	got := map[uint64]bool{}
	for _, e := range evs {
		if got[e.Seq] || e.Seq == 0 || e.Seq > c.Seen {
			t.Fatalf("sequence %d duplicated or out of 1..%d", e.Seq, c.Seen)
		}
		got[e.Seq] = true
	}
	var gaps uint64
	for s := uint64(1); s <= c.Seen; s++ {
		if !got[s] {
			gaps++
		}
	}
	if gaps != c.Dropped {
		t.Fatalf("sequence gaps %d, dropped %d", gaps, c.Dropped)
	}
	t.Logf("seen %d emitted %d dropped %d", c.Seen, c.Emitted, c.Dropped)
}

func TestFiltering(t *testing.T) {
	m := loadMonitor(t, Config{})
	probe := buildProbe(t)
	// An untracked probe runs at the same time as a tracked one.
	other := exec.Command(probe, "5000", "100", "/proc/self/comm", "9", "1", "100")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	evs, _, cg := tracedRun(t, m, false, "/bin/true")
	other.Wait()
	if len(evs) == 0 {
		t.Fatal("no events from the tracked command")
	}
	m.Run(cancelled(), func(ev *event.Event) {
		t.Errorf("event of cgroup %d (pid %d) after the tracked one was untracked", ev.CgroupID, ev.PID)
	})
	for _, e := range evs {
		if int(e.PID) == other.Process.Pid || e.CgroupID != cg.ID {
			t.Fatalf("event of an untracked process: pid %d cgroup %d", e.PID, e.CgroupID)
		}
	}
}

func cancelled() context.Context {
	ctx, stop := context.WithCancel(context.Background())
	stop()
	return ctx
}

func TestPinnedRestart(t *testing.T) {
	privtest.Require(t)
	pin := filepath.Join(testPinParent, strconv.Itoa(os.Getpid())+"-restart")
	t.Cleanup(func() { unpinTestDir(t, pin) })
	m1, err := Load(Config{PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	if m1.Reused() {
		t.Fatal("fresh pin dir reported as reused")
	}
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-pin-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Remove()
	if err := m1.Track(cg.ID); err != nil {
		t.Fatal(err)
	}
	run := func() {
		cmd := exec.Command(buildProbe(t), "100", "0", "/proc/self/comm", "9", "0", "0")
		cmd.SysProcAttr = cg.SysProcAttr()
		cmd.Run()
	}
	run()
	before, _ := m1.Counters(cg.ID)
	m1.Close() // the agent stops; the pinned tracer keeps counting
	run()      // syscalls while no agent runs
	m2, err := Load(Config{PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if !m2.Reused() {
		t.Fatal("restart did not reuse the pinned tracer")
	}
	after, err := m2.Counters(cg.ID)
	if err != nil {
		t.Fatalf("the restarted agent lost the tracked cgroup: %v", err)
	}
	if after.Seen <= before.Seen+100 || after.Seen != after.Emitted+after.Dropped {
		t.Fatalf("counters before %+v after %+v: want counting to go on across the restart", before, after)
	}
	// The records made while no agent ran wait in the pinned ring.
	var n uint64
	var last uint64
	m2.Run(cancelled(), func(ev *event.Event) {
		if ev.CgroupID == cg.ID {
			n++
			last = max(last, ev.Seq)
		}
	})
	if last != after.Seen || n < after.Seen-before.Seen {
		t.Fatalf("after restart read %d records up to seq %d; counters %+v, before %+v", n, last, after, before)
	}
}

// TestFinalCounters: a tracked cgroup removed before anyone read its
// counters still has exact final counters.
func TestFinalCounters(t *testing.T) {
	m := loadMonitor(t, Config{})
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-final-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Track(cg.ID); err != nil {
		t.Fatal(err)
	}
	var n uint64
	done := make(chan error, 1)
	ctx, stop := context.WithCancel(context.Background())
	go func() {
		done <- m.Run(ctx, func(ev *event.Event) {
			if ev.CgroupID == cg.ID {
				n++
			}
		})
	}()
	cmd := exec.Command(buildProbe(t), "1000", "10", "/proc/self/comm", "9", "2", "100")
	cmd.SysProcAttr = cg.SysProcAttr()
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 7 {
		t.Fatalf("probe: %v (it exits 7 after its exec)", err)
	}
	if err := cg.Remove(); err != nil {
		t.Fatal(err)
	}
	stop()
	<-done
	c, err := m.Counters(cg.ID)
	if err != nil {
		t.Fatalf("counters of a removed cgroup: %v", err)
	}
	if c.Seen < 1000 || c.Seen != c.Emitted+c.Dropped || c.Emitted != n {
		t.Fatalf("final counters %+v, received %d", c, n)
	}
	u, err := m.Untrack(cg.ID)
	if err != nil || u != c {
		t.Fatalf("untrack of a removed cgroup: %+v, %v; want %+v", u, err, c)
	}
	if _, err := m.Counters(cg.ID); err == nil {
		t.Fatal("counters still there after untrack")
	}
}

// TestCloseStopsRun: Close while Run reads stops Run instead of pulling the
// ring from under it.
func TestCloseStopsRun(t *testing.T) {
	privtest.Require(t)
	m, err := Load(Config{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background(), func(*event.Event) {}) }()
	time.Sleep(20 * time.Millisecond)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not stop after Close")
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestIdleReaderStopsAtOnce: an idle reader parks for up to IdleWait (here
// a minute), yet the end of its context, and Close, wake it at once; and a
// reader run again after a cancelled one reads normally.
func TestIdleReaderStopsAtOnce(t *testing.T) {
	privtest.Require(t)
	m, err := Load(Config{RingBytes: 1 << 20, PollInterval: 400 * time.Microsecond, IdleAfter: time.Millisecond, WakeInterval: 500 * time.Microsecond, IdleWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	run := func(ctx context.Context) chan error {
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx, func(*event.Event) {}) }()
		return done
	}
	for round := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		done := run(ctx)
		time.Sleep(300 * time.Millisecond) // idle: parked in the poller
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: Run: %v", round, err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("round %d: Run returned %v after its context ended", round, d)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: Run still parked 30 s after its context ended (IdleWait is a minute)", round)
		}
	}
	done := run(context.Background())
	time.Sleep(300 * time.Millisecond)
	m.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run still parked 30 s after Close")
	}
}

// TestConsumeIntoSlots: with Slot, each record is decoded into the slot
// the consumer gives and Event gets that slot; the events are those
// Consume delivers without Slot.
func TestConsumeIntoSlots(t *testing.T) {
	m := loadMonitor(t, Config{})
	cg := trackedCgroup(t, m, "slot")
	probe := buildProbe(t)
	run := func() {
		cmd := exec.Command(probe, "200", "0", "/proc/self/comm", "9", "0", "0")
		cmd.SysProcAttr = cg.SysProcAttr()
		cmd.Run() // its exit status is its own; its syscalls are what counts
	}
	run()
	var plain []event.Event
	m.Run(cancelled(), func(ev *event.Event) {
		if ev.CgroupID == cg.ID {
			plain = append(plain, *ev)
		}
	})
	run()
	slots := make([]event.Event, 1)
	var slotted []event.Event
	err := m.Consume(cancelled(), Consumer{
		Slot: func() *event.Event { return &slots[len(slots)-1] },
		Event: func(ev *event.Event) {
			if ev != &slots[len(slots)-1] {
				t.Fatal("Event got another event than the slot the record was decoded into")
			}
			if ev.CgroupID == cg.ID {
				slotted = append(slotted, *ev)
			}
			slots = append(slots, event.Event{})
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) < 200 || len(slotted) != len(plain) {
		t.Fatalf("%d events decoded into slots, %d without: want the same, at least 200", len(slotted), len(plain))
	}
	// The paths name the probe's pid, which differs between the runs.
	noDigits := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return -1
			}
			return r
		}, s)
	}
	for i := range slotted {
		a, b := slotted[i], plain[i]
		if a.Nr != b.Nr || a.Comm != b.Comm || noDigits(a.Path) != noDigits(b.Path) || a.Seq != b.Seq+uint64(len(plain)) {
			t.Fatalf("event %d: %d %q %q seq %d decoded into a slot, %d %q %q seq %d without", i, a.Nr, a.Comm, a.Path, a.Seq, b.Nr, b.Comm, b.Path, b.Seq)
		}
	}
}

// TestConsumeCPU: with CPU, Consume gives the CPU time of each look,
// measured on the thread the look ran on: a look's events all come on one
// thread, and the looks' total is more than nothing and no more than the
// process spent meanwhile.
func TestConsumeCPU(t *testing.T) {
	m := loadMonitor(t, Config{})
	cg := trackedCgroup(t, m, "cpu")
	probe := buildProbe(t)
	ctx, stop := context.WithCancel(context.Background())
	var (
		looks, events, moved int
		total                time.Duration
		tid                  = -1
	)
	done := make(chan error, 1)
	before := processCPU()
	go func() {
		done <- m.Consume(ctx, Consumer{
			Event: func(ev *event.Event) {
				if ev.CgroupID != cg.ID {
					return
				}
				events++
				switch now := unix.Gettid(); {
				case tid < 0:
					tid = now
				case now != tid:
					moved++
				}
			},
			CPU: func(d time.Duration) {
				looks++
				total += d
				tid = -1
			}})
	}()
	for range 3 {
		cmd := exec.Command(probe, "2000", "0", "/proc/self/comm", "9", "0", "0")
		cmd.SysProcAttr = cg.SysProcAttr()
		cmd.Run() // its exit status is its own; its syscalls are what counts
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	spent := processCPU() - before
	if events < 6000 || looks == 0 {
		t.Fatalf("%d events in %d looks, want at least 6000 in some", events, looks)
	}
	if total <= 0 || total > spent {
		t.Errorf("the looks took %v of CPU, the process %v: want more than 0 and no more than the process", total, spent)
	}
	if moved > 0 {
		t.Errorf("%d events came on another thread than their look's first", moved)
	}
}
