package bpf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/internal/privtest"
)

func TestParseCPUStat(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    CPUStat
		wantErr string // a part of the error ("" none)
	}{
		{name: "v2 without the cpu controller (Linux 6.18)",
			in:   "usage_usec 49358984\nuser_usec 28036088\nsystem_usec 21322896\nnice_usec 36192\n",
			want: CPUStat{UsageNs: 49358984000, UserNs: 28036088000, SystemNs: 21322896000}},
		{name: "with the cpu controller: throttling after usage",
			in: "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\nnice_usec 0\ncore_sched.force_idle_usec 0\n" +
				"nr_periods 40\nnr_throttled 2\nthrottled_usec 56\nnr_bursts 0\nburst_usec 0\n",
			want: CPUStat{UsageNs: 1234000, UserNs: 1000000, SystemNs: 234000, NrThrottled: 2, ThrottledNs: 56000, HasThrottled: true}},
		{name: "throttled_usec 0 is there",
			in:   "usage_usec 5\nthrottled_usec 0\n",
			want: CPUStat{UsageNs: 5000, HasThrottled: true}},
		{name: "no final newline", in: "user_usec 3\nusage_usec 7", want: CPUStat{UsageNs: 7000, UserNs: 3000}},
		{name: "fields it does not know, before and after", in: "some_new_usec 99\nusage_usec 1\nfuture x y z\n",
			want: CPUStat{UsageNs: 1000}},
		{name: "lines without a value and empty lines skipped", in: "\nusage_usec 2\n\nnr_bursts\n",
			want: CPUStat{UsageNs: 2000}},
		{name: "a field twice keeps the last", in: "usage_usec 1\nusage_usec 9\n", want: CPUStat{UsageNs: 9000}},
		{name: "largest usage that fits in ns", in: "usage_usec 18446744073709551\n", want: CPUStat{UsageNs: 18446744073709551000}},
		{name: "nr_throttled is a count, not microseconds", in: "usage_usec 1\nnr_throttled 18446744073709551615\n",
			want: CPUStat{UsageNs: 1000, NrThrottled: 18446744073709551615}},

		{name: "empty", in: "", wantErr: "no usage_usec"},
		{name: "usage_usec missing", in: "user_usec 1\nsystem_usec 2\n", wantErr: "no usage_usec"},
		{name: "usage_usec is not a prefix match", in: "usage_usec_total 1\n", wantErr: "no usage_usec"},
		{name: "usage without a value", in: "usage_usec \n", wantErr: `usage_usec ""`},
		{name: "usage negative", in: "usage_usec -1\n", wantErr: `usage_usec "-1"`},
		{name: "usage with a trailing space", in: "usage_usec 12 \n", wantErr: `usage_usec "12 "`},
		{name: "usage with two spaces", in: "usage_usec  12\n", wantErr: `usage_usec " 12"`},
		{name: "usage not decimal", in: "usage_usec 0x10\n", wantErr: "not a decimal number of microseconds"},
		{name: "usage overflows in ns", in: "usage_usec 18446744073709552\n", wantErr: "usage_usec"},
		{name: "usage overflows 64 bits", in: "usage_usec 99999999999999999999\n", wantErr: "usage_usec"},
		{name: "malformed throttled_usec", in: "usage_usec 1\nthrottled_usec 1.5\n", wantErr: `throttled_usec "1.5"`},
		{name: "malformed nr_throttled", in: "usage_usec 1\nnr_throttled x\n", wantErr: "not a decimal number of periods"},
		{name: "truncated line", in: "usage_usec 1\nthrottled_usec 12\x00\x00", wantErr: "throttled_usec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCPUStat([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseCPUStat(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
				}
				if got != (CPUStat{}) {
					t.Errorf("ParseCPUStat(%q) failed but returned %+v", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ParseCPUStat(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
	if _, err := ParseCPUStat([]byte("user_usec 1\n")); !errors.Is(err, ErrNoUsage) {
		t.Errorf("no usage_usec: error %v, want ErrNoUsage", err)
	}
}

// TestReadCPUStatFile reads cpu.stat files of a plain directory: with the
// caller's buffer it allocates nothing, and it refuses what does not fit.
func TestReadCPUStatFile(t *testing.T) {
	dir := t.TempDir()
	const body = "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\nnr_periods 4\nnr_throttled 2\nthrottled_usec 56\n"
	if err := os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, cpuStatBuf)
	st, err := ReadCPUStat(dir, buf)
	if want := (CPUStat{UsageNs: 1234000, UserNs: 1000000, SystemNs: 234000, NrThrottled: 2, ThrottledNs: 56000, HasThrottled: true}); err != nil || st != want {
		t.Fatalf("ReadCPUStat = %+v, %v; want %+v", st, err, want)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ReadCPUStat(dir, buf); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ReadCPUStat allocates %v times a read, want 0", n)
	}
	in := []byte(body)
	if n := testing.AllocsPerRun(100, func() { ParseCPUStat(in) }); n != 0 {
		t.Errorf("ParseCPUStat allocates %v times a parse, want 0", n)
	}
	// CgroupUsage and CgroupSample read the same file through it.
	os.WriteFile(filepath.Join(dir, "cgroup.threads"), []byte("1\n2\n"), 0o644)
	if ns, threads, err := CgroupUsage(dir); err != nil || ns != 1234000 || threads != 2 {
		t.Errorf("CgroupUsage = %d, %d, %v; want 1234000, 2", ns, threads, err)
	}
	if st, threads, err := CgroupSample(dir); err != nil || st.UsageNs != 1234000 || st.ThrottledNs != 56000 || threads != 2 {
		t.Errorf("CgroupSample = %+v, %d, %v; want usage 1234000, throttled 56000, 2 threads", st, threads, err)
	}
	if wait := CgroupPressure(dir); wait != 0 {
		t.Errorf("CgroupPressure = %d, want 0 (no cpu.pressure)", wait)
	}

	if _, err := ReadCPUStat(dir, make([]byte, len(body)-1)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a file larger than the buffer: error %v, want one saying so", err)
	}
	if _, err := ReadCPUStat(dir, make([]byte, len(dir)+len("/cpu.stat"))); err == nil || !strings.Contains(err.Error(), "path longer") {
		t.Errorf("a path longer than the buffer: error %v, want one saying so", err)
	}
	if _, err := ReadCPUStat(filepath.Join(dir, "gone"), buf); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no such cgroup: error %v, want ENOENT", err)
	}
	if _, _, err := CgroupUsage(filepath.Join(dir, "gone")); err == nil {
		t.Error("CgroupUsage of no cgroup: no error")
	}
}

// TestReadCPUStatKernel reads a real cgroup's cpu.stat while a process
// in it spins, then sleeps: the usage grows with its CPU time, then stays,
// and CgroupUsage reads the same figure.
func TestReadCPUStatKernel(t *testing.T) {
	privtest.Require(t)
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-cpustat-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cg.Remove(); err != nil {
			t.Error(err)
		}
	})
	buf := make([]byte, cpuStatBuf)
	st, err := ReadCPUStat(cg.Path, buf)
	if err != nil || st.UsageNs != 0 {
		t.Fatalf("new cgroup: ReadCPUStat = %+v, %v; want usage 0", st, err)
	}
	cmd := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 30")
	cmd.SysProcAttr = cg.SysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
		if strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the shell did not finish its loop in 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, err = ReadCPUStat(cg.Path, buf)
	if err != nil {
		t.Fatal(err)
	}
	// The shell's own CPU time, as the kernel accounts it to the process.
	var utime, stime uint64
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	procNs := (utime + stime) * 1e7 // clock ticks of 10 ms
	if st.UsageNs < 10e6 || st.UsageNs+20e6 < procNs {
		t.Errorf("cgroup usage %d ns, the process used %d ns (ticks): want at least 10 ms and about the process's", st.UsageNs, procNs)
	}
	if st.UserNs+st.SystemNs == 0 {
		t.Errorf("usage %d ns, but user and system 0", st.UsageNs)
	}
	ns, threads, err := CgroupUsage(cg.Path)
	if err != nil || threads != 1 || ns < st.UsageNs || ns > st.UsageNs+5e6 {
		t.Errorf("CgroupUsage = %d ns, %d threads, %v; ReadCPUStat read %d ns just before, 1 thread sleeps", ns, threads, err, st.UsageNs)
	}
}
