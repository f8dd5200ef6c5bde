package detector

import (
	"testing"

	"vigil.dev/vigil/event"
)

// TestUserPathAsNormalize: userPath gives what normalize makes of an event
// whose Path is its PathUser, on recorded streams (the process state
// built as the engine builds it) and on spellings that need more than a
// join: "..", a symlink's target, the process's own /proc aliases, an
// unknown directory fd.
func TestUserPathAsNormalize(t *testing.T) {
	// the recorded streams with most user paths
	evs := recorded(t, "xz-parallel-starved", "gpg-sign", "root-drops-user", "strip-then-run", "entrypoint-links",
		"su-as-nobody", "proc-pid-cwd", "core-pattern-write", "proc-mem-open", "proc-environ")
	evs = append(evs, tarRmRel(t)...)
	at := func(name string, dirfd uint64, path, user string) event.Event {
		e := ev(t, 1, name, func(e *event.Event) {
			e.Args[0], e.Path, e.PathUser, e.Flags, e.Ret = dirfd, path, user, event.UserDiffers, 3
		})
		return *e
	}
	evs = append(evs,
		at("openat", atCwd, "/etc/passwd", "/proc/self/root/etc/passwd"),
		at("openat", atCwd, "/etc/passwd", "/proc/self/cwd/../etc/passwd"),
		at("openat", atCwd, "/etc/passwd", "../../etc//passwd"),
		at("openat", 3, "/etc/passwd", "passwd"),
		at("openat", 77, "/etc/passwd", "./passwd"),
		at("openat", atCwd, "/etc/passwd", "."),
		at("newfstatat", atCwd, "/etc/passwd", "./"))
	sl := *ev(t, 1, "symlinkat", func(e *event.Event) {
		e.Path, e.Path2, e.Args[1], e.PathUser, e.Flags = "/etc/shadow", "../x/link", atCwd, "../../etc/shadow", event.UserDiffers
	})
	evs = append(evs, sl)
	checked := 0
	var ps procs
	var pb pathBuf
	for i := range evs {
		e := &evs[i]
		if e.Nr < 0 || int(e.Nr) > maxNativeNr {
			continue
		}
		if e.Nr == nrChdir || e.Nr == nrOpenat {
			// set a cwd and directory fds that paths resolve against
			ps.get(e.PID, true).setCwd("/work/dir")
			ps.get(e.PID, true).writableFds().set(3, "/etc", false)
		}
		if e.PathUser != "" {
			u := *e
			u.Path = e.PathUser
			want := e.PathUser
			if n := normalize(&u, &ps, &pathBuf{}); n.changed {
				want = n.path
			}
			pb.reset()
			if got := userPath(e, &ps, &pb); got != want {
				t.Fatalf("event %d (%s, path_user %q): userPath %q, normalize %q", i, e.Name(), e.PathUser, got, want)
			}
			checked++
		}
		n := e
		if nn := normalize(e, &ps, &pb); nn.changed {
			c := *e
			c.Path, c.Path2, c.Addr.Path = nn.path, nn.path2, nn.unix
			n = &c
		}
		if procTracked[n.Nr] {
			ps.update(n)
		}
	}
	if checked < 2000 {
		t.Fatalf("only %d events with a user path checked", checked)
	}
}

// TestRelativePathsAllocateNothing: the engine resolves tar's and rm's
// paths relative to a directory fd (./f1.txt beside the kernel's path,
// unlinkat's f1.txt) without allocating.
func TestRelativePathsAllocateNothing(t *testing.T) {
	e := newEngine(t, Config{Shards: 1})
	dir := ev(t, 1, "openat", func(e *event.Event) { e.Args[0], e.Path, e.Args[2], e.Ret = atCwd, "/dev/shm/x", 0x10000, 4 })
	open := ev(t, 2, "openat", func(e *event.Event) {
		e.Args[0], e.Path, e.PathUser, e.Flags, e.Args[2], e.Ret = 4, "/dev/shm/x/f1.txt", "./f1.txt", event.UserDiffers, 0xc1, 5
	})
	closeEv := ev(t, 3, "close", func(e *event.Event) { e.Args[0] = 5 })
	unlink := ev(t, 4, "unlinkat", func(e *event.Event) { e.Args[0], e.Path = 4, "f1.txt" })
	stat := ev(t, 5, "newfstatat", func(e *event.Event) { e.Args[0], e.Path = 4, "./d/../f2.txt" })
	run := func() {
		for _, x := range []*event.Event{open, closeEv, unlink, stat} {
			if vs := e.Observe(x); len(vs) > 0 {
				t.Fatalf("verdict %s on %s", vs[0].Rule, x.Name())
			}
		}
	}
	e.Observe(dir)
	run()
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Errorf("%v allocations per openat/close/unlinkat/newfstatat", n)
	}
}
