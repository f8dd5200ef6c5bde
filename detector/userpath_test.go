package detector

import (
	"slices"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

// TestKernelPathAndUserSpelling: when the tracer records the file the
// kernel opened (Path) and flags that the process passed another string
// (PathUser), path rules match either: a read through /proc/1/root whose
// kernel path is the other root's file still raises host-root-via-proc,
// and a forged user string that names a sensitive file is judged too.
func TestKernelPathAndUserSpelling(t *testing.T) {
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	kernelPath := func(kernel, user string) step {
		return step{"openat", func(e *event.Event) {
			e.Args[0], e.Path, e.PathUser, e.Ret = atCwd, kernel, user, 3
			e.Flags |= event.UserDiffers
		}}
	}
	for _, tt := range []struct {
		name  string
		steps []step
		want  string
	}{
		{"through /proc/1/root, kernel path outside the root", []step{kernelPath("(unreachable)/etc/shadow", "/proc/1/root/etc/shadow")}, "host-root-via-proc"},
		{"relative user spelling after chdir", []step{chdir("/proc/1", 0), kernelPath("(unreachable)/etc/hostname", "root/etc/hostname")}, "host-root-via-proc"},
		{"kernel path sensitive, user string harmless", []step{kernelPath("/etc/shadow", "/tmp/harmless")}, "credential-files"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			vs := run(t, e, uint64(len(tt.name)), tt.steps)
			if last := rulesOf(vs[len(vs)-1]); !slices.Contains(last, tt.want) {
				t.Errorf("rules %v, want %s", last, tt.want)
			}
		})
	}
	// Without the flag the user string is not looked at.
	vs := run(t, e, 99, []step{{"openat", func(e *event.Event) {
		e.Args[0], e.Path, e.PathUser, e.Ret = atCwd, "/tmp/x", "/proc/1/root/etc/shadow", 3
	}}})
	if len(vs[0]) != 0 {
		t.Errorf("verdicts %v from a user string the tracer did not flag", rulesOf(vs[0]))
	}
}

// TestTracerFloodVerdict: a container whose records exceed its tracing
// budget (the tracer counts them as throttled) gets a verdict; one that
// never exceeds it does not.
func TestTracerFloodVerdict(t *testing.T) {
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1000, 0)
	feed := func(cg uint64, throttledPerTick uint64) []Verdict {
		var out []Verdict
		for i := 0; i <= 8; i++ {
			out = append(out, e.Sample(Sample{CgroupID: cg, Time: base.Add(time.Duration(i) * 250 * time.Millisecond),
				CPUUsageNs: uint64(i) * 1e6, Threads: 1, Throttled: uint64(i) * throttledPerTick})...)
		}
		return out
	}
	if vs := feed(1, 5000); !slices.ContainsFunc(vs, func(v Verdict) bool { return v.Rule == "tracer-flood" && v.Class == ClassAnomaly }) {
		t.Errorf("no tracer-flood verdict for 20000 throttled records/s: %v", rulesOf(vs))
	}
	if vs := feed(2, 0); len(vs) != 0 {
		t.Errorf("verdicts %v for a container within its budget", rulesOf(vs))
	}
}
