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
		{"luajit job", []proc{{10, "/bin/sh", false}, {11, "/usr/bin/luajit", false}}, 1, 1, ""},
		{"luajit written in the container", []proc{{10, "/tmp/lj/luajit", true}}, 1, 1, "cpu-spin-few-syscalls"},
		{"imagemagick resize", []proc{{10, "/bin/sh", false}, {11, "/usr/bin/convert", false}}, 1.8, 4, ""},
		{"convert outside the system's paths", []proc{{10, "/opt/im/convert", false}}, 1.8, 4, "cpu-many-spinning-threads"},
		{"convert written in the container", []proc{{10, "/usr/bin/convert", true}}, 1, 1, "cpu-spin-few-syscalls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var evs []event.Event
			for _, p := range tc.procs {
				if p.written {
					// a shell writes the file, then the process runs it
					evs = append(evs, event.Event{PID: 2, Nr: nr(t, "execve"), Path: "/bin/sh", Comm: "sh"},
						event.Event{PID: 2, Nr: nr(t, "openat"), Path: p.exe, Args: [6]uint64{0, 0, 0o1101}, Ret: 3},
						event.Event{PID: 2, Nr: nr(t, "close"), Args: [6]uint64{3}})
				}
				evs = append(evs, event.Event{PID: p.pid, Nr: nr(t, "execve"), Path: p.exe, Comm: p.exe[strings.LastIndexByte(p.exe, '/')+1:]})
			}
			fired := spinAfter(t, evs, tc.procs[0].pid, tc.cores, tc.threads)
			expectRule(t, fired, "", tc.want, "running pid")
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

// TestCPURulesMappedCode: a process that mapped for execution a file the
// container wrote runs that code, whatever its executable: a miner built
// as a shared object and loaded into /usr/bin/sleep (LD_PRELOAD), an
// openssl engine or sqlite3's .load keeps the CPU rules live, while
// programs loading the system's libraries, or mapping a written file
// only to read it, stay accounted for. The events are those vigil trace
// records for `LD_PRELOAD=/tmp/m.so /usr/bin/sleep`: ld.so opens the
// file, maps it read-only, then maps its text PROT_READ|PROT_EXEC over
// that with MAP_FIXED (flags 0x812), the fd in arg4.
func TestCPURulesMappedCode(t *testing.T) {
	const (
		base    = 0x7fb2a1f8c000
		rdonly  = 0x80000 // O_RDONLY|O_CLOEXEC, as ld.so opens
		private = 0x802   // MAP_PRIVATE|MAP_DENYWRITE
		fixed   = 0x812   // and MAP_FIXED
	)
	type ev = event.Event
	nrOf := func(name string) int32 { return nr(t, name) }
	openAt := func(pid uint32, path string, fd int64) ev {
		return ev{PID: pid, Nr: nrOf("openat"), Path: path, Args: [6]uint64{0xffffff9c, 0, rdonly}, Ret: fd}
	}
	mmap := func(pid uint32, addr, length, prot, flags, fd uint64, ret uint64) ev {
		return ev{PID: pid, Nr: nrOf("mmap"), Args: [6]uint64{addr, length, prot, flags, fd}, Ret: int64(ret)}
	}
	// loadSO is ld.so loading path into pid at base.
	loadSO := func(pid uint32, path string) []ev {
		return []ev{
			openAt(pid, path, 3),
			mmap(pid, 0, 0x4010, 1, private, 3, base),
			mmap(pid, base+0x1000, 0x1000, 5, fixed, 3, base+0x1000),
			mmap(pid, base+0x2000, 0x1000, 1, fixed, 3, base+0x2000),
			{PID: pid, Nr: nrOf("close"), Args: [6]uint64{3}},
		}
	}
	// write is a shell writing path.
	write := func(path string) []ev {
		return []ev{
			{PID: 2, Nr: nrOf("execve"), Path: "/bin/sh", Comm: "sh"},
			{PID: 2, Nr: nrOf("openat"), Path: path, Args: [6]uint64{0xffffff9c, 0, 0o1101}, Ret: 3},
			{PID: 2, Nr: nrOf("close"), Args: [6]uint64{3}},
		}
	}
	exec := func(pid uint32, exe string) ev {
		return ev{PID: pid, Nr: nrOf("execve"), Path: exe, Comm: exe[strings.LastIndexByte(exe, '/')+1:]}
	}
	cat := func(parts ...[]ev) []ev {
		var out []ev
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		events  []ev
		threads int
		cores   float64
		want    string // "" no verdict; else the rule, and the message must name the file
	}{
		{"LD_PRELOAD miner in sleep", cat(write("/tmp/m.so"), []ev{exec(11, "/usr/bin/sleep")}, loadSO(11, "/tmp/m.so")),
			1, 1, "cpu-spin-few-syscalls"},
		{"openssl engine, many threads", cat(write("/tmp/m.so"), []ev{exec(11, "/usr/bin/openssl")},
			loadSO(11, "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"), loadSO(11, "/tmp/m.so")),
			6, 1.8, "cpu-many-spinning-threads"},
		{"mapped read-only, then made executable", cat(write("/tmp/m.so"), []ev{exec(11, "/usr/bin/sqlite3"),
			openAt(11, "/tmp/m.so", 4), mmap(11, 0, 0x2000, 1, 2, 4, base),
			{PID: 11, Nr: nrOf("mprotect"), Args: [6]uint64{base + 0x1000, 0x1000, 5}}}),
			1, 1, "cpu-spin-few-syscalls"},
		{"a child of the loader keeps its code", cat(write("/tmp/m.so"), []ev{exec(11, "/usr/bin/python3")}, loadSO(11, "/tmp/m.so"),
			[]ev{{PID: 11, Nr: nrOf("clone"), Args: [6]uint64{0x1200011}, Ret: 12}, {PID: 11, Nr: nrOf("exit_group")}}),
			1, 1, "cpu-spin-few-syscalls"},
		{"renamed before it is loaded", cat(write("/tmp/a"), []ev{
			{PID: 2, Nr: nrOf("rename"), Path: "/tmp/a", Path2: "/usr/lib/libz.so.1", Ret: 0},
			exec(11, "/usr/bin/ssh-keygen")}, loadSO(11, "/usr/lib/libz.so.1")),
			1, 1, "cpu-spin-few-syscalls"},
		{"hard-linked before it is loaded", cat(write("/tmp/a"), []ev{
			{PID: 2, Nr: nrOf("linkat"), Path: "/tmp/a", Path2: "/usr/local/lib/libz.so.1", Args: [6]uint64{0xffffff9c, 0, 0xffffff9c}, Ret: 0},
			exec(11, "/usr/bin/ffmpeg")}, loadSO(11, "/usr/local/lib/libz.so.1")),
			1, 1, "cpu-spin-few-syscalls"},
		// near-misses
		{"compiler loading system libraries", cat([]ev{exec(10, "/usr/bin/make"), exec(11, "/usr/lib/gcc/x86_64-linux-gnu/12/cc1")},
			loadSO(11, "/usr/lib/x86_64-linux-gnu/libc.so.6"), loadSO(11, "/usr/lib/x86_64-linux-gnu/libisl.so.23")),
			6, 1.8, ""},
		{"sort mapping the file it sorts", cat(write("/tmp/data"), []ev{exec(11, "/usr/bin/sort"),
			openAt(11, "/tmp/data", 4), mmap(11, 0, 0x100000, 1, 2, 4, base)}), 1, 1, ""},
		{"made executable after it was unmapped", cat(write("/tmp/data"), []ev{exec(11, "/usr/bin/java"),
			openAt(11, "/tmp/data", 4), mmap(11, 0, 0x2000, 1, 2, 4, base),
			{PID: 11, Nr: nrOf("munmap"), Args: [6]uint64{base, 0x2000}},
			{PID: 11, Nr: nrOf("mprotect"), Args: [6]uint64{base, 0x1000, 5}}}), 1, 1, ""},
		{"the loader exec'd a system program", cat(write("/tmp/m.so"), []ev{exec(11, "/usr/bin/python3")}, loadSO(11, "/tmp/m.so"),
			[]ev{exec(11, "/usr/bin/xz")}), 1, 1, ""},
		{"LD_PRELOAD of a library the image shipped", cat([]ev{exec(11, "/usr/bin/sleep")}, loadSO(11, "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")),
			1, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fired := spinAfter(t, tc.events, 2, tc.cores, tc.threads)
			expectRule(t, fired, "cpu-abuse", tc.want, "written in the container")
		})
	}
}

// spinAfter gives a new engine a container's events (cgroup 3), then 6 s
// of its CPU samples at cores CPUs in threads threads while pid makes 5
// syscalls a second, and returns every verdict.
func spinAfter(t *testing.T, evs []event.Event, pid uint32, cores float64, threads int) []Verdict {
	t.Helper()
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
	for _, ev := range evs {
		obs(ev)
	}
	var fired []Verdict
	var cpu uint64
	for s := 0; s < 24; s++ {
		if s%4 == 0 {
			obs(event.Event{PID: pid, Nr: nr(t, "read")})
		}
		now = now.Add(250 * time.Millisecond)
		cpu += uint64(cores * 250e6)
		fired = append(fired, e.Sample(Sample{CgroupID: 3, Time: now, CPUUsageNs: cpu, Threads: threads})...)
	}
	return fired
}

// TestCPURulesAfterLastExit: a sample rule's window still holds the CPU
// of a process that has exited. When the container's last known process
// exits, the gate judges the processes that exited within the window:
// a compressor or a runtime that was the container's only process (xz -9
// -T0, a PHP job: "running no process known" in the samples after their
// exit) raises nothing, an unknown program still does, named as exited,
// and a container vigil never saw a process of is still unaccounted for.
func TestCPURulesAfterLastExit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		exe     string // "" no process seen at all
		want    string // "" no verdict
		message string
	}{
		{"compressor exits", "/usr/bin/xz", "", ""},
		{"runtime exits", "/usr/bin/php", "", ""},
		{"unknown program exits", "/opt/app/cruncher", "cpu-spin-few-syscalls", "pid 10 (/opt/app/cruncher, exited)"},
		{"no process seen", "", "cpu-spin-few-syscalls", "no process known"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			now := t0
			seq := uint64(0)
			obs := func(ev event.Event) {
				seq++
				ev.Seq, ev.Time, ev.CgroupID, ev.TID = seq, now, 3, ev.PID
				e.Observe(&ev)
			}
			if tc.exe != "" {
				obs(event.Event{PID: 10, Nr: nr(t, "execve"), Path: tc.exe, Comm: "job"})
			}
			var fired []Verdict
			var cpu uint64
			for s := 0; s < 24; s++ {
				now = now.Add(250 * time.Millisecond)
				if s < 10 {
					cpu += 250e6 // one core for 2.5 s, then the job is done
				}
				if s == 9 && tc.exe != "" {
					obs(event.Event{PID: 10, Nr: nr(t, "exit_group")})
				}
				fired = append(fired, e.Sample(Sample{CgroupID: 3, Time: now, CPUUsageNs: cpu, Threads: 1})...)
			}
			expectRule(t, fired, "", tc.want, tc.message)
		})
	}
}

// expectRule checks the verdicts of a CPU-rule case (of class only, when
// class is not ""): none when want is "", else one of rule want whose
// message says msg.
func expectRule(t *testing.T, fired []Verdict, class, want, msg string) {
	t.Helper()
	var rules []string
	var first *Verdict
	for i, v := range fired {
		if class == "" || string(v.Class) == class {
			rules = append(rules, v.Rule)
			if first == nil {
				first = &fired[i]
			}
		}
	}
	if want == "" {
		if first != nil {
			t.Errorf("fired %v: %s", rules, first.Message)
		}
		return
	}
	if !contains(rules, want) {
		t.Fatalf("fired %v, want %s", rules, want)
	}
	for _, v := range fired {
		if v.Rule == want && !strings.Contains(v.Message, msg) {
			t.Errorf("message %q does not say %q", v.Message, msg)
		}
	}
}
