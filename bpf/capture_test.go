package bpf

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/privtest"
)

// loopEnv makes the test binary a getppid loop on one thread: N calls, then
// the loop's own time in ns on standard output (no process start in it).
const loopEnv = "VIGIL_TEST_GETPPID_LOOP"

// captureEnv sets BenchmarkCaptureCost: repetitions of each mode (interleaved
// in a shuffled order), and the calls per run.
const captureEnv = "VIGIL_CAPTURE_COST"

func init() {
	v := os.Getenv(loopEnv)
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loop:", err)
		os.Exit(2)
	}
	runtime.LockOSThread()
	start := time.Now()
	for i := 0; i < n; i++ {
		unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
	}
	fmt.Println(time.Since(start).Nanoseconds())
	os.Exit(0)
}

// getppidLoop runs n getppid calls in a child process of cg and returns the
// loop's time per call.
func getppidLoop(t testing.TB, cg *Cgroup, n int) float64 {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", loopEnv, n), "GOMAXPROCS=1")
	cmd.SysProcAttr = cg.SysProcAttr()
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("getppid loop: %v", err)
	}
	ns, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("getppid loop output %q: %v", out, err)
	}
	return ns / float64(n)
}

func medianOf(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkCaptureCost measures the tracer's in-kernel cost per record (bpf_stats
// run time of the sys_exit program over a getppid loop in a tracked
// cgroup, less the empty program's: the timing's own cost) without a budget
// and with one the loop stays far under, the cost of the records' clock
// read alone (the ktime floor), and the loop's time per call untraced and
// traced. Per run divides by every sys_exit of the machine (other
// processes' syscalls only pass the filter), per record by the cgroup's
// records: on a busy machine they differ. A measurement, not a check, so a
// benchmark (go test -run '^$' -bench CaptureCost ./bpf/, as root; b.N is
// not used): VIGIL_CAPTURE_COST=REPS[,CALLS] (default 5,1000000;
// VIGIL_CAPTURE_COST_RING: ring bytes). To compare two objects, run the
// test binaries of two commits alternately (go test -c).
func BenchmarkCaptureCost(b *testing.B) {
	t := b
	privtest.Require(t)
	reps, calls := 5, 1_000_000
	v := os.Getenv(captureEnv)
	if v == "" {
		v = "5,1000000"
	}
	if _, err := fmt.Sscanf(v, "%d,%d", &reps, &calls); err != nil {
		if _, err := fmt.Sscanf(v, "%d", &reps); err != nil {
			t.Fatalf("%s=%q: want REPS[,CALLS]", captureEnv, v)
		}
	}
	stats, err := EnableRunStats()
	if err != nil {
		t.Fatal(err)
	}
	defer stats.Close()
	cg, err := NewCgroup(fmt.Sprintf("vigil-capture-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Remove()

	// traced runs the loop under the tracer (rate: its budget, see Config)
	// and returns ns per run of the program, ns per record (all the time
	// charged to the cgroup's records) and the loop's ns per call.
	ring, _ := strconv.Atoi(os.Getenv(captureEnv + "_RING")) // 0: the default size
	traced := func(rate int) (perRun, perRecord, perCall float64) {
		m, err := Load(Config{RingBytes: ring, CgroupRate: rate})
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		defer m.Close()
		if err := m.Track(cg.ID); err != nil {
			t.Fatal(err)
		}
		defer m.Untrack(cg.ID)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx, func(*event.Event) {}) }()
		c0, _ := m.Counters(cg.ID)
		s0, err := m.ProgramStats()
		if err != nil {
			t.Fatal(err)
		}
		perCall = getppidLoop(t, cg, calls)
		s1, err := m.ProgramStats()
		if err != nil {
			t.Fatal(err)
		}
		c1, _ := m.Counters(cg.ID)
		cancel()
		<-done
		if c1.Throttled != c0.Throttled {
			t.Fatalf("budget rate %d throttled %d records: not far under it", rate, c1.Throttled-c0.Throttled)
		}
		runs := float64(s1.Runs - s0.Runs)
		ns := float64((s1.Total - s0.Total).Nanoseconds())
		return ns / runs, ns / float64(c1.Seen-c0.Seen), perCall
	}
	times := map[string][]float64{}
	modes := []string{"base", "empty", "ktime", "vigil", "vigil-budget"}
	for rep := 0; rep < reps; rep++ {
		rand.Shuffle(len(modes), func(i, j int) { modes[i], modes[j] = modes[j], modes[i] })
		for _, mode := range modes {
			switch mode {
			case "base":
				times["base call"] = append(times["base call"], getppidLoop(t, cg, calls))
			case "empty", "ktime":
				kind := FloorEmpty
				if mode == "ktime" {
					kind = FloorKtime
				}
				f, err := AttachFloor(kind)
				if err != nil {
					t.Fatal(err)
				}
				s0, _ := f.Stats()
				perCall := getppidLoop(t, cg, calls)
				s1, err := f.Stats()
				f.Detach()
				if err != nil {
					t.Fatal(err)
				}
				times[mode+" run"] = append(times[mode+" run"], float64((s1.Total-s0.Total).Nanoseconds())/float64(s1.Runs-s0.Runs))
				times[mode+" call"] = append(times[mode+" call"], perCall)
			case "vigil", "vigil-budget":
				rate := -1
				if mode == "vigil-budget" {
					rate = 1_000_000_000 // 1 ns a record: charged, never over
				}
				run, rec, call := traced(rate)
				times[mode+" run"] = append(times[mode+" run"], run)
				times[mode+" record"] = append(times[mode+" record"], rec)
				times[mode+" call"] = append(times[mode+" call"], call)
			}
		}
	}
	var load [3]float64
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscanf(string(b), "%f %f %f", &load[0], &load[1], &load[2])
	}
	empty := medianOf(times["empty run"])
	base := medianOf(times["base call"])
	t.Logf("load %.2f %.2f %.2f; %d reps of %d calls", load[0], load[1], load[2], reps, calls)
	t.Logf("empty program %.1f ns/run; getppid untraced %.1f ns/call, empty program %.1f", empty, base, medianOf(times["empty call"]))
	t.Logf("one bpf_ktime_get_ns: %.1f ns (the ktime floor less the empty one)", medianOf(times["ktime run"])-empty)
	fmt.Printf("CAPTURE clock capture=%.1f\n", medianOf(times["ktime run"])-empty)
	for _, mode := range []string{"vigil", "vigil-budget"} {
		run, rec, call := medianOf(times[mode+" run"]), medianOf(times[mode+" record"]), medianOf(times[mode+" call"])
		t.Logf("%s: %.1f ns/run, %.1f ns/record, capture %.1f ns; getppid %.1f ns/call (x%.2f)", mode, run, rec, run-empty, call, call/base)
		fmt.Printf("CAPTURE %s run=%.1f record=%.1f capture=%.1f call=%.1f ratio=%.3f empty=%.1f base=%.1f\n", mode, run, rec, run-empty, call, call/base, empty, base)
	}
}
