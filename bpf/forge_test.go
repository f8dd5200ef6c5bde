package bpf

import (
	"bufio"
	"bytes"
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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

var (
	forgeOnce sync.Once
	forgePath string
	forgeErr  error
)

// buildForge compiles testdata/forge.c statically, as buildProbe does.
func buildForge(t *testing.T) string {
	t.Helper()
	forgeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vigil-forge")
		if err != nil {
			forgeErr = err
			return
		}
		forgePath = filepath.Join(dir, "forge")
		out, err := exec.Command("gcc", "-static", "-O1", "-pthread", "-o", forgePath, "testdata/forge.c").CombinedOutput()
		if err != nil {
			forgeErr = fmt.Errorf("gcc: %v: %s", err, out)
		}
	})
	if forgeErr != nil {
		t.Fatalf("build forge: %v", forgeErr)
	}
	return forgePath
}

var outputRuns atomic.Int64

// tracedOutput runs argv in a fresh tracked cgroup with the Monitor reading
// throughout, and returns its records from its exec on, its standard
// output lines and the cgroup's final counters.
func tracedOutput(t *testing.T, m *Monitor, argv ...string) ([]event.Event, []string, Counters) {
	t.Helper()
	return tracedOutputEnv(t, m, nil, argv...)
}

// tracedOutputEnv is tracedOutput with the command's environment env (nil:
// the test's).
func tracedOutputEnv(t *testing.T, m *Monitor, env []string, argv ...string) ([]event.Event, []string, Counters) {
	t.Helper()
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-%d-%s-%d", os.Getpid(), filepath.Base(t.Name()), outputRuns.Add(1)))
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
	go func() {
		done <- m.Run(ctx, func(ev *event.Event) {
			if ev.CgroupID == cg.ID {
				evs = append(evs, *ev)
			}
		})
	}()
	var out bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = cg.SysProcAttr()
	cmd.Env = env
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	runErr := cmd.Run()
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c, err := m.Untrack(cg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if runErr != nil {
		t.Fatalf("%s: %v", strings.Join(argv, " "), runErr)
	}
	if c.Dropped != 0 || uint64(len(evs)) != c.Emitted {
		t.Fatalf("counters %+v, received %d: want every record", c, len(evs))
	}
	for i, e := range evs {
		if e.Nr == nr(t, "execve") && e.Ret == 0 && e.Path == argv[0] {
			evs = evs[i:]
			break
		}
	}
	var lines []string
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return evs, lines, c
}

// mainCalls are the records of name made by the main thread, with ret >= 0.
func mainCalls(t *testing.T, evs []event.Event, name string) []event.Event {
	var out []event.Event
	for _, e := range evs {
		if e.Nr == nr(t, name) && e.TID == e.PID && e.Ret >= 0 {
			out = append(out, e)
		}
	}
	return out
}

// TestForgedOpenPath: the main thread opens a path whose buffer a second
// thread rewrites while the open runs. With a FIFO, the open blocks until
// the second thread, having written another name into the buffer, opens
// the other end: every time, the string in user memory at syscall exit
// names a file the kernel did not open. The record's Path is the file the
// kernel opened; the user's string is kept, flagged.
func TestForgedOpenPath(t *testing.T) {
	m := loadMonitor(t, Config{})
	forge := buildForge(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	const sensitive = "/etc/hostname"
	const n = 50
	evs, lines, _ := tracedOutput(t, m, forge, "fifo", strconv.Itoa(n), fifo, sensitive)
	opens := mainCalls(t, evs, "openat")
	if len(opens) != n || len(lines) != n {
		t.Fatalf("%d successful openat records, %d reported by the probe, want %d", len(opens), len(lines), n)
	}
	for i, e := range opens {
		if lines[i] != "open "+fifo {
			t.Fatalf("open %d: the probe opened %q", i, lines[i])
		}
		if e.Path != fifo || e.PathUser != sensitive || e.Flags&event.UserDiffers == 0 {
			t.Fatalf("open %d: path %q, user path %q, flags %v; want %s, user %s, user-differs", i, e.Path, e.PathUser, e.Flags, fifo, sensitive)
		}
	}
}

// TestRacedOpenPath: a second thread flips the path buffer between a
// harmless and a sensitive file as fast as it can while the main thread
// opens it in a loop. Whatever the race does, each record's Path is the
// file the fd refers to, and a user string is kept only when it differs.
func TestRacedOpenPath(t *testing.T) {
	m := loadMonitor(t, Config{})
	forge := buildForge(t)
	harmless := filepath.Join(t.TempDir(), "harmless")
	if err := os.WriteFile(harmless, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	const sensitive = "/etc/hostname"
	const n = 4000
	evs, lines, _ := tracedOutput(t, m, forge, "open", strconv.Itoa(n), harmless, sensitive)
	opens := mainCalls(t, evs, "openat")
	// How many opens succeed is the race's to say (a torn path fails):
	// about half; a quarter is enough to test the records.
	if len(opens) != len(lines) || len(opens) < n/4 {
		t.Fatalf("%d successful openat records, the probe reported %d (of %d tries)", len(opens), len(lines), n)
	}
	var forged, differs int
	for i, e := range opens {
		real := strings.TrimPrefix(lines[i], "open ")
		if e.Path != real {
			t.Fatalf("open %d: record path %q (user %q), the fd is %q", i, e.Path, e.PathUser, real)
		}
		if (e.Flags&event.UserDiffers != 0) != (e.PathUser != "") || e.PathUser == e.Path {
			t.Fatalf("open %d: flags %v, path %q, user path %q", i, e.Flags, e.Path, e.PathUser)
		}
		if e.PathUser != "" {
			differs++
			if e.PathUser == harmless || e.PathUser == sensitive {
				forged++ // the other file's name: what the old tracer recorded
			}
		}
	}
	t.Logf("%d opens; at exit the user's buffer named the other file in %d, something else in %d", len(opens), forged, differs-forged)
}

// TestForgedConnect: a unix connect blocks on the listener's full backlog
// while a second thread rewrites the sockaddr, then makes room: every time,
// the sockaddr in user memory at exit names another socket. The record's
// address is the one the socket connected to, the user's kept, flagged.
func TestForgedConnect(t *testing.T) {
	m := loadMonitor(t, Config{})
	forge := buildForge(t)
	dir := t.TempDir()
	real, decoy := filepath.Join(dir, "real.sock"), filepath.Join(dir, "decoy.sock")
	const n = 20
	evs, lines, _ := tracedOutput(t, m, forge, "unix-block", strconv.Itoa(n), real, decoy)
	var conns []event.Event
	for _, e := range mainCalls(t, evs, "connect") {
		if e.AddrUser.Path == decoy || e.Addr.Path == decoy {
			conns = append(conns, e)
		}
	}
	if len(conns) != n || len(lines) != n {
		t.Fatalf("%d raced connect records, %d reported by the probe, want %d", len(conns), len(lines), n)
	}
	for i, e := range conns {
		if e.Addr.String() != "unix:"+real || e.AddrUser.String() != "unix:"+decoy || e.Flags&event.UserDiffers == 0 {
			t.Fatalf("connect %d: address %s, user %s, flags %v; want unix:%s, user unix:%s, user-differs", i, e.Addr, e.AddrUser, e.Flags, real, decoy)
		}
	}
}

// TestRacedConnect: a second thread flips the port of the sockaddr while
// the main thread connects over TCP. Each record's address is the socket's
// peer.
func TestRacedConnect(t *testing.T) {
	m := loadMonitor(t, Config{})
	forge := buildForge(t)
	var ports []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	const n = 3000
	evs, lines, _ := tracedOutput(t, m, forge, "connect", strconv.Itoa(n), ports[0], ports[1])
	conns := mainCalls(t, evs, "connect")
	if len(conns) != len(lines) || len(conns) < n/2 {
		t.Fatalf("%d successful connect records, the probe reported %d (of %d tries)", len(conns), len(lines), n)
	}
	forged := 0
	for i, e := range conns {
		want := "127.0.0.1:" + strings.TrimPrefix(lines[i], "connect ")
		if e.Addr.String() != want {
			t.Fatalf("connect %d: record address %s (user %s), the peer is %s", i, e.Addr, e.AddrUser, want)
		}
		if (e.Flags&event.UserDiffers != 0) != !e.AddrUser.IsZero() {
			t.Fatalf("connect %d: flags %v, user address %s", i, e.Flags, e.AddrUser)
		}
		if !e.AddrUser.IsZero() {
			if e.AddrUser == e.Addr {
				t.Fatalf("connect %d: user address %s flagged though the same", i, e.AddrUser)
			}
			forged++
		}
	}
	t.Logf("%d connects; at exit the user's sockaddr named the other port in %d", len(conns), forged)
}

// TestSocketAddrs: bind to port 0 records the bound port (the user's port
// 0 kept and flagged); a unix connect records the listener's address; a
// failed connect keeps the user's sockaddr, unflagged.
func TestSocketAddrs(t *testing.T) {
	m := loadMonitor(t, Config{})
	forge := buildForge(t)
	evs, lines, _ := tracedOutput(t, m, forge, "bind")
	binds := mainCalls(t, evs, "bind")
	if len(binds) != 1 || len(lines) != 1 {
		t.Fatalf("bind records %d, output %q", len(binds), lines)
	}
	want := "127.0.0.1:" + strings.TrimPrefix(lines[0], "bind ")
	if b := binds[0]; b.Addr.String() != want || b.AddrUser.String() != "127.0.0.1:0" || b.Flags&event.UserDiffers == 0 {
		t.Errorf("bind: address %s, user %s, flags %v; want %s, user 127.0.0.1:0, user-differs", b.Addr, b.AddrUser, b.Flags, want)
	}

	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	evs, _, _ = tracedOutput(t, m, forge, "unix", sock)
	conns := mainCalls(t, evs, "connect")
	if len(conns) != 1 || conns[0].Addr.String() != "unix:"+sock || conns[0].Flags&event.UserDiffers != 0 {
		t.Fatalf("unix connect records %+v: want one to unix:%s, unflagged", conns, sock)
	}

	evs, _, _ = tracedRun(t, m, false, buildProbe(t), "0", "0", "/proc/self/comm", strconv.Itoa(closedPort(t)), "0", "0")
	var refused []event.Event
	for _, e := range evs {
		if e.Name() == "connect" {
			refused = append(refused, e)
		}
	}
	if len(refused) != 1 || refused[0].Ret != -int64(syscall.ECONNREFUSED) || refused[0].Addr.Family != event.AFInet || refused[0].Flags&event.UserDiffers != 0 {
		t.Fatalf("refused connect records %+v", refused)
	}
}

// TestOpenPathRoot: the path of an opened file is as the task sees it,
// relative to its root (a chroot here, a container's root in production);
// a file outside that root is "(unreachable)" and its path from the top of
// its mount tree.
func TestOpenPathRoot(t *testing.T) {
	m := loadMonitor(t, Config{})
	forge := buildForge(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "inside"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("cp", forge, filepath.Join(dir, "forge")).Run(); err != nil {
		t.Fatal(err)
	}
	evs, lines, _ := tracedOutput(t, m, filepath.Join(dir, "forge"), "chroot", dir)
	opens := mainCalls(t, evs, "openat")
	if len(lines) != 1 || len(opens) < 2 {
		t.Fatalf("output %q, successful openat records %d", lines, len(opens))
	}
	opens = opens[len(opens)-2:]
	if e := opens[0]; e.Path != "/inside" || e.PathUser != "" {
		t.Errorf("open inside the root: path %q, user %q; want /inside", e.Path, e.PathUser)
	}
	if e := opens[1]; e.Path != "(unreachable)/etc/hostname" || e.PathUser != "etc/hostname" || e.Flags&event.UserDiffers == 0 {
		t.Errorf("open outside the root: path %q, user %q, flags %v; want (unreachable)/etc/hostname, user etc/hostname", e.Path, e.PathUser, e.Flags)
	}
}

// TestCgroupBudget: a flooding cgroup fills the ring that a quiet cgroup
// shares with it. Without a budget the quiet cgroup loses records; with
// one, its trace is exact, and the flooder's excess is its own drop,
// counted as throttled.
func TestCgroupBudget(t *testing.T) {
	forge := buildForge(t)
	probe := buildProbe(t)
	const quietOpens = 500
	for _, tc := range []struct {
		name   string
		budget bool
	}{{"no budget", false}, {"budget", true}} {
		t.Run(tc.name, func(t *testing.T) {
			// The reader starts after both ran, so the ring holds what was
			// written: 1 MiB, 18k getppid records.
			cfg := Config{RingBytes: 1 << 20, CgroupRate: -1}
			const rate, burst = 10_000, 2_000
			if tc.budget {
				cfg.CgroupRate, cfg.CgroupBurst = rate, burst
			}
			m := loadMonitor(t, cfg)
			flooder, err := NewCgroup(fmt.Sprintf("vigil-test-flood-%d", os.Getpid()))
			if err != nil {
				t.Fatal(err)
			}
			defer flooder.Remove()
			quiet, err := NewCgroup(fmt.Sprintf("vigil-test-quiet-%d", os.Getpid()))
			if err != nil {
				t.Fatal(err)
			}
			defer quiet.Remove()
			for _, cg := range []*Cgroup{flooder, quiet} {
				if err := m.Track(cg.ID); err != nil {
					t.Fatal(err)
				}
			}
			flood := exec.Command(forge, "flood", "4")
			flood.SysProcAttr = flooder.SysProcAttr()
			t0 := time.Now()
			if err := flood.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			q := exec.Command(probe, "0", strconv.Itoa(quietOpens), "/proc/self/comm", strconv.Itoa(closedPort(t)), "0", "0")
			q.SysProcAttr = quiet.SysProcAttr()
			qerr := q.Run()
			flooder.Kill()
			flood.Wait()
			floodTime := time.Since(t0)
			if q.ProcessState == nil || q.ProcessState.ExitCode() != 7 {
				t.Fatalf("quiet probe: %v", qerr)
			}

			seqs := map[uint64][]uint64{}
			m.Run(cancelled(), func(ev *event.Event) { seqs[ev.CgroupID] = append(seqs[ev.CgroupID], ev.Seq) })
			fc, err := m.Counters(flooder.ID)
			if err != nil {
				t.Fatal(err)
			}
			qc, err := m.Counters(quiet.ID)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("flooder %+v in %v; quiet %+v", fc, floodTime.Round(time.Millisecond), qc)
			for _, c := range []Counters{fc, qc} {
				if c.Seen != c.Emitted+c.Dropped || c.Throttled > c.Dropped {
					t.Fatalf("counters %+v: want seen = emitted + dropped >= emitted + throttled", c)
				}
			}
			if uint64(len(seqs[quiet.ID])) != qc.Emitted || uint64(len(seqs[flooder.ID])) != fc.Emitted {
				t.Fatalf("received %d quiet and %d flooder records, emitted %d and %d", len(seqs[quiet.ID]), len(seqs[flooder.ID]), qc.Emitted, fc.Emitted)
			}
			if !tc.budget {
				// The attack: the flood fills the ring, the quiet cgroup's
				// records are lost with it.
				if qc.Dropped == 0 || fc.Throttled != 0 {
					t.Fatalf("without a budget: quiet %+v, flooder %+v; want the quiet cgroup to lose records", qc, fc)
				}
				return
			}
			if qc.Dropped != 0 || qc.Throttled != 0 || qc.Seen < quietOpens {
				t.Fatalf("quiet cgroup %+v: want every record", qc)
			}
			qs := seqs[quiet.ID]
			sort.Slice(qs, func(i, j int) bool { return qs[i] < qs[j] })
			for i, s := range qs {
				if s != uint64(i+1) {
					t.Fatalf("quiet sequence: position %d holds %d", i, s)
				}
			}
			// The flooder got its burst and its rate, no more; the rest it
			// lost to its own budget, not to a full ring.
			limit := uint64(burst + rate*floodTime.Seconds() + rate/10)
			if fc.Throttled == 0 || fc.Dropped != fc.Throttled || fc.Emitted > limit {
				t.Fatalf("flooder %+v: want its excess throttled, at most %d written", fc, limit)
			}
		})
	}
}

// TestBudgetConfig: the budget's settings are checked.
func TestBudgetConfig(t *testing.T) {
	for _, tc := range []struct {
		rate, burst int
		ns, tau     uint64
		err         string
	}{
		{0, 0, 5000, 5000 * DefaultCgroupBurst, ""},
		{-1, 0, 0, 0, ""},
		{1000, 10, 1_000_000, 10_000_000, ""},
		{2e9, 0, 0, 0, "at most 1000000000"},
		{1000, -5, 0, 0, "between 1 and"},
	} {
		ns, tau, err := budget(tc.rate, tc.burst)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("budget(%d, %d): error %v, want %q", tc.rate, tc.burst, err, tc.err)
			}
			continue
		}
		if err != nil || ns != tc.ns || tau != tc.tau {
			t.Errorf("budget(%d, %d) = %d, %d, %v; want %d, %d", tc.rate, tc.burst, ns, tau, err, tc.ns, tc.tau)
		}
	}
}
