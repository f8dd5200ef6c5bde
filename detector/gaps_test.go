package detector

import (
	"slices"
	"testing"

	"vigil.dev/vigil/event"
)

// TestClone3Namespaces: clone3's flags (Event.CloneFlags, read by the
// tracer from its struct clone_args) raise the namespace rules as clone's
// arg0 does; glibc's pthread_create (clone3 with CLONE_THREAD and no
// namespace) and a plain fork through clone3 do not, and a thread is not
// taken for a process.
func TestClone3Namespaces(t *testing.T) {
	const (
		newUser = 0x10000000
		newNS   = 0x20000
		thread  = 0x3d0f00 // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
	)
	clone3 := func(flags uint64, ret int64) step {
		return step{"clone3", func(e *event.Event) { e.Args[0], e.Args[1], e.CloneFlags, e.Ret = 0x7ffc1000, 88, flags, ret }}
	}
	for _, tc := range []struct {
		name string
		step step
		want []string
	}{
		{"user namespace", clone3(newUser, 101), []string{"user-namespace"}},
		{"user namespace refused", clone3(newUser, -1), []string{"user-namespace"}},
		{"user and mount namespaces", clone3(newUser|newNS, 101), []string{"user-namespace", "namespace-change"}},
		{"the child's return (no flags of its own)", clone3(newUser|newNS, 0), nil},
		{"thread", clone3(thread, 101), nil},
		{"fork", clone3(0, 101), nil},
		{"flags not read", clone3(0, 101), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			got := run(t, e, 7, []step{tc.step})
			if r := rulesOf(got[0]); !slices.Equal(r, tc.want) {
				t.Fatalf("rules %v, want %v", r, tc.want)
			}
		})
	}
	t.Run("a thread is not a process", func(t *testing.T) {
		e := newEngine(t, Config{})
		run(t, e, 7, []step{
			{"execve", func(e *event.Event) { e.Path = "/usr/bin/app" }},
			clone3(thread, 101),
		})
		if p := e.shards[7%uint64(len(e.shards))].cgs[7].procs.get(101, false); p != nil {
			t.Fatalf("the thread 101 of a clone3 with CLONE_THREAD is tracked as a process (exe %q)", p.exe)
		}
	})
}

// TestSendmmsgResolver: a DNS query sent with sendmmsg from an unconnected
// socket (its address in the first message's msg_name) is judged as
// sendto's and sendmsg's are; to an allowed resolver, or without an
// address (a connected socket: glibc's resolver), it is not.
func TestSendmmsgResolver(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr event.Addr
		want []string
	}{
		{"foreign resolver", inet("203.0.113.7", 53), []string{"dns-unauthorized-resolver"}},
		{"metadata endpoint", inet("169.254.169.254", 80), []string{"metadata-endpoint"}},
		{"allowed resolver", inet("10.0.0.10", 53), nil},
		{"connected socket", event.Addr{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{Lists: map[string][]string{"allowed_resolvers": {"10.0.0.10"}}})
			got := run(t, e, 7, []step{{"sendmmsg", func(e *event.Event) { e.Args[0], e.Args[2], e.Ret, e.Addr = 3, 2, 2, tc.addr }}})
			if r := rulesOf(got[0]); !slices.Equal(r, tc.want) {
				t.Fatalf("rules %v, want %v", r, tc.want)
			}
		})
	}
}

// TestLoaderEnv: an exec whose environment sets LD_PRELOAD or LD_AUDIT that
// the image before it did not have raises ld-preload-env, as the command
// line form does; an inherited one (a container configured with it, its
// children), an allocator on the benign list and LD_LIBRARY_PATH do not.
func TestLoaderEnv(t *testing.T) {
	execve := func(pid uint32, path string, env ...string) step {
		return step{"execve", func(e *event.Event) { e.PID, e.TID, e.Path, e.Argv, e.Env = pid, pid, path, []string{path}, env }}
	}
	fork := func(parent, child uint32) step {
		return step{"clone", func(e *event.Event) { e.PID, e.TID, e.Args[0], e.Ret = parent, parent, 0x1200011, int64(child) }}
	}
	evil := "LD_PRELOAD=/tmp/.x/hook.so"
	for _, tc := range []struct {
		name  string
		steps []step
		want  []string // on the last step
	}{
		{"set by a shell for its child", []step{execve(100, "/bin/sh"), fork(100, 101), execve(101, "/usr/bin/id", evil)}, []string{"ld-preload-env"}},
		{"audit module", []step{execve(100, "/bin/sh"), fork(100, 101), execve(101, "/usr/bin/id", "LD_AUDIT=/dev/shm/a.so")}, []string{"ld-preload-env"}},
		{"set by the process for its next image", []step{execve(100, "/usr/bin/python3"), execve(100, "/usr/bin/id", evil)}, []string{"ld-preload-env"}},
		{"changed", []step{execve(100, "/bin/sh", "LD_PRELOAD=/opt/app/libtrace.so"), fork(100, 101), execve(101, "/usr/bin/id", evil)}, []string{"ld-preload-env"}},
		{"child exec seen before the fork", []step{execve(100, "/bin/sh"), execve(101, "/usr/bin/id", evil), fork(100, 101)}, []string{"ld-preload-env"}},
		{"the container's configuration", []step{execve(100, "/usr/bin/app", "LD_PRELOAD=/opt/app/libtrace.so")}, nil},
		{"inherited", []step{execve(100, "/bin/sh", "LD_PRELOAD=/opt/app/libtrace.so"), fork(100, 101), execve(101, "/usr/bin/id", "LD_PRELOAD=/opt/app/libtrace.so")}, nil},
		{"benign allocator", []step{execve(100, "/bin/sh"), fork(100, 101), execve(101, "/usr/bin/app", "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")}, nil},
		{"library path", []step{execve(100, "/bin/sh"), fork(100, 101), execve(101, "/usr/bin/app", "LD_LIBRARY_PATH=/opt/app/lib")}, nil},
		// A harmless entry excuses only itself.
		{"audit beside an allocator", []step{execve(100, "/bin/sh"), fork(100, 101), execve(101, "/usr/bin/id", "LD_AUDIT=/dev/shm/a.so", "LD_PRELOAD=/usr/lib/libjemalloc.so.2")}, []string{"ld-preload-env"}},
		{"cleared then set", []step{execve(100, "/bin/sh"), fork(100, 101), execve(101, "/usr/bin/id", "LD_PRELOAD=", evil)}, []string{"ld-preload-env"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			got := run(t, e, 7, tc.steps)
			if r := rulesOf(got[len(got)-1]); !slices.Equal(r, tc.want) {
				t.Fatalf("rules on the last step %v, want %v (all steps: %v)", r, tc.want, got)
			}
			for _, vs := range got[:len(got)-1] {
				if len(vs) > 0 && tc.want == nil {
					t.Fatalf("an earlier step fired %v", rulesOf(vs))
				}
			}
		})
	}
}

// TestLoaderArgvEachEntry: on the command line too, each loader entry is
// judged on its own: a harmless preload does not excuse another entry.
func TestLoaderArgvEachEntry(t *testing.T) {
	envExec := func(argv ...string) []step {
		return []step{{"execve", func(e *event.Event) {
			e.PID, e.TID, e.Path, e.Argv = 100, 100, "/usr/bin/env", append([]string{"env"}, argv...)
		}}}
	}
	for _, tc := range []struct {
		name string
		argv []string
		want []string
	}{
		{"allocator alone", []string{"LD_PRELOAD=/usr/lib/libjemalloc.so.2", "redis-server"}, nil},
		{"allocator beside an audit module", []string{"LD_PRELOAD=/usr/lib/libjemalloc.so.2", "LD_AUDIT=/tmp/x.so", "id"}, []string{"ld-preload-env"}},
		{"cleared then set", []string{"LD_PRELOAD=", "LD_PRELOAD=/tmp/.x/hook.so", "id"}, []string{"ld-preload-env"}},
		{"cleared", []string{"LD_PRELOAD=", "id"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := run(t, newEngine(t, Config{}), 7, envExec(tc.argv...))
			if r := rulesOf(got[len(got)-1]); !slices.Equal(r, tc.want) {
				t.Fatalf("rules %v, want %v", r, tc.want)
			}
		})
	}
}

// The recorded runs of the tracer-gap attacks (test/scenarios:
// clone3-userns, dns-sendmmsg, preload-env-exec) and their classes, for
// TestRecordedScenarios; loader-env is benign.
func init() {
	for name, class := range map[string]Class{
		"clone3-userns": ClassPrivesc, "dns-sendmmsg": ClassNetwork, "preload-env-exec": ClassPrivesc,
	} {
		scenarioClass[name] = class
	}
}
