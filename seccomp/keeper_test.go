package seccomp

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"vigil.dev/vigil/internal/privtest"
)

// TestStalledKeeperDelaysNoAnswer: while a new container's fd waits to be
// deposited with a keeper that stopped reading, the running containers are
// answered at once; the stalled keeper is dropped after depositTimeout and
// the new container is served without it.
func TestStalledKeeperDelaysNoAnswer(t *testing.T) {
	privtest.Require(t)
	requireX86(t)
	old := depositTimeout
	depositTimeout = 2 * time.Second
	t.Cleanup(func() { depositTimeout = old })
	s, rec := startServer(t, &Policy{Default: Decision{Allow: true}})

	// A keeper that never reads: one end of a socket pair.
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(pair[1]) })
	f := os.NewFile(uintptr(pair[0]), "keeper")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	kc := fc.(*net.UnixConn)
	s.mu.Lock()
	s.keeper = kc
	s.mu.Unlock()

	dir := t.TempDir()
	nrs := []uint32{unix.SYS_MKDIRAT}
	fds := []string{specs.SeccompFdName}
	pr, pw := io.Pipe()
	defer pw.Close()
	type result struct {
		res helperResult
		err error
	}
	resA := make(chan result, 1)
	go func() {
		res, err := runHelper(pr, s.Path(), "ctr-a", fds, nrs,
			op{"mkdirat", filepath.Join(dir, "a1")}, op{"wait", ""}, op{"mkdirat", filepath.Join(dir, "a2")})
		resA <- result{res, err}
	}()
	waitFor(t, "ctr-a's first answer", func() bool { return len(rec.all()) == 1 })

	// Fill the keeper's socket: the next deposit blocks.
	for {
		_ = kc.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
		if _, _, err := kc.WriteMsgUnix([]byte{'{'}, nil, nil); err != nil {
			break
		}
	}
	resB := make(chan result, 1)
	go func() {
		res, err := runHelper(nil, s.Path(), "ctr-b", fds, nrs, op{"mkdirat", filepath.Join(dir, "b1")})
		resB <- result{res, err}
	}()
	time.Sleep(300 * time.Millisecond) // ctr-b's deposit is blocked now
	if _, accepted, _ := s.Stats(); accepted != 1 {
		t.Fatalf("%d fds served, want 1: ctr-b's deposit did not block", accepted)
	}

	pw.Write([]byte("\n"))
	pw.Close()
	ra := <-resA
	if ra.err != nil {
		t.Fatalf("ctr-a: %v", ra.err)
	}
	a := ra.res
	if a.Errnos[2] != 0 || a.Took[2] > 200*time.Millisecond {
		t.Errorf("ctr-a's mkdirat during ctr-b's deposit: %v in %v, want success in < 200ms", a.Errnos[2], a.Took[2])
	}
	rb := <-resB
	if rb.err != nil {
		t.Fatalf("ctr-b: %v", rb.err)
	}
	b := rb.res
	if len(b.Errnos) != 1 || b.Errnos[0] != 0 {
		t.Errorf("ctr-b after the keeper was dropped: %v, want success", b.Errnos)
	}
	var gone bool
	for _, n := range rec.all() {
		gone = gone || (n.Err != nil && strings.Contains(n.Err.Error(), "notify keeper gone") && n.Container == "ctr-b")
	}
	if !gone {
		t.Errorf("the dropped keeper was not reported: %+v", rec.all())
	}
	s.mu.Lock()
	k := s.keeper
	s.mu.Unlock()
	if k != nil {
		t.Error("the stalled keeper is still in use")
	}
}
