package seccomp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/privtest"
)

func TestStructSizes(t *testing.T) {
	// The ioctl numbers encode the size of the struct they pass (_IOWR).
	tests := []struct {
		name       string
		size, want uintptr
	}{
		{"seccomp_notif", unsafe.Sizeof(notif{}), uintptr(unix.SECCOMP_IOCTL_NOTIF_RECV >> 16 & 0x3fff)},
		{"seccomp_notif_resp", unsafe.Sizeof(notifResp{}), uintptr(unix.SECCOMP_IOCTL_NOTIF_SEND >> 16 & 0x3fff)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.size != tt.want {
				t.Errorf("%d bytes, the ioctl says %d", tt.size, tt.want)
			}
		})
	}
}

func TestResponse(t *testing.T) {
	if r := response(7, Decision{Allow: true}); r != (notifResp{ID: 7, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}) {
		t.Errorf("allow: %+v", r)
	}
	if r := response(8, Decision{Errno: syscall.EACCES}); r != (notifResp{ID: 8, Error: -int32(syscall.EACCES)}) {
		t.Errorf("deny: %+v", r)
	}
}

// notifyFilter is a raw BPF program: on x86_64, syscalls in nrs return
// SECCOMP_RET_USER_NOTIF, everything else is allowed.
func notifyFilter(nrs ...uint32) []unix.SockFilter {
	const (
		ldAbs = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
	)
	n := uint8(len(nrs))
	prog := []unix.SockFilter{
		{Code: ldAbs, K: 4}, // seccomp_data.arch
		{Code: jeq, K: unix.AUDIT_ARCH_X86_64, Jt: 0, Jf: n + 1},
		{Code: ldAbs, K: 0}, // seccomp_data.nr
	}
	for i, nr := range nrs {
		// Jump to the notify return (after the allow return) on a match.
		prog = append(prog, unix.SockFilter{Code: jeq, K: nr, Jt: n - uint8(i), Jf: 0})
	}
	return append(prog,
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW},
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_USER_NOTIF})
}

// TestMain runs the runc stand-in when the test binary is started as the
// helper (see asRunc).
func TestMain(m *testing.M) {
	if os.Getenv("VIGIL_SECCOMP_HELPER") == "1" {
		os.Exit(runcHelper())
	}
	os.Exit(m.Run())
}

// op is one syscall the helper makes under the filter.
type op struct {
	Name string // "mkdirat", "mkdir", "unshare", "rmdir", "wait"
	Path string
}

// runcHelper acts as runc: installs a filter with a new listener on its
// (locked, main) thread, sends the state and the fd to the server as runc
// does, then runs the ops and prints one errno per op (0 = success) as JSON.
func runcHelper() int {
	runtime.LockOSThread()
	var nrs []uint32
	var ops []op
	var fds []string
	json.Unmarshal([]byte(os.Getenv("HELPER_NRS")), &nrs)
	json.Unmarshal([]byte(os.Getenv("HELPER_OPS")), &ops)
	json.Unmarshal([]byte(os.Getenv("HELPER_FDS")), &fds)
	prog := notifyFilter(nrs...)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	lfd, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		fmt.Fprintln(os.Stderr, "seccomp:", errno)
		return 1
	}
	state := specs.ContainerProcessState{Version: specs.Version, Fds: fds, Pid: os.Getpid(),
		State: specs.State{ID: os.Getenv("HELPER_ID"), Status: specs.StateCreating, Pid: os.Getpid()}}
	data, _ := json.Marshal(state)
	c, err := net.Dial("unix", os.Getenv("HELPER_SOCK"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	send := []int{int(lfd)}
	if len(fds) > 1 {
		dup, _ := unix.Dup(int(lfd))
		send = []int{dup, int(lfd)}
	}
	if _, _, err := c.(*net.UnixConn).WriteMsgUnix(data, unix.UnixRights(send...), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c.Close()
	for _, fd := range send {
		unix.Close(fd)
	}
	var res helperResult
	for _, o := range ops {
		start := time.Now()
		var err error
		switch o.Name {
		case "mkdirat":
			err = unix.Mkdirat(unix.AT_FDCWD, o.Path, 0o755)
		case "mkdir": // the legacy syscall, where the ABI has it
			err = syscall.ENOSYS
			if nr, ok := event.SyscallNr("mkdir"); ok {
				p, _ := unix.BytePtrFromString(o.Path)
				if _, _, e := unix.Syscall(uintptr(nr), uintptr(unsafe.Pointer(p)), 0o755, 0); e != 0 {
					err = e
				} else {
					err = nil
				}
			}
		case "unshare":
			err = unix.Unshare(0)
		case "rmdir":
			err = unix.Unlinkat(unix.AT_FDCWD, o.Path, unix.AT_REMOVEDIR)
		case "wait": // for a line on stdin
			var b [1]byte
			unix.Read(0, b[:])
		}
		var e syscall.Errno
		errors.As(err, &e)
		res.Errnos = append(res.Errnos, e)
		res.Took = append(res.Took, time.Since(start))
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// helperResult is what the helper prints: per op, its errno (0 = success)
// and how long the syscall took.
type helperResult struct {
	Errnos []syscall.Errno
	Took   []time.Duration
}

// asRunc runs the helper process against the server socket and returns the
// errno of each op.
func asRunc(t *testing.T, sock, id string, fds []string, nrs []uint32, ops ...op) []syscall.Errno {
	t.Helper()
	return asRuncIn(t, nil, sock, id, fds, nrs, ops...)
}

// asRuncIn is asRunc with the helper's standard input (for "wait" ops).
func asRuncIn(t *testing.T, stdin io.Reader, sock, id string, fds []string, nrs []uint32, ops ...op) []syscall.Errno {
	t.Helper()
	return asRuncTimed(t, stdin, sock, id, fds, nrs, ops...).Errnos
}

// asRuncTimed is asRuncIn that also returns how long each op took.
func asRuncTimed(t *testing.T, stdin io.Reader, sock, id string, fds []string, nrs []uint32, ops ...op) helperResult {
	t.Helper()
	res, err := runHelper(stdin, sock, id, fds, nrs, ops...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// runHelper runs the helper (see asRunc); it may be called off the test's
// goroutine.
func runHelper(stdin io.Reader, sock, id string, fds []string, nrs []uint32, ops ...op) (helperResult, error) {
	enc := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	// With a stdin that is not a file, Wait returns only once the caller
	// closes it (the copy to the helper cannot be interrupted).
	cmd.Env = append(os.Environ(), "VIGIL_SECCOMP_HELPER=1", "HELPER_SOCK="+sock, "HELPER_ID="+id,
		"HELPER_FDS="+enc(fds), "HELPER_NRS="+enc(nrs), "HELPER_OPS="+enc(ops))
	cmd.Stderr = os.Stderr
	cmd.Stdin = stdin
	out, err := cmd.Output()
	if ctx.Err() != nil {
		return helperResult{}, errors.New("helper blocked: no answer from the server")
	}
	if err != nil {
		return helperResult{}, fmt.Errorf("helper: %w", err)
	}
	var res helperResult
	if err := json.Unmarshal(out, &res); err != nil || len(res.Errnos) != len(ops) || len(res.Took) != len(ops) {
		return helperResult{}, fmt.Errorf("helper output %q: %v", out, err)
	}
	return res, nil
}

type recorder struct {
	mu    sync.Mutex
	notes []Notification
}

func (r *recorder) add(n Notification) { r.mu.Lock(); r.notes = append(r.notes, n); r.mu.Unlock() }
func (r *recorder) all() []Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Notification(nil), r.notes...)
}

func startServer(t *testing.T, fallback *Policy) (*Server, *recorder) {
	t.Helper()
	rec := &recorder{}
	s, err := NewServer(filepath.Join(t.TempDir(), "run", "seccomp.sock"), fallback, rec.add)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s, rec
}

func TestServerAnswersFromPolicy(t *testing.T) {
	privtest.Require(t)
	allowAll := &Policy{Default: Decision{Allow: true}}
	s, rec := startServer(t, allowAll)
	if fi, err := os.Stat(s.Path()); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %v, %v; want a 0600 socket", fi.Mode(), err)
	}
	s.SetPolicy("ctr-1", &Policy{
		Decisions: map[int32]Decision{unix.SYS_MKDIRAT: {Allow: true}, unix.SYS_UNSHARE: {Errno: syscall.EACCES}},
		Default:   Decision{Errno: syscall.EPERM},
	})
	dir := t.TempDir()
	made := filepath.Join(dir, "made")
	res := asRunc(t, s.Path(), "ctr-1", []string{specs.SeccompFdName}, []uint32{unix.SYS_MKDIRAT, unix.SYS_UNSHARE, unix.SYS_UNLINKAT},
		op{"mkdirat", made}, op{"unshare", ""}, op{"rmdir", made})
	if want := []syscall.Errno{0, syscall.EACCES, syscall.EPERM}; !reflect.DeepEqual(res, want) {
		t.Errorf("errnos %v, want %v (mkdirat allowed, unshare EACCES from the policy, unlinkat EPERM by default)", res, want)
	}
	if _, err := os.Stat(made); err != nil {
		t.Errorf("allowed mkdirat did not happen: %v", err)
	}
	// The server reports a decision after sending it (the report carries
	// the send's outcome), so the last report may trail the caller's answer.
	waitFor(t, "three decisions reported", func() bool { return len(rec.all()) >= 3 })
	notes := rec.all()
	want := []struct {
		nr int32
		d  Decision
	}{{unix.SYS_MKDIRAT, Decision{Allow: true}}, {unix.SYS_UNSHARE, Decision{Errno: syscall.EACCES}}, {unix.SYS_UNLINKAT, Decision{Errno: syscall.EPERM}}}
	if len(notes) != len(want) {
		t.Fatalf("%d notifications reported, want %d: %+v", len(notes), len(want), notes)
	}
	for i, w := range want {
		n := notes[i]
		if n.Nr != w.nr || n.Decision != w.d || n.Container != "ctr-1" || n.Err != nil || n.PID == 0 {
			t.Errorf("notification %d: %+v, want nr %d %v", i, n, w.nr, w.d)
		}
	}
	if notes[0].Args[0] != uint64(0xffffff9c) && int64(notes[0].Args[0]) != unix.AT_FDCWD {
		t.Errorf("mkdirat arg0 = %#x, want AT_FDCWD", notes[0].Args[0])
	}
	waitFor(t, "notify fd closed after its process exited", func() bool { open, _, _ := s.Stats(); return open == 0 })
	if _, accepted, decisions := s.Stats(); accepted != 1 || decisions != 3 {
		t.Errorf("stats: accepted %d decisions %d, want 1 and 3", accepted, decisions)
	}
}

func TestServerFallbackAndExtraFds(t *testing.T) {
	privtest.Require(t)
	s, rec := startServer(t, &Policy{Default: Decision{Errno: syscall.EROFS}})
	// Two fds, seccompFd second: the server must pick by name and close the other.
	res := asRunc(t, s.Path(), "unknown-ctr", []string{"other", specs.SeccompFdName}, []uint32{unix.SYS_MKDIRAT},
		op{"mkdirat", filepath.Join(t.TempDir(), "x")})
	if res[0] != syscall.EROFS {
		t.Errorf("mkdirat: %v, want EROFS from the fallback policy", res[0])
	}
	waitFor(t, "the decision reported", func() bool { return len(rec.all()) >= 1 })
	if n := rec.all(); len(n) != 1 || n[0].Container != "unknown-ctr" {
		t.Errorf("notifications: %+v", n)
	}
}

func TestServerSurvivesBadPeers(t *testing.T) {
	privtest.Require(t)
	s, rec := startServer(t, &Policy{Default: Decision{Allow: true}})
	for _, msg := range []string{"not json", `{"fds":["seccompFd"],"state":{"id":"x"}}`} {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(msg))
		c.Close()
	}
	waitFor(t, "two errors reported", func() bool { return len(rec.all()) == 2 })
	for _, n := range rec.all() {
		if n.Err == nil {
			t.Errorf("bad peer not reported as an error: %+v", n)
		}
	}
	// A peer that connects and sends nothing does not hold up the others.
	idle, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// Still serving.
	res := asRunc(t, s.Path(), "c", []string{specs.SeccompFdName}, []uint32{unix.SYS_MKDIRAT}, op{"mkdirat", filepath.Join(t.TempDir(), "x")})
	if res[0] != 0 {
		t.Errorf("after bad peers: mkdirat %v", res[0])
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting: %s", what)
}

// TestKeeperCarriesFdsAcrossServers: a server dies and another takes over;
// with the keeper the container's next notified syscall is answered by the
// new server, without it the kernel fails it with ENOSYS.
func TestKeeperCarriesFdsAcrossServers(t *testing.T) {
	privtest.Require(t)
	for _, withKeeper := range []bool{true, false} {
		t.Run(fmt.Sprintf("keeper=%v", withKeeper), func(t *testing.T) {
			dir := t.TempDir()
			kpath := filepath.Join(dir, "keeper.sock")
			if withKeeper {
				ctx, cancel := context.WithCancel(context.Background())
				kdone := make(chan error, 1)
				go func() { kdone <- RunKeeper(ctx, kpath) }()
				t.Cleanup(func() {
					cancel()
					if err := <-kdone; err != nil {
						t.Errorf("keeper: %v", err)
					}
				})
				waitFor(t, "keeper listening", func() bool { return KeeperRunning(kpath) })
			}
			rec1 := &recorder{}
			s1, err := NewServer(filepath.Join(dir, "s1.sock"), &Policy{Default: Decision{Errno: syscall.EROFS}}, rec1.add)
			if err != nil {
				t.Fatal(err)
			}
			if withKeeper {
				if n, err := s1.UseKeeper(kpath); err != nil || n != 0 {
					t.Fatalf("first server took %d fds from an empty keeper: %v", n, err)
				}
			}
			go s1.Serve()
			pr, pw := io.Pipe()
			res := make(chan []syscall.Errno, 1)
			go func() {
				res <- asRuncIn(t, pr, s1.Path(), "c1", []string{specs.SeccompFdName}, []uint32{unix.SYS_MKDIRAT},
					op{"mkdirat", filepath.Join(dir, "a")}, op{"wait", ""}, op{"mkdirat", filepath.Join(dir, "b")})
			}()
			waitFor(t, "the first server's answer", func() bool { return len(rec1.all()) == 1 })
			s1.Close() // the agent dies

			rec2 := &recorder{}
			s2, err := NewServer(filepath.Join(dir, "s2.sock"), &Policy{Default: Decision{Errno: syscall.EACCES}}, rec2.add)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if withKeeper {
				if n, err := s2.UseKeeper(kpath); err != nil || n != 1 {
					t.Fatalf("second server took %d fds back, want 1: %v", n, err)
				}
			}
			go s2.Serve()
			pw.Write([]byte("\n"))
			pw.Close()
			var got []syscall.Errno
			select {
			case got = <-res:
			case <-time.After(20 * time.Second):
				t.Fatal("the helper did not finish")
			}
			want := []syscall.Errno{syscall.EROFS, 0, syscall.ENOSYS}
			if withKeeper {
				want[2] = syscall.EACCES // answered by the second server
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("errnos %v, want %v", got, want)
			}
		})
	}
}

// TestKeeperCarriesPolicies: the keeper gives the next server back the
// answer table each fd was deposited with; a table rebuilt later from what
// the runtime reports (RestorePolicy) does not replace it, a new
// container's (SetPolicy) does.
func TestKeeperCarriesPolicies(t *testing.T) {
	privtest.Require(t)
	dir := t.TempDir()
	kpath := filepath.Join(dir, "keeper.sock")
	ctx, cancel := context.WithCancel(context.Background())
	kdone := make(chan error, 1)
	go func() { kdone <- RunKeeper(ctx, kpath) }()
	t.Cleanup(func() {
		cancel()
		if err := <-kdone; err != nil {
			t.Errorf("keeper: %v", err)
		}
	})
	waitFor(t, "keeper listening", func() bool { return KeeperRunning(kpath) })

	rec1 := &recorder{}
	s1, err := NewServer(filepath.Join(dir, "s1.sock"), &Policy{Default: Decision{Errno: syscall.EROFS}}, rec1.add)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.UseKeeper(kpath); err != nil {
		t.Fatal(err)
	}
	// The table the container was created with: the pod's own answer.
	created := &Policy{Decisions: map[int32]Decision{unix.SYS_MKDIRAT: {Errno: syscall.EXDEV}}, Default: Decision{Errno: syscall.ENOSYS}}
	s1.SetPolicy("c1", created)
	go s1.Serve()
	pr, pw := io.Pipe()
	res := make(chan []syscall.Errno, 1)
	go func() {
		res <- asRuncIn(t, pr, s1.Path(), "c1", []string{specs.SeccompFdName}, []uint32{unix.SYS_MKDIRAT},
			op{"mkdirat", filepath.Join(dir, "a")}, op{"wait", ""}, op{"mkdirat", filepath.Join(dir, "b")})
	}()
	waitFor(t, "the first server's answer", func() bool { return len(rec1.all()) == 1 })
	s1.Close()

	s2, err := NewServer(filepath.Join(dir, "s2.sock"), &Policy{Default: Decision{Errno: syscall.EACCES}}, (&recorder{}).add)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n, err := s2.UseKeeper(kpath); err != nil || n != 1 {
		t.Fatalf("second server took %d fds back, want 1: %v", n, err)
	}
	if got := s2.policy("c1"); !reflect.DeepEqual(got, created) {
		t.Fatalf("policy given back %+v, want %+v", got, created)
	}
	// What Synchronize rebuilds from the runtime's report does not win.
	s2.RestorePolicy("c1", &Policy{Decisions: map[int32]Decision{unix.SYS_MKDIRAT: {Allow: true}}})
	go s2.Serve()
	pw.Write([]byte("\n"))
	pw.Close()
	var got []syscall.Errno
	select {
	case got = <-res:
	case <-time.After(20 * time.Second):
		t.Fatal("the helper did not finish")
	}
	if want := []syscall.Errno{syscall.EXDEV, 0, syscall.EXDEV}; !reflect.DeepEqual(got, want) {
		t.Errorf("errnos %v, want %v (the created table's answer after the restart)", got, want)
	}
	// A container without a kept table takes the rebuilt one; a new
	// container's table replaces a kept one.
	rebuilt := &Policy{Default: Decision{Errno: syscall.EPERM}}
	s2.RestorePolicy("c2", rebuilt)
	if s2.policy("c2") != rebuilt {
		t.Error("RestorePolicy of a container the keeper had no table for was not applied")
	}
	fresh := &Policy{Default: Decision{Allow: true}}
	s2.SetPolicy("c1", fresh)
	if s2.policy("c1") != fresh {
		t.Error("SetPolicy did not replace the kept table")
	}
}

// TestKeptPolicyMessages: a table survives its keeper encoding, and one
// too large for a keeper message is left out rather than truncated.
func TestKeptPolicyMessages(t *testing.T) {
	p := &Policy{Decisions: map[int32]Decision{2: {Allow: true}, 83: {Errno: syscall.EACCES}, 272: {Errno: syscall.EPERM}},
		Default: Decision{Errno: syscall.ENOSYS}}
	data, dropped := marshalKeeperMsg(keeperMsg{Op: "put", ID: "c", Policy: keep(p)})
	if dropped != 0 {
		t.Errorf("a small table dropped (%d bytes)", dropped)
	}
	var m keeperMsg
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if got := m.Policy.policy(); !reflect.DeepEqual(got, p) {
		t.Errorf("round trip %+v, want %+v", got, p)
	}
	if keep(nil) != nil || (*keptPolicy)(nil).policy() != nil {
		t.Error("no policy should stay none")
	}
	// Entries that answer as the default does are left out.
	same := &Policy{Decisions: map[int32]Decision{}, Default: Decision{Errno: syscall.EPERM}}
	for nr := int32(0); nr < 1000; nr++ {
		same.Decisions[nr] = Decision{Errno: syscall.EPERM}
	}
	same.Decisions[59] = Decision{Allow: true}
	if k := keep(same); len(k.D) != 1 || k.policy().Decide(3) != same.Decide(3) || k.policy().Decide(59) != same.Decide(59) {
		t.Errorf("table with default answers kept as %+v", k)
	}
	big := &Policy{Decisions: map[int32]Decision{}}
	for nr := int32(0); nr < 1000; nr++ {
		big.Decisions[nr] = Decision{Errno: syscall.EPERM}
	}
	data, dropped = marshalKeeperMsg(keeperMsg{Op: "fd", ID: "c", Policy: keep(big)})
	if len(data) > keeperMsgMax || dropped <= keeperMsgMax {
		t.Fatalf("message of %d bytes (%d dropped), over %d", len(data), dropped, keeperMsgMax)
	}
	if len(data) > keeperMsgMax {
		t.Fatalf("message of %d bytes, over %d", len(data), keeperMsgMax)
	}
	m = keeperMsg{}
	if err := json.Unmarshal(data, &m); err != nil || m.Policy != nil || m.ID != "c" {
		t.Errorf("oversized table: %s (%v), want the message without it", data, err)
	}
}
