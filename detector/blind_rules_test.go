package detector

import (
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

// Cases from workloads and attacks written apart from the rules (issue
// 12): each everyday near-miss that raised a verdict, and the attack its
// rule guards.

func statOf(pid uint32, name, path string) rstep {
	return sys(pid, name, func(e *event.Event) { e.Path = path })
}

func linkOf(pid uint32, target, link string) rstep {
	return sys(pid, "symlinkat", func(e *event.Event) { e.Path, e.Path2 = target, link })
}

func uidIs(pid uint32, euid int64) rstep {
	return sys(pid, "geteuid", func(e *event.Event) { e.Ret = euid })
}

func vforkOf(pid, child uint32) rstep {
	return rstep{"vfork", func(e *event.Event) { e.PID, e.TID, e.Ret = pid, pid, int64(child) }}
}

func init() {
	const oRDWR = 2
	for name, c := range map[string]behaviourCase{
		// lscpu falls back to /dev/mem (read-only) for the DMI tables; ls -l
		// /proc stats kcore and kallsyms. dd reading it still fires.
		"kernel-memory-access/dmi-read": {rule: "kernel-memory-access",
			fire: []rstep{execOf(100, "/usr/bin/dd", "dd", "if=/dev/mem"), openOf(100, "/dev/mem", 0),
				execOf(200, "/usr/bin/lscpu"), openOf(200, "/dev/mem", oRDWR)},
			miss: []rstep{execOf(100, "/usr/bin/lscpu"), openOf(100, "/dev/mem", 0),
				execOf(200, "/usr/bin/ls", "ls", "-l", "/proc"), statOf(200, "statx", "/proc/kcore"), statOf(200, "statx", "/proc/kallsyms")}},
		// sysctl -a opens every parameter read-only; ls -l stats them
		"kernel-hook-access/sysctl-listing": {rule: "kernel-hook-access",
			fire: []rstep{execOf(100, "/usr/bin/cat"), openOf(100, "/proc/sys/kernel/core_pattern", 0),
				execOf(200, "/usr/sbin/sysctl", "sysctl", "-w", "kernel.core_pattern=|/tmp/x"), openOf(200, "/proc/sys/kernel/core_pattern", oWrCreatTrunc)},
			miss: []rstep{execOf(100, "/usr/sbin/sysctl", "sysctl", "-a"), statOf(100, "newfstatat", "/proc/sys/kernel/core_pattern"),
				openOf(100, "/proc/sys/kernel/core_pattern", 0), execOf(200, "/usr/bin/ls"), statOf(200, "statx", "/proc/sys/kernel/modprobe")}},
		// df stats every mount point
		"sysfs-kernel-access/df": {rule: "sysfs-kernel-access",
			fire: []rstep{execOf(100, "/usr/bin/cat"), openOf(100, "/sys/kernel/debug/tracing/trace_pipe", 0)},
			miss: []rstep{execOf(100, "/usr/bin/df"), statOf(100, "newfstatat", "/sys/kernel/tracing"), statOf(100, "statx", "/sys/kernel/debug")}},
		// entrypoints link logs to the console and mtab to /proc; a venv
		// made by pyenv's python links into /root/.pyenv
		"symlink-to-sensitive-path/entrypoint": {rule: "symlink-to-sensitive-path",
			fire: []rstep{execOf(100, "/usr/bin/ln"), linkOf(100, "/etc/passwd", "/tmp/r/x"), linkOf(101, "/root/.ssh/authorized_keys", "/tmp/r/k"),
				linkOf(102, "/dev/sda", "/tmp/r/d"), linkOf(103, "/proc/1/root", "/tmp/r/h")},
			miss: []rstep{execOf(100, "/usr/bin/ln"), linkOf(100, "/dev/stdout", "/var/log/nginx/access.log"), linkOf(101, "/dev/stderr", "/tmp/e.log"),
				linkOf(102, "/proc/self/fd/1", "/tmp/a.log"), linkOf(103, "/proc/self/mounts", "/etc/mtab"), linkOf(104, "/proc/mounts", "/tmp/mtab"),
				linkOf(105, "/dev/null", "/tmp/debug.log"), linkOf(106, "/dev/shm", "/run/shm"),
				linkOf(107, "/root/.pyenv/versions/3.11.7/bin/python3", "/tmp/v/bin/python3")}},
		// root runs su or mount (listing mounts): nothing to gain
		"setuid-binary-exec/root": {rule: "setuid-binary-exec",
			fire: []rstep{execOf(100, "/usr/bin/setpriv"), uidIs(100, 65534), execOf(100, "/usr/bin/su", "su", "-c", "id", "root")},
			miss: []rstep{execOf(100, "/usr/bin/bash"), uidIs(100, 0), forkOf(100, 101), execOf(101, "/usr/bin/su", "su", "-s", "/bin/sh", "nobody"),
				forkOf(100, 102), execOf(102, "/usr/bin/mount")}},
		// strip rewrites what the compiler wrote
		"drift-exec/binutils": {rule: "drift-exec",
			fire: []rstep{execOf(100, "/usr/bin/curl"), openOf(100, "/tmp/b/prog", oWrCreatTrunc), execOf(101, "/tmp/b/prog")},
			miss: []rstep{execOf(100, "/usr/bin/cc"), openOf(100, "/tmp/b/prog", oWrCreatTrunc), execOf(101, "/usr/bin/strip"),
				openOf(101, "/tmp/b/prog", oWrCreatTrunc), execOf(102, "/tmp/b/prog")}},
		// a hard link is the file it links (cargo links what rustc's
		// rust-lld wrote into target/release)
		"drift-exec/hardlink": {rule: "drift-exec",
			fire: []rstep{execOf(100, "/usr/bin/curl"), openOf(100, "/tmp/b/x", oWrCreatTrunc), execOf(101, "/usr/bin/ln"),
				sys(101, "linkat", func(e *event.Event) { e.Path, e.Path2 = "/tmp/b/x", "/usr/local/bin/app" }), execOf(102, "/usr/local/bin/app")},
			miss: []rstep{execOf(100, "/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"),
				openOf(100, "/tmp/c/target/release/deps/app-1f2e", oWrCreatTrunc), execOf(101, "/root/.cargo/bin/cargo"),
				sys(101, "linkat", func(e *event.Event) {
					e.Path, e.Path2 = "/tmp/c/target/release/deps/app-1f2e", "/tmp/c/target/release/app"
				}),
				execOf(102, "/tmp/c/target/release/app")}},
		// ls /proc/PID/cwd/ reads what another process sees; pwdx and lsof
		// only read the link
		"host-root-via-proc/cwd": {rule: "host-root-via-proc",
			fire: []rstep{execOf(100, "/usr/bin/ls"), openOf(100, "/proc/4242/cwd/etc", 0o200000), execOf(101, "/usr/bin/cat"),
				openOf(101, "/proc/4242/task/4243/root/etc/hostname", 0)},
			miss: []rstep{execOf(100, "/usr/bin/pwdx"), statOf(100, "readlink", "/proc/4242/cwd"), execOf(101, "/usr/bin/cat"),
				openOf(101, "/proc/self/cwd/x", 0)}},
		// top is no longer excepted by name; a ps the container wrote
		// (over the system's) is not the system's ps. procps-ng 4.0's
		// ps aux opens every process's environ
		"proc-environ-read": {rule: "proc-environ-read",
			fire: []rstep{execOf(100, "/usr/bin/cat"), openOf(100, "/proc/1/environ", 0), execOf(101, "/usr/bin/python3"), openOf(101, "/proc/4242/environ", 0),
				execOf(102, "/usr/bin/top", "top", "-b"), openOf(102, "/proc/1/environ", 0),
				execOf(103, "/bin/sh"), openOf(103, "/usr/bin/ps", oWrCreatTrunc), execOf(104, "/usr/bin/ps", "ps", "eww", "-p", "1"), openOf(104, "/proc/1/environ", 0)},
			miss: []rstep{execOf(100, "/usr/bin/ps", "ps", "aux"), openOf(100, "/proc/4242/environ", 0), execOf(101, "/usr/bin/cat"),
				openOf(101, "/proc/self/environ", 0)}},
		"proc-memory-access": {rule: "proc-memory-access",
			fire: []rstep{execOf(100, "/usr/bin/python3"), openOf(100, "/proc/4242/mem", oRDWR)},
			miss: []rstep{execOf(100, "/usr/bin/python3"), openOf(100, "/proc/self/mem", 0), openOf(100, "/proc/4242/maps", 0)}},
		// a script connects out and runs each command it reads with the
		// socket as the command's output; a client that keeps its socket
		// off stdio does not
		"socket-stdio-exec": {rule: "socket-stdio-exec",
			fire: []rstep{execOf(100, "/usr/bin/python3"), sys(100, "socket", func(e *event.Event) { e.Args[0], e.Ret = 2, 3 }),
				sys(100, "connect", func(e *event.Event) { e.Args[0] = 3 }), forkOf(100, 101),
				sys(101, "dup2", func(e *event.Event) { e.Args[0], e.Args[1], e.Ret = 3, 1, 1 }), execOf(101, "/usr/bin/id")},
			miss: []rstep{execOf(100, "/usr/bin/python3"), sys(100, "socket", func(e *event.Event) { e.Args[0], e.Ret = 2, 3 }),
				sys(100, "connect", func(e *event.Event) { e.Args[0] = 3 }), forkOf(100, 101), execOf(101, "/usr/bin/id"),
				sys(100, "dup2", func(e *event.Event) { e.Args[0], e.Args[1], e.Ret = 3, 7, 7 }), forkOf(100, 102), execOf(102, "/usr/bin/git")}},
		// pam_keyinit's few calls stay excepted; a loop of them does not
		"keyring-call-burst": {rule: "keyring-call-burst",
			fire: func() []rstep {
				s := []rstep{execOf(100, "/usr/sbin/runuser")}
				for i := 0; i < 80; i++ {
					s = append(s, sys(100, "keyctl", func(e *event.Event) { e.Args[0], e.Args[1] = 1, 0 }))
				}
				return s
			}(),
			miss: runuserDrop(100, "/usr/sbin/runuser")},
	} {
		behaviourCases[name] = c
	}
	for name, class := range map[string]Class{
		"python-reverse-shell": ClassNetwork, "python-socket-commands": ClassNetwork, "proc-pid-cwd": ClassFSEscape,
		"proc-environ": ClassFSEscape, "core-pattern-write": ClassFSEscape, "proc-mem-open": ClassPrivesc,
		"su-as-nobody": ClassPrivesc, "miner-niced-thread": ClassCPU,
	} {
		scenarioClass[name] = class
	}
}

// runOrdered observes steps with kernel times 1 ms apart from start.
func runOrdered(t *testing.T, e *Engine, cg uint64, start uint64, steps []rstep) []Verdict {
	t.Helper()
	var out []Verdict
	for j, st := range steps {
		x := ev(t, j+1, st.name, st.mod)
		x.CgroupID = cg
		x.KTime = start + uint64(j)*1e6
		out = append(out, e.Observe(x)...)
	}
	return out
}

func rules(vs []Verdict) []string {
	var r []string
	for _, v := range vs {
		r = append(r, v.Rule)
	}
	return r
}

// TestVforkChildJudgedWithLineage: a vfork child (posix_spawn, Python's
// subprocess) execs before its parent's vfork returns; its exec is judged
// again once the parent's return says whose child it is. Python's
// reverse shell (dup2 of the socket onto stdio, then subprocess.call of
// /bin/sh) was missed for that reason.
func TestVforkChildJudgedWithLineage(t *testing.T) {
	e := newEngine(t, Config{})
	sock := func(pid uint32) []rstep {
		return []rstep{sys(pid, "socket", func(e *event.Event) { e.Args[0], e.Ret = 2, 3 }), sys(pid, "connect", func(e *event.Event) { e.Args[0] = 3 })}
	}
	steps := append([]rstep{execOf(100, "/usr/bin/python3")}, sock(100)...)
	for fd := uint64(0); fd < 3; fd++ {
		steps = append(steps, sys(100, "dup2", func(e *event.Event) { e.Args[0], e.Args[1], e.Ret = 3, fd, int64(fd) }))
	}
	steps = append(steps, execOf(101, "/bin/sh", "/bin/sh", "-i"), vforkOf(100, 101))
	vs := runOrdered(t, e, 1, 1e9, steps)
	if !contains(rules(vs), "reverse-shell") {
		t.Errorf("python's reverse shell through vfork: %v, want reverse-shell", rules(vs))
	}
	seen := map[string]bool{}
	for _, r := range rules(vs) {
		if seen[r] {
			t.Errorf("%s twice (the exec judged once more, not every rule twice): %v", r, rules(vs))
		}
		seen[r] = true
	}

	// the same vfork order for a benign spawn: nothing
	benign := append([]rstep{execOf(200, "/usr/bin/python3")}, sock(200)...)
	benign = append(benign, execOf(201, "/usr/bin/git", "git", "status"), vforkOf(200, 201))
	if vs := runOrdered(t, e, 2, 1e9, benign); len(vs) > 0 {
		t.Errorf("benign vfork child: %v", rules(vs))
	}

	// a web shell from a Java server: the JVM's jspawnhelper spawns by vfork
	web := []rstep{execOf(300, "/usr/bin/java"), sys(300, "accept4", func(e *event.Event) { e.Ret = 5 }),
		execOf(301, "/bin/sh", "sh", "-c", "id"), vforkOf(300, 301)}
	if vs := runOrdered(t, e, 3, 1e9, web); !contains(rules(vs), "server-spawns-shell") {
		t.Errorf("shell spawned by vfork from a server: %v, want server-spawns-shell", rules(vs))
	}
}

// TestUidsAfterExec: an exec may be of a set-user-ID file, so a user's
// sudo is root from its exec on (setuid-root-attempt stays quiet when it
// takes root), while a user's own program asking for root still fires.
func TestUidsAfterExec(t *testing.T) {
	e := newEngine(t, Config{})
	resuid := func(pid uint32) rstep {
		return sys(pid, "setresuid", func(e *event.Event) { e.Args[0], e.Args[1], e.Args[2] = 0, 0, 0 })
	}
	sudo := []rstep{execOf(100, "/usr/bin/bash"), uidIs(100, 1000), sys(100, "getuid", func(e *event.Event) { e.Ret = 1000 }),
		forkOf(100, 101), execOf(101, "/usr/bin/sudo", "sudo", "id"), resuid(101)}
	for _, v := range runOrdered(t, e, 1, 1e9, sudo) {
		if v.Rule == "setuid-root-attempt" {
			t.Errorf("sudo by a user: %s", v.Message)
		}
	}
	// the uids the exec left unknown are learnt again from geteuid
	exploit := []rstep{execOf(200, "/usr/bin/bash"), uidIs(200, 1000), forkOf(200, 201), execOf(201, "/tmp/x/exploit"),
		uidIs(201, 1000), resuid(201)}
	if vs := runOrdered(t, e, 2, 1e9, exploit); !contains(rules(vs), "setuid-root-attempt") {
		t.Errorf("a user's program becoming root: %v, want setuid-root-attempt", rules(vs))
	}
}

// TestPidReuseForgetsTheOldProcess: a process whose exit record was lost
// leaves its state under its pid; a new process forked under that pid
// must not inherit its uids or executable.
func TestPidReuseForgetsTheOldProcess(t *testing.T) {
	for _, tc := range []struct {
		name string
		old  []rstep // the earlier process of pid 300 (exit lost)
	}{
		{"forked earlier", []rstep{execOf(100, "/usr/bin/bash"), uidIs(100, 1000), forkOf(100, 300), execOf(300, "/usr/bin/app"), uidIs(300, 1000)}},
		{"seen long before", []rstep{execOf(300, "/usr/bin/app"), uidIs(300, 1000)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			runOrdered(t, e, 1, 1e9, tc.old)
			// 10 s later root forks; the child takes pid 300 and calls
			// setuid(0), which root may
			now := []rstep{execOf(200, "/usr/sbin/cron"), uidIs(200, 0), forkOf(200, 300), sys(300, "setuid", func(e *event.Event) { e.Args[0] = 0 })}
			for _, v := range runOrdered(t, e, 1, 11e9, now) {
				if v.Rule == "setuid-root-attempt" {
					t.Errorf("the new process of a reused pid judged with the old one's uids: %s", v.Message)
				}
			}
		})
	}
	// a child whose own events arrive before its parent's fork returns
	// keeps what they taught (it is not an earlier process)
	e := newEngine(t, Config{})
	early := []rstep{execOf(100, "/usr/bin/bash"), uidIs(100, 0), uidIs(101, 1000), forkOf(100, 101),
		sys(101, "setuid", func(e *event.Event) { e.Args[0] = 0 })}
	if vs := runOrdered(t, e, 1, 1e9, early); !contains(rules(vs), "setuid-root-attempt") {
		t.Errorf("child seen before its fork returned lost its uids: %v", rules(vs))
	}
}

// TestStarvedSpinByExecutable: one thread spinning with almost no
// syscalls, starved to 0.3 cores, fires from a program the container runs
// under any name, and not from a system compressor or sort.
func TestStarvedSpinByExecutable(t *testing.T) {
	for _, tc := range []struct {
		exe  string
		want bool
	}{
		{"/tmp/.x/kswapd0", true},
		{"/usr/local/bin/dbus-helper", true},
		{"/usr/bin/xz", false},
		{"/usr/bin/sort", false},
		{"/usr/bin/bc", false},
	} {
		t.Run(tc.exe, func(t *testing.T) {
			e := newEngine(t, Config{})
			now := t0
			e.Observe(&event.Event{Seq: 1, Time: now, CgroupID: 3, PID: 10, TID: 10, Nr: nr(t, "execve"), Path: tc.exe, Argv: []string{tc.exe}})
			var cpu, wait uint64
			var fired []string
			for i := 0; i < 40; i++ {
				now = now.Add(250 * time.Millisecond)
				cpu += uint64(0.3 * 250e6)
				wait += uint64(0.7 * 250e6)
				e.Observe(&event.Event{Seq: uint64(i + 2), Time: now, CgroupID: 3, PID: 10, TID: 10, Nr: nr(t, "read")})
				for _, v := range e.Sample(Sample{CgroupID: 3, Time: now, CPUUsageNs: cpu, Threads: 1, CPUWaitNs: wait}) {
					fired = append(fired, v.Rule)
				}
			}
			if got := contains(fired, "cpu-starved-spin-few-syscalls"); got != tc.want {
				t.Errorf("fired %v, want cpu-starved-spin-few-syscalls %v", fired, tc.want)
			}
		})
	}
}
