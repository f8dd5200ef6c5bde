package detector

import (
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

// TestCPURulesByExecutable: the default CPU rules tell compilers, build
// tools and runtimes from other programs by the executable of each
// process of the container, and do not take the name of one written in
// the container at its word.
func TestCPURulesByExecutable(t *testing.T) {
	type proc struct {
		pid     uint32
		exe     string
		written bool // the container wrote exe before running it
	}
	for _, tc := range []struct {
		name    string
		procs   []proc
		cores   float64
		threads int
		want    string // "" no verdict
	}{
		{"compiler", []proc{{10, "/bin/sh", false}, {11, "/usr/lib/gcc/x86_64-linux-gnu/12/cc1", false}}, 1, 1, ""},
		{"go linker, many threads", []proc{{10, "/usr/local/go/bin/go", false}, {11, "/usr/local/go/pkg/tool/linux_amd64/link", false}}, 1.8, 9, ""},
		{"python data job", []proc{{10, "/usr/bin/python3.11", false}}, 1, 1, ""},
		{"jvm", []proc{{10, "/usr/lib/jvm/java-17-openjdk-amd64/bin/java", false}}, 1.8, 20, ""},
		{"unknown program", []proc{{10, "/opt/app/cruncher", false}}, 1, 1, "cpu-spin-few-syscalls"},
		{"unknown threads", []proc{{10, "/opt/app/cruncher", false}}, 1.8, 6, "cpu-many-spinning-threads"},
		{"beside a compiler", []proc{{10, "/usr/bin/make", false}, {11, "/tmp/.x/kworker", false}}, 1.8, 6, "cpu-many-spinning-threads"},
		{"compiler name written in the container", []proc{{10, "/tmp/build/cc1", true}}, 1, 1, "cpu-spin-few-syscalls"},
		{"runtime written in the container", []proc{{10, "/bin/sh", false}, {11, "/var/tmp/java", true}}, 1.8, 6, "cpu-many-spinning-threads"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			now := t0
			seq := uint64(0)
			obs := func(ev event.Event) {
				seq++
				ev.Seq, ev.Time, ev.CgroupID = seq, now, 3
				if ev.TID == 0 {
					ev.TID = ev.PID
				}
				e.Observe(&ev)
			}
			for _, p := range tc.procs {
				if p.written {
					// a shell writes the file, then the process runs it
					obs(event.Event{PID: 2, Nr: nr(t, "execve"), Path: "/bin/sh", Comm: "sh"})
					obs(event.Event{PID: 2, Nr: nr(t, "openat"), Path: p.exe, Args: [6]uint64{0, 0, 0o1101}, Ret: 3})
					obs(event.Event{PID: 2, Nr: nr(t, "close"), Args: [6]uint64{3}})
				}
				obs(event.Event{PID: p.pid, Nr: nr(t, "execve"), Path: p.exe, Comm: p.exe[strings.LastIndexByte(p.exe, '/')+1:]})
			}
			var fired []Verdict
			var cpu uint64
			for s := 0; s < 24; s++ { // 6 s, 5 syscalls a second
				if s%4 == 0 {
					obs(event.Event{PID: tc.procs[0].pid, Nr: nr(t, "read")})
				}
				now = now.Add(250 * time.Millisecond)
				cpu += uint64(tc.cores * 250e6)
				fired = append(fired, e.Sample(Sample{CgroupID: 3, Time: now, CPUUsageNs: cpu, Threads: tc.threads})...)
			}
			var rules []string
			for _, v := range fired {
				rules = append(rules, v.Rule)
			}
			if tc.want == "" {
				if len(fired) > 0 {
					t.Errorf("fired %v: %s", rules, fired[0].Message)
				}
				return
			}
			if !contains(rules, tc.want) {
				t.Fatalf("fired %v, want %s", rules, tc.want)
			}
			for _, v := range fired {
				if v.Rule == tc.want && !strings.Contains(v.Message, "running pid") {
					t.Errorf("message %q does not name the process", v.Message)
				}
			}
		})
	}
}

func TestUnlessExesErrors(t *testing.T) {
	for _, tc := range []struct{ name, rules, want string }{
		{"event rule", "rules:\n- rule: x\n  class: anomaly\n  severity: low\n  syscalls: [read]\n  unless_exes: [\"*/cc\"]\n", "unless_exes belongs to sample rules"},
		{"not a list", "rules:\n- sample: x\n  class: cpu-abuse\n  severity: low\n  when: {cpu_cores: {ge: 1}}\n  unless_exes: {glob: {a: b}}\n", "unless_exes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{NoDefaultRules: true, RuleTexts: [][]byte{[]byte(tc.rules)}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}
