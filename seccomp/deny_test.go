package seccomp

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"vigil.dev/vigil/internal/privtest"
)

// TestServerDecide: the dynamic denies win over the static Policy and the
// fallback, add up per container and syscall, survive RemovePolicy and
// SetPolicy, and go with Allow or Forget.
func TestServerDecide(t *testing.T) {
	s, err := NewServer(filepath.Join(t.TempDir(), "s.sock"), &Policy{Default: Decision{Errno: syscall.EROFS}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	allow := &Policy{Default: Decision{Allow: true}}
	const other = 1 << 20 // a number no test touches
	type want struct {
		id      string
		nr      int32
		d       Decision
		dynamic bool
	}
	steps := []struct {
		name string
		do   func()
		want []want
	}{
		{"static policy and fallback", func() { s.SetPolicy("a", allow); s.SetPolicy("b", allow) }, []want{
			{"a", unix.SYS_MKDIRAT, Decision{Allow: true}, false},
			{"c", unix.SYS_MKDIRAT, Decision{Errno: syscall.EROFS}, false},
		}},
		{"deny wins over the policy and the fallback", func() {
			s.Deny("a", []int32{unix.SYS_MKDIRAT}, syscall.EPERM)
			s.Deny("c", []int32{unix.SYS_MKDIRAT}, syscall.EACCES)
		}, []want{
			{"a", unix.SYS_MKDIRAT, Decision{Errno: syscall.EPERM}, true},
			{"a", other, Decision{Allow: true}, false},
			{"b", unix.SYS_MKDIRAT, Decision{Allow: true}, false},
			{"c", unix.SYS_MKDIRAT, Decision{Errno: syscall.EACCES}, true},
		}},
		{"denies add up; errno 0 is EPERM; a new errno replaces", func() {
			s.Deny("a", []int32{unix.SYS_UNSHARE}, 0)
			s.Deny("c", []int32{unix.SYS_MKDIRAT}, syscall.ENOSPC)
		}, []want{
			{"a", unix.SYS_MKDIRAT, Decision{Errno: syscall.EPERM}, true},
			{"a", unix.SYS_UNSHARE, Decision{Errno: syscall.EPERM}, true},
			{"c", unix.SYS_MKDIRAT, Decision{Errno: syscall.ENOSPC}, true},
		}},
		{"denies survive RemovePolicy and SetPolicy", func() { s.RemovePolicy("a"); s.SetPolicy("a", allow) }, []want{
			{"a", unix.SYS_MKDIRAT, Decision{Errno: syscall.EPERM}, true},
		}},
		{"Allow goes back to the policy", func() { s.Allow("a") }, []want{
			{"a", unix.SYS_MKDIRAT, Decision{Allow: true}, false},
			{"a", unix.SYS_UNSHARE, Decision{Allow: true}, false},
			{"c", unix.SYS_MKDIRAT, Decision{Errno: syscall.ENOSPC}, true},
		}},
		{"Forget drops policy and denies", func() { s.SetPolicy("c", allow); s.Forget("c") }, []want{
			{"c", unix.SYS_MKDIRAT, Decision{Errno: syscall.EROFS}, false},
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do()
			for _, w := range st.want {
				if d, dyn := s.decide(w.id, w.nr, nativeAuditArch); d != w.d || dyn != w.dynamic {
					t.Errorf("%s nr %d: %v dynamic=%v, want %v dynamic=%v", w.id, w.nr, d, dyn, w.d, w.dynamic)
				}
			}
		})
	}
	s.Deny("a", []int32{unix.SYS_MKDIRAT}, syscall.EPERM)
	if d, dyn := s.decide("a", unix.SYS_MKDIRAT, nativeAuditArch^1); d != (Decision{Errno: unix.ENOSYS}) || dyn {
		t.Errorf("another ABI: %v dynamic=%v, want ENOSYS from no table", d, dyn)
	}
	got := s.Denied()
	if want := map[string]map[int32]syscall.Errno{"a": {unix.SYS_MKDIRAT: syscall.EPERM}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Denied() = %v, want %v", got, want)
	}
	got["a"][unix.SYS_UNSHARE] = syscall.EPERM // a copy: no effect on the server
	if d, _ := s.decide("a", unix.SYS_UNSHARE, nativeAuditArch); d != (Decision{Allow: true}) {
		t.Errorf("writing Denied()'s copy changed the answers: %v", d)
	}
}

// requireX86 skips the tests whose filter (notifyFilter) matches x86_64's
// numbers only.
func requireX86(t *testing.T) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skipf("the test filter is x86_64's, this is %s", runtime.GOARCH)
	}
}

// TestServerDynamicDeny: a container's mkdir and mkdirat, allowed by its
// policy, fail with EPERM after Deny, on its first fd and on an exec's fd,
// while another container's still work; after Allow they work again.
func TestServerDynamicDeny(t *testing.T) {
	privtest.Require(t)
	requireX86(t)
	s, rec := startServer(t, &Policy{Default: Decision{Errno: syscall.EROFS}})
	pol := &Policy{Decisions: map[int32]Decision{unix.SYS_MKDIR: {Allow: true}, unix.SYS_MKDIRAT: {Allow: true}},
		Default: Decision{Errno: syscall.EPERM}}
	s.SetPolicy("ctr-a", pol)
	s.SetPolicy("ctr-b", pol)
	nrs := []uint32{unix.SYS_MKDIR, unix.SYS_MKDIRAT}
	fds := []string{specs.SeccompFdName}
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	count := func(id string) int {
		n := 0
		for _, note := range rec.all() {
			if note.Container == id {
				n++
			}
		}
		return n
	}

	pr, pw := io.Pipe()
	defer pw.Close()
	type result struct {
		res helperResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := runHelper(pr, s.Path(), "ctr-a", fds, nrs,
			op{"mkdir", path("a1")}, op{"mkdirat", path("a2")}, op{"wait", ""},
			op{"mkdir", path("a3")}, op{"mkdirat", path("a4")}, op{"wait", ""},
			op{"mkdir", path("a5")}, op{"mkdirat", path("a6")})
		done <- result{res, err}
	}()
	waitFor(t, "ctr-a's first two decisions", func() bool { return count("ctr-a") == 2 })

	s.Deny("ctr-a", []int32{unix.SYS_MKDIR, unix.SYS_MKDIRAT}, syscall.EPERM)
	if got := asRunc(t, s.Path(), "ctr-a", fds, nrs, op{"mkdirat", path("exec")}); got[0] != syscall.EPERM {
		t.Errorf("mkdirat on an exec's fd of the denied container: %v, want EPERM", got[0])
	}
	if got := asRunc(t, s.Path(), "ctr-b", fds, nrs, op{"mkdir", path("b1")}); got[0] != 0 {
		t.Errorf("mkdir of another container: %v, want success", got[0])
	}
	pw.Write([]byte("\n"))
	waitFor(t, "ctr-a's denied decisions", func() bool { return count("ctr-a") == 5 })

	s.Allow("ctr-a")
	pw.Write([]byte("\n"))
	pw.Close()
	var r result
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		t.Fatalf("the helper did not finish; reports %+v", rec.all())
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if want := []syscall.Errno{0, 0, 0, syscall.EPERM, syscall.EPERM, 0, 0, 0}; !reflect.DeepEqual(r.res.Errnos, want) {
		t.Errorf("ctr-a errnos %v, want %v (allowed, denied after Deny, allowed after Allow)", r.res.Errnos, want)
	}
	for name, made := range map[string]bool{"a1": true, "a2": true, "a3": false, "a4": false, "a5": true, "a6": true, "exec": false, "b1": true} {
		if _, err := os.Stat(path(name)); (err == nil) != made {
			t.Errorf("%s: exists=%v, want %v", name, err == nil, made)
		}
	}

	waitFor(t, "all decisions reported", func() bool { return len(rec.all()) == 8 })
	var denied int
	for _, n := range rec.all() {
		if n.Err != nil {
			t.Errorf("failed decision: %+v", n)
		}
		if n.Decision.Allow == n.Dynamic {
			t.Errorf("%s nr %d: %v with Dynamic=%v; only the dynamic denies deny here", n.Container, n.Nr, n.Decision, n.Dynamic)
		}
		if n.Dynamic {
			denied++
			if n.Container != "ctr-a" || n.Decision != (Decision{Errno: syscall.EPERM}) {
				t.Errorf("dynamic decision %+v, want ctr-a's EPERM", n)
			}
		}
	}
	if denied != 3 {
		t.Errorf("%d dynamic denies reported, want 3 (exec, a3, a4)", denied)
	}
	if got := s.Denied(); len(got) != 0 {
		t.Errorf("after Allow: Denied() = %v", got)
	}
}
