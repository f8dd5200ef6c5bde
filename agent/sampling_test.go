package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/privtest"
	"vigil.dev/vigil/pipeline"
)

var sampleT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// simCgroup is a container's CPU use for the sampling tests: cores from
// a time on.
type simCgroup struct {
	cores []simPhase
}

type simPhase struct {
	from  time.Duration // since sampleT0
	cores float64
}

// usage is the cumulative CPU (ns) at now.
func (c simCgroup) usage(now time.Time) uint64 {
	t := now.Sub(sampleT0)
	var ns float64
	for i, p := range c.cores {
		end := t
		if i+1 < len(c.cores) {
			end = min(t, c.cores[i+1].from)
		}
		if end > p.from {
			ns += float64(end-p.from) * p.cores
		}
	}
	return uint64(ns)
}

// simulate runs the sampler's ticks from sampleT0 for d, reading the
// simulated cgroups, and calls each(job, now) for every sample taken.
func simulate(s *sampler, cgs map[uint64]simCgroup, d time.Duration, each func(j sampleJob, now time.Time, cpu uint64)) {
	for now := sampleT0.Add(s.cfg.Every); !now.After(sampleT0.Add(d)); now = now.Add(s.cfg.Every) {
		for _, j := range s.due(now) {
			cpu := cgs[j.ID].usage(now)
			threads := -1
			if j.wantThreads(now, cpu) {
				threads = 1
			}
			s.observed(j.ID, now, cpu, threads)
			if each != nil {
				each(j, now, cpu)
			}
		}
	}
}

func countSamples(s *sampler, cgs map[uint64]simCgroup, d time.Duration) map[uint64]int {
	n := map[uint64]int{}
	simulate(s, cgs, d, func(j sampleJob, _ time.Time, _ uint64) { n[j.ID]++ })
	return n
}

func TestSamplingIdleRarelyBusyFullRate(t *testing.T) {
	s := newSampler(Sampling{}.withDefaults(250 * time.Millisecond))
	cgs := map[uint64]simCgroup{
		1: {cores: []simPhase{{0, 0.001}}}, // idle
		2: {cores: []simPhase{{0, 0.8}}},   // busy
	}
	for id := range cgs {
		s.track(id, fmt.Sprint("/cg/", id))
	}
	const d = 60 * time.Second
	n := countSamples(s, cgs, d)
	// The idle one: at once, then every 2 s.
	if n[1] < 30 || n[1] > 32 {
		t.Errorf("idle container sampled %d times in %v, want about 31 (twice at once, then every 2 s)", n[1], d)
	}
	if n[2] != int(d/(250*time.Millisecond)) {
		t.Errorf("busy container sampled %d times in %v, want %d (every tick)", n[2], d, d/(250*time.Millisecond))
	}
	if st := s.snapshot(); st.Hot != 1 || st.Idle != 1 {
		t.Errorf("stats %+v, want 1 hot, 1 idle", st)
	}
}

// TestSamplingTinyBudget: a budget below one busy sample's reads a tick
// (--sample-budget 1) still samples, every few ticks, instead of never.
func TestSamplingTinyBudget(t *testing.T) {
	s := newSampler(Sampling{Budget: 1}.withDefaults(250 * time.Millisecond))
	cgs := map[uint64]simCgroup{1: {cores: []simPhase{{0, 0.8}}}}
	s.track(1, "/cg/1")
	const d = 60 * time.Second
	// 1 read a second, fullReads reads a busy sample: one every fullReads
	// seconds or so
	want := int(d.Seconds()) / fullReads
	if n := countSamples(s, cgs, d)[1]; n < want*2/3 || n > want+1 {
		t.Errorf("busy container sampled %d times in %v with a budget of 1 read a second, want about %d", n, d, want)
	}
}

func TestSamplingIdleTurnsBusy(t *testing.T) {
	s := newSampler(Sampling{}.withDefaults(250 * time.Millisecond))
	spin := 30*time.Second + 100*time.Millisecond
	cgs := map[uint64]simCgroup{1: {cores: []simPhase{{0, 0}, {spin, 1}}}}
	s.track(1, "/cg/1")
	var first time.Time // the first sample at the full rate after the spin
	var prev time.Time
	simulate(s, cgs, 40*time.Second, func(j sampleJob, now time.Time, _ uint64) {
		if first.IsZero() && now.After(sampleT0.Add(spin)) && !prev.IsZero() && now.Sub(prev) == s.cfg.Every {
			first = now
		}
		prev = now
	})
	if first.IsZero() {
		t.Fatal("never sampled at the full rate after it started to spin")
	}
	if late := first.Sub(sampleT0.Add(spin)); late > s.cfg.IdleEvery+s.cfg.Every {
		t.Errorf("full rate %v after the spin started, want at most the idle period %v and a tick", late, s.cfg.IdleEvery)
	}
}

func TestSamplingBudgetHolds(t *testing.T) {
	cfg := Sampling{Budget: 2000}.withDefaults(250 * time.Millisecond)
	s := newSampler(cfg)
	cgs := map[uint64]simCgroup{}
	const n = 10000
	for id := uint64(1); id <= n; id++ {
		cores := 0.001
		if id <= 20 {
			cores = 1 // 20 busy ones among them
		}
		cgs[id] = simCgroup{cores: []simPhase{{0, cores}}}
		s.track(id, fmt.Sprint("/cg/", id))
	}
	perTick := map[time.Time]int{}
	last := map[uint64]time.Time{}
	var maxGap time.Duration
	busy := map[uint64]int{}
	const d = 70 * time.Second
	simulate(s, cgs, d, func(j sampleJob, now time.Time, _ uint64) {
		perTick[now]++
		if l, ok := last[j.ID]; ok && now.Sub(l) > maxGap && now.After(sampleT0.Add(40*time.Second)) {
			maxGap = now.Sub(l)
		}
		last[j.ID] = now
		if j.ID <= 20 && now.After(sampleT0.Add(30*time.Second)) {
			busy[j.ID]++
		}
	})
	total := 0
	for at, k := range perTick {
		total += k
		if k > 2*cfg.Budget/4 {
			t.Errorf("%v: %d samples in one tick, budget %d a second", at.Sub(sampleT0), k, cfg.Budget)
		}
	}
	if limit := int(float64(cfg.Budget)*d.Seconds()) + cfg.Budget/2; total > limit {
		t.Errorf("%d samples in %v, budget allows %d", total, d, limit)
	}
	if len(last) != n {
		t.Errorf("%d of %d containers sampled", len(last), n)
	}
	// Once all were read twice (a full sample at first: 40,000 reads, and
	// 10,000 more), every container is read at least every n / (budget
	// less the busy ones' 320 reads a second), 5.9 s, and a little: none
	// starves.
	if want := 7 * time.Second; maxGap > want {
		t.Errorf("a container waited %v between samples, want at most %v", maxGap, want)
	}
	// The busy ones keep the full rate (20 of them need 80 a second).
	for id := uint64(1); id <= 20; id++ {
		if busy[id] < 118 { // 30 s at 4 a second, less a tick
			t.Errorf("busy container %d sampled %d times in the last 30 s, want 120 (every tick)", id, busy[id])
		}
	}
	if st := s.snapshot(); st.Hot != 20 || st.Idle != n-20 || st.Deferred == 0 {
		t.Errorf("stats %+v, want 20 hot, %d idle, some deferred", st, n-20)
	}
}

func TestSamplingHints(t *testing.T) {
	cfg := Sampling{}.withDefaults(250 * time.Millisecond)
	now := sampleT0
	for _, tc := range []struct {
		name  string
		apply func(s *sampler)
		full  time.Duration // how long from now it is read at the full rate
	}{
		{"nothing", func(*sampler) {}, 0},
		{"exec", func(s *sampler) { s.hint(1, false) }, cfg.CoolAfter},
		{"verdict", func(s *sampler) { s.hint(1, true) }, cfg.SuspectFor},
		{"held by the ladder", func(s *sampler) { s.sync(map[uint64]string{1: "/cg/1"}, map[uint64]bool{1: true}) }, time.Hour},
		{"syscalls", func(s *sampler) {
			s.counters(now, map[uint64]bpf.Counters{1: {Seen: 100}})
			s.counters(now.Add(time.Second), map[uint64]bpf.Counters{1: {Seen: 100 + 2000}})
		}, cfg.CoolAfter + time.Second},
		{"few syscalls", func(s *sampler) {
			s.counters(now, map[uint64]bpf.Counters{1: {Seen: 100}})
			s.counters(now.Add(time.Second), map[uint64]bpf.Counters{1: {Seen: 150}})
		}, 0},
		{"over its tracing budget", func(s *sampler) {
			s.counters(now, map[uint64]bpf.Counters{1: {Seen: 100}})
			s.counters(now.Add(time.Second), map[uint64]bpf.Counters{1: {Seen: 110, Throttled: 5}})
		}, cfg.CoolAfter + time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSampler(cfg)
			// Tracked and read twice, idle.
			s.track(1, "/cg/1")
			s.due(now.Add(-cfg.Every))
			s.observed(1, now.Add(-cfg.Every), 1000, 1)
			s.due(now)
			s.observed(1, now, 1000, 1)
			tc.apply(s)
			next := now.Add(cfg.Every)
			if got := len(s.due(next)); (tc.full > 0) != (got == 1) {
				t.Fatalf("due %d at the next tick, want full rate: %v", got, tc.full > 0)
			}
			if tc.full > 0 && tc.full < time.Hour {
				// It cools down at the end.
				s.due(now.Add(tc.full + cfg.Every))
				if st := s.snapshot(); st.Hot+st.Suspect != 0 {
					t.Errorf("still at the full rate after %v: %+v", tc.full, st)
				}
			}
		})
	}
}

func TestSamplingThreadsOnlyWhenNeeded(t *testing.T) {
	j := sampleJob{Threads: 3, readAt: sampleT0, lastCPU: 1e9, hotCPU: 0.05}
	now := sampleT0.Add(2 * time.Second)
	if j.wantThreads(now, 1e9+1e6) {
		t.Error("idle container (0.0005 cores): its thread count is read again")
	}
	if !j.wantThreads(now, 1e9+5e8) {
		t.Error("a container at 0.25 cores: its thread count is not read")
	}
	if !(sampleJob{Threads: -1}).wantThreads(now, 0) {
		t.Error("never counted: not read")
	}
	j.Full = true
	if !j.wantThreads(now, 1e9) {
		t.Error("hot container: not read")
	}
}

// TestSamplingDetectionLatency runs the detector's default CPU rules on
// the samples the policy takes: a container that starts to spin is found
// as fast as at the full rate when it is hot (or exec'd), and at most the
// idle period later when it was idle, also among 10,000 containers.
func TestSamplingDetectionLatency(t *testing.T) {
	const cg = 7
	spinAt := 90*time.Second + 130*time.Millisecond
	// verdictAt feeds samples of container cg (before cores, then a spin
	// from spinAt, with an exec at the spin when hint) to a detector with
	// the default rules, every tick when fullRate or as the policy says,
	// among others idle containers, and returns how long after spinAt
	// the cpu-spin rule fired.
	verdictAt := func(t *testing.T, before float64, others int, hint bool, fullRate bool) time.Duration {
		eng, err := pipeline.Detection{}.NewDetector()
		if err != nil {
			t.Fatal(err)
		}
		eng.Observe(&event.Event{Seq: 1, Time: sampleT0, CgroupID: cg, PID: 10, TID: 10, Nr: int32(syscallNr("execve")),
			Path: "/opt/app/cruncher", Comm: "cruncher"})
		cgs := map[uint64]simCgroup{cg: {cores: []simPhase{{0, before}, {spinAt, 1}}}}
		s := newSampler(Sampling{Budget: 2000}.withDefaults(250 * time.Millisecond))
		s.track(cg, "/cg")
		for i := 0; i < others; i++ {
			id := uint64(1000 + i)
			cgs[id] = simCgroup{cores: []simPhase{{0, 0.001}}}
			s.track(id, "/cg/other")
		}
		var fired time.Duration
		feed := func(now time.Time, cpu uint64) {
			for _, v := range eng.Sample(detector.Sample{CgroupID: cg, Time: now, CPUUsageNs: cpu, Threads: 1}) {
				if v.Rule == "cpu-spin-few-syscalls" && fired == 0 {
					fired = now.Sub(sampleT0) - spinAt
				}
			}
		}
		hinted := false
		for now := sampleT0.Add(s.cfg.Every); fired == 0 && now.Before(sampleT0.Add(spinAt+time.Minute)); now = now.Add(s.cfg.Every) {
			if hint && !hinted && now.After(sampleT0.Add(spinAt)) {
				s.hint(cg, false) // the miner's exec, seen before this tick
				hinted = true
			}
			if fullRate {
				feed(now, cgs[cg].usage(now))
				continue
			}
			for _, j := range s.due(now) {
				cpu := cgs[j.ID].usage(now)
				s.observed(j.ID, now, cpu, 1)
				if j.ID == cg {
					feed(now, cpu)
				}
			}
		}
		if fired == 0 {
			t.Fatal("the spin was not found")
		}
		return fired
	}
	for _, tc := range []struct {
		name   string
		before float64 // cores before the spin
		others int
		hint   bool
		within time.Duration // later than at the full rate, at most
	}{
		{"busy before, alone", 0.2, 0, false, 0},
		{"busy before, among 10000", 0.2, 10000, false, 0},
		{"idle, alone", 0.002, 0, false, 2 * time.Second},
		{"idle, exec'd a program, alone", 0.002, 0, true, 2 * time.Second},
		{"idle, among 10000 (budget stretches the idle period to 5 s)", 0.002, 10000, false, 5*time.Second + 500*time.Millisecond},
		{"idle, exec'd a program, among 10000", 0.002, 10000, true, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full := verdictAt(t, tc.before, 0, false, true)
			if full > 2*time.Second {
				t.Fatalf("at the full rate found %v after the spin started, want about 1.5 s", full)
			}
			got := verdictAt(t, tc.before, tc.others, tc.hint, false)
			t.Logf("found %v after the spin started (full rate: %v)", got, full)
			if got > full+tc.within {
				t.Errorf("found %v after the spin started, at the full rate %v: more than %v later", got, full, tc.within)
			}
		})
	}
}

func TestReadCgroupFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte("usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cgroup.threads"), []byte("10\n11\n12\n"), 0o644)
	buf := make([]byte, 4)
	if ns, err := readCPUStat(dir, make([]byte, 4096)); err != nil || ns != 1234000 {
		t.Errorf("readCPUStat = %d, %v, want 1234000", ns, err)
	}
	os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte("usage_usec 1234\nuser_usec 1000\nnr_throttled 2\nthrottled_usec 56\n"), 0o644)
	if ns, th, err := readCPUStats(dir, make([]byte, 4096)); err != nil || ns != 1234000 || th != 56000 {
		t.Errorf("readCPUStats = %d, %d, %v, want 1234000, 56000 (throttled_usec after usage_usec)", ns, th, err)
	}
	if n, err := readThreads(dir, buf); err != nil || n != 3 {
		t.Errorf("readThreads = %d, %v, want 3 (read 4 bytes at a time)", n, err)
	}
	os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte("user_usec 1000\n"), 0o644)
	if _, err := readCPUStat(dir, make([]byte, 4096)); err == nil {
		t.Error("no usage_usec: no error")
	}
	if _, err := readCPUStat(filepath.Join(dir, "gone"), make([]byte, 4096)); err == nil {
		t.Error("no cgroup: no error")
	}
}

// TestReadCgroupFilesKernel reads a real cgroup's files as the sampling
// loop does, beside bpf.CgroupUsage.
func TestReadCgroupFilesKernel(t *testing.T) {
	privtest.Require(t)
	root, err := bpf.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, fmt.Sprintf("vigil-test-sampling-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
		for i := 0; i < 200; i++ {
			if err := unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Errorf("cgroup %s left behind", dir)
	})
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// A shell that spins a little, then one sleeping thread.
	cmd := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exec sleep 30")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 4096)
	deadline := time.Now().Add(20 * time.Second)
	for {
		usage, err := readCPUStat(dir, buf)
		if err != nil {
			t.Fatal(err)
		}
		threads, err := readThreads(dir, buf)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
		if usage >= 10e6 && threads == 1 && strings.TrimSpace(string(b)) == "sleep" {
			// Sleeping: the usage stays; bpf.CgroupUsage reads the same.
			want, wantThreads, err := bpf.CgroupUsage(dir)
			if err != nil {
				t.Fatal(err)
			}
			if usage2, _ := readCPUStat(dir, buf); usage2 != want || wantThreads != threads {
				t.Errorf("read %d ns, %d threads; bpf.CgroupUsage %d ns, %d threads", usage2, threads, want, wantThreads)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cgroup read %d ns of CPU and %d threads (process %q), want at least 10 ms and 1 sleeping thread", usage, threads, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSamplingStormKeepsHot: thousands of containers tracked at once are
// read first, but a busy container already hot waits a few ticks at most.
func TestSamplingStormKeepsHot(t *testing.T) {
	cfg := Sampling{Budget: 2000}.withDefaults(250 * time.Millisecond)
	s := newSampler(cfg)
	cgs := map[uint64]simCgroup{1: {cores: []simPhase{{0, 1}}}}
	s.track(1, "/cg/1")
	var last time.Time
	var maxGap time.Duration
	storm := false
	simulate(s, cgs, 30*time.Second, func(j sampleJob, now time.Time, _ uint64) {
		if !storm && now.After(sampleT0.Add(5*time.Second)) {
			for id := uint64(2); id <= 10001; id++ {
				cgs[id] = simCgroup{cores: []simPhase{{0, 0.001}}}
				s.track(id, "/cg/n")
			}
			storm = true
		}
		if j.ID != 1 {
			return
		}
		if !last.IsZero() && now.Sub(last) > maxGap {
			maxGap = now.Sub(last)
		}
		last = now
	})
	if maxGap > 4*cfg.Every {
		t.Errorf("the busy container waited %v between samples while 10,000 were tracked, want at most 4 ticks", maxGap)
	}
}

func TestSamplingSync(t *testing.T) {
	s := newSampler(Sampling{}.withDefaults(250 * time.Millisecond))
	s.track(1, "/cg/1")
	s.track(2, "/cg/2")
	s.due(sampleT0) // both seen by a tick
	s.track(3, "/cg/3")
	// The registry's list taken before 3 was tracked, after 2 stopped.
	s.sync(map[uint64]string{1: "/cg/1"}, map[uint64]bool{1: true})
	if _, ok := s.cs[2]; ok {
		t.Error("a container no longer tracked is still sampled")
	}
	if _, ok := s.cs[3]; !ok {
		t.Error("a container tracked since the list was taken is forgotten")
	}
	if !s.cs[1].held {
		t.Error("held by the ladder: not marked")
	}
	s.untrack(3)
	if len(s.cs) != 1 {
		t.Errorf("%d containers sampled, want 1", len(s.cs))
	}
}
