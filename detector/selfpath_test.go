package detector

import (
	"slices"
	"testing"

	"vigil.dev/vigil/event"
)

// spelled is an open whose file the kernel names k while the process
// passed u, as the tracer records it (path, path_user, user-differs).
func spelled(pid uint32, k, u string, flags uint64) rstep {
	return rstep{"openat", func(e *event.Event) {
		e.PID, e.TID, e.Path, e.PathUser, e.Args[0], e.Args[2], e.Ret = pid, pid, k, u, 0xffffff9c, flags, 3
		if u != "" && u != k {
			e.Flags |= event.UserDiffers
		}
	}}
}

// TestSelfSpellings: a rule's exemption for the process's own /proc
// entries holds only when the kernel opened that entry, so neither an
// alias (/proc/self/root/...) nor a /proc/self prefix in front of another
// process's entry hides an open from the rules; the process's honest
// reads of its own entries stay quiet, named by the kernel with its pid.
func TestSelfSpellings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []rstep
		rule  string // the rule that must fire; "" for none of want
		quiet []string
	}{
		{"own environ", []rstep{execOf(100, "/usr/bin/cat"), spelled(100, "/proc/7/environ", "/proc/self/environ", 0)},
			"", []string{"proc-environ-read"}},
		{"own thread's environ", []rstep{execOf(100, "/usr/bin/cat"), spelled(100, "/proc/7/task/9/environ", "/proc/thread-self/environ", 0)},
			"", []string{"proc-environ-read"}},
		{"pid 1's environ through self/root", []rstep{execOf(100, "/usr/bin/cat"),
			spelled(100, "/proc/1/environ", "/proc/self/root/proc/1/environ", 0)}, "proc-environ-read", nil},
		{"pid 1's environ through thread-self/root", []rstep{execOf(100, "/usr/bin/cat"),
			spelled(100, "/proc/1/environ", "/proc/thread-self/root/proc/1/environ", 0)}, "proc-environ-read", nil},
		{"pid 1's mem through self/root", []rstep{execOf(100, "/usr/bin/python3"),
			spelled(100, "/proc/1/mem", "/proc/self/root/proc/1/mem", 2)}, "proc-memory-access", nil},
		{"another entry claimed as own", []rstep{execOf(100, "/usr/bin/cat"),
			spelled(100, "/proc/1/environ", "/proc/self/cmdline", 0)}, "proc-environ-read", nil},
		{"own mem", []rstep{execOf(100, "/usr/bin/app"), spelled(100, "/proc/7/mem", "/proc/self/mem", 2)},
			"", []string{"proc-memory-access"}},
		{"own root", []rstep{execOf(100, "/usr/bin/cat"), spelled(100, "/etc/hostname", "/proc/self/root/etc/hostname", 0)},
			"", []string{"host-root-via-proc"}},
		{"pid 1's root through self/root", []rstep{execOf(100, "/usr/bin/cat"),
			spelled(100, "/etc/shadow", "/proc/self/root/proc/1/root/etc/shadow", 0)}, "host-root-via-proc", nil},
		{"own namespace file (the kernel names none)", []rstep{execOf(100, "/usr/bin/app"),
			spelled(100, "(unreachable)/", "/proc/self/ns/net", 0)}, "", []string{"namespace-file-open"}},
		{"pid 1's namespace file through self/root", []rstep{execOf(100, "/usr/bin/app"),
			spelled(100, "(unreachable)/", "/proc/self/root/proc/1/ns/mnt", 0)}, "namespace-file-open", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			var got []string
			for _, v := range runSteps(t, e, 7000, tc.steps) {
				got = append(got, v.Rule)
			}
			if tc.rule != "" && !slices.Contains(got, tc.rule) {
				t.Errorf("%s did not fire (fired: %v)", tc.rule, got)
			}
			for _, q := range tc.quiet {
				if slices.Contains(got, q) {
					t.Errorf("%s fired on the process's own entry (fired: %v)", q, got)
				}
			}
		})
	}
}

func TestSameProcEntry(t *testing.T) {
	for _, tc := range []struct {
		k, u string
		want bool
	}{
		{"/proc/7/environ", "/proc/self/environ", true},
		{"/proc/7/task/9/environ", "/proc/thread-self/environ", true},
		{"/proc/7/environ", "/proc/thread-self/environ", false},
		{"/proc/1/environ", "/proc/self/cmdline", false},
		{"/etc/hostname", "/proc/self/root/etc/hostname", false},
		{"/proc/7/fd/3", "/proc/self/fd/3", false},
		{"/proc/x/environ", "/proc/self/environ", false},
		{"/proc/7/environ", "/proc/1/environ", false},
	} {
		if got := sameProcEntry(tc.k, tc.u); got != tc.want {
			t.Errorf("sameProcEntry(%q, %q) = %v, want %v", tc.k, tc.u, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, cwd, want string }{
		{"/proc/self/root/proc/1/environ", "", "/proc/1/environ"},
		{"/proc/self/root/proc/self/root/etc", "", "/etc"},
		{"/proc/thread-self/root", "", "/"},
		{"/proc/self/cwd/x", "/app", "/app/x"},
		{"/proc/self/cwd/x", "", "/proc/self/cwd/x"},
		{"/proc/1/root/etc", "", "/proc/1/root/etc"},
		{"/proc/self/rootfs", "", "/proc/self/rootfs"},
		{"/proc/self/cwd/x", "/proc/self/cwd", "/proc/self/cwd/x"}, // no loop
	} {
		if got := unaliasSelf(tc.in, tc.cwd); got != tc.want {
			t.Errorf("unaliasSelf(%q, %q) = %q, want %q", tc.in, tc.cwd, got, tc.want)
		}
	}
}
