package bpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"vigil.dev/vigil/internal/privtest"
)

// guardProbeEnv makes the test binary a probe client: it runs the probes
// listed in the variable (one "kind addr:port" per line), prints one result
// per line and exits, before any test runs. The guard tests start it inside
// the cgroups they guard.
const guardProbeEnv = "VIGIL_GUARD_PROBES"

func init() {
	if list := os.Getenv(guardProbeEnv); list != "" {
		for _, line := range strings.Split(list, "\n") {
			kind, dst, _ := strings.Cut(line, " ")
			fmt.Println(guardProbe(kind, netip.MustParseAddrPort(dst)))
		}
		os.Exit(0)
	}
}

// dnsQuery is a DNS query for example.com A, a realistic datagram.
var dnsQuery = []byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
	7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1}

// guardProbe tries one connect or send with raw syscalls and returns "ok" or
// the errno's name. Kinds: udp-sendto (no connect), udp-connect,
// tcp-connect, tcp-fastopen (sendto with MSG_FASTOPEN). A 4in6 address goes through an AF_INET6 socket.
func guardProbe(kind string, dst netip.AddrPort) string {
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	if dst.Addr().Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	}
	typ := unix.SOCK_DGRAM
	if strings.HasPrefix(kind, "tcp-") {
		typ = unix.SOCK_STREAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "socket: " + err.Error()
	}
	defer unix.Close(fd)
	// A blocking connect waits at most this long.
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Sec: 2})
	switch kind {
	case "udp-sendto":
		err = unix.Sendto(fd, dnsQuery, 0, sa)
	case "tcp-fastopen":
		err = unix.Sendto(fd, dnsQuery, unix.MSG_FASTOPEN, sa)
	case "udp-connect", "tcp-connect":
		err = unix.Connect(fd, sa)
		if err == nil && kind == "udp-connect" {
			_, err = unix.Write(fd, dnsQuery)
		}
	default:
		return "unknown probe " + kind
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	if err != nil {
		return err.Error()
	}
	return "ok"
}

type guardCase struct {
	kind, dst string
	want      string // result under the policy
	free      string // result without a policy
}

// runProbes runs the cases in a child process started in cg (nil: in the
// test's own cgroup) and returns the results.
func runProbes(t *testing.T, cg *Cgroup, cases []guardCase) []string {
	t.Helper()
	var lines []string
	for _, c := range cases {
		lines = append(lines, c.kind+" "+c.dst)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), guardProbeEnv+"="+strings.Join(lines, "\n"))
	if cg != nil {
		cmd.SysProcAttr = cg.SysProcAttr()
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe client: %v", err)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(got) != len(cases) {
		t.Fatalf("probe client printed %q for %d probes", out, len(cases))
	}
	return got
}

// expectProbes checks results against the cases (policy: want, else free)
// and returns how many were refused.
func expectProbes(t *testing.T, where string, cases []guardCase, got []string, policy bool) (refused uint64) {
	t.Helper()
	for i, c := range cases {
		want := c.free
		if policy {
			want = c.want
		}
		if got[i] != want {
			t.Errorf("%s: %s %s: got %s, want %s", where, c.kind, c.dst, got[i], want)
		}
		if got[i] == "EPERM" {
			refused++
		}
	}
	return refused
}

// listen opens a loopback TCP listener that accepts and closes connections.
func listen(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// attachedCount is how many programs are attached to the cgroup at each of
// the guard's hooks.
func attachedCount(t *testing.T, cg *Cgroup) []int {
	t.Helper()
	f, err := os.Open(cg.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n []int
	for _, h := range guardHooks {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: h.attach})
		if err != nil {
			t.Fatalf("query %s programs: %v", h.name, err)
		}
		n = append(n, len(res.Programs))
	}
	return n
}

func newGuardCgroup(t *testing.T, name string) *Cgroup {
	t.Helper()
	cg, err := NewCgroup(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cg.Remove(); err != nil {
			t.Error(err)
		}
	})
	return cg
}

func loadGuardT(t *testing.T, pinDir string) *Guard {
	t.Helper()
	g, err := LoadGuard(pinDir)
	if err != nil {
		t.Fatalf("load guard: %v", err) // a verifier error is printed in full
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// guardPolicy is the policy the tests set: DNS only to 127.0.0.3, no TCP
// to the listener on deniedPort, nothing to 127.0.0.4 and [::1]:9.
func guardPolicy(t *testing.T, g *Guard, id uint64, deniedPort int) {
	t.Helper()
	// A first list, replaced by the second: 127.0.0.2 must not stay allowed.
	if err := g.DenyDNSExcept(id, []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.5")}); err != nil {
		t.Fatal(err)
	}
	if err := g.DenyDNSExcept(id, []netip.Addr{netip.MustParseAddr("127.0.0.3")}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{fmt.Sprintf("127.0.0.1:%d", deniedPort), "127.0.0.4:0", "[::1]:9"} {
		if err := g.Deny(id, netip.MustParseAddrPort(d)); err != nil {
			t.Fatal(err)
		}
	}
}

func guardCases(deniedPort, openPort, closedPort int) []guardCase {
	denied := strconv.Itoa(deniedPort)
	open := strconv.Itoa(openPort)
	closed := strconv.Itoa(closedPort)
	return []guardCase{
		// DNS to a server not allowed: refused, over UDP (sendto and
		// connect), TCP, and through IPv6 sockets.
		{"udp-sendto", "127.0.0.2:53", "EPERM", "ok"},
		{"udp-connect", "127.0.0.2:53", "EPERM", "ok"},
		{"tcp-connect", "127.0.0.2:53", "EPERM", "ECONNREFUSED"},
		{"udp-sendto", "[::1]:53", "EPERM", "ok"},
		{"udp-connect", "[::1]:53", "EPERM", "ok"},
		{"tcp-connect", "[::1]:53", "EPERM", "ECONNREFUSED"},
		{"udp-sendto", "[::ffff:127.0.0.2]:53", "EPERM", "ok"},
		{"udp-connect", "[::ffff:127.0.0.2]:53", "EPERM", "ok"},
		{"udp-sendto", "127.0.0.5:53", "EPERM", "ok"}, // allowed only by the replaced list
		// DNS to the allowed server, also as 4in6.
		{"udp-sendto", "127.0.0.3:53", "ok", "ok"},
		{"udp-connect", "127.0.0.3:53", "ok", "ok"},
		{"tcp-connect", "127.0.0.3:53", "ECONNREFUSED", "ECONNREFUSED"},
		{"udp-connect", "[::ffff:127.0.0.3]:53", "ok", "ok"},
		// Not DNS: allowed.
		{"udp-sendto", "127.0.0.2:5353", "ok", "ok"},
		{"udp-sendto", "[::1]:5353", "ok", "ok"},
		// The denied listener, by IPv4 and 4in6; other ports are fine.
		{"tcp-connect", "127.0.0.1:" + denied, "EPERM", "ok"},
		{"tcp-connect", "[::ffff:127.0.0.1]:" + denied, "EPERM", "ok"},
		{"tcp-fastopen", "127.0.0.1:" + denied, "EPERM", "ok"},
		{"tcp-connect", "127.0.0.1:" + open, "ok", "ok"},
		{"tcp-connect", "127.0.0.1:" + closed, "ECONNREFUSED", "ECONNREFUSED"},
		// Every port of 127.0.0.4; one port of ::1.
		{"tcp-connect", "127.0.0.4:" + closed, "EPERM", "ECONNREFUSED"},
		{"udp-sendto", "127.0.0.4:9", "EPERM", "ok"},
		{"udp-sendto", "[::1]:9", "EPERM", "ok"},
		{"udp-sendto", "[::1]:10", "ok", "ok"},
	}
}

func TestGuard(t *testing.T) {
	privtest.Require(t)
	g := loadGuardT(t, "")
	cg := newGuardCgroup(t, fmt.Sprintf("vigil-test-guard-%d", os.Getpid()))
	sub := newGuardCgroup(t, filepath.Join(filepath.Base(cg.Path), "sub"))
	other := newGuardCgroup(t, fmt.Sprintf("vigil-test-guard-other-%d", os.Getpid()))
	deniedPort, openPort := listen(t), listen(t)
	cases := guardCases(deniedPort, openPort, closedPort(t))

	if err := g.Attach(cg.Path, cg.ID); err != nil {
		t.Fatal(err)
	}
	if err := g.Attach(cg.Path, cg.ID); err != nil { // idempotent
		t.Fatal(err)
	}
	if n := attachedCount(t, cg); !slices.Equal(n, []int{1, 1, 1, 1}) {
		t.Fatalf("programs attached per hook (connect4, connect6, sendmsg4, sendmsg6): %v, want one each", n)
	}
	if err := g.Attach(other.Path, cg.ID); err == nil {
		t.Fatal("attach with another cgroup's id: no error")
	}

	// Attached, no policy: everything is allowed.
	expectProbes(t, "attached, no policy", cases, runProbes(t, cg, cases), false)

	guardPolicy(t, g, cg.ID, deniedPort)
	refused := expectProbes(t, "guarded cgroup", cases, runProbes(t, cg, cases), true)
	refused += expectProbes(t, "sub-cgroup of the guarded cgroup", cases, runProbes(t, sub, cases), true)
	expectProbes(t, "another cgroup", cases, runProbes(t, other, cases), false)
	expectProbes(t, "the test's own cgroup", cases, runProbes(t, nil, cases), false)
	var self []string
	for _, c := range cases {
		self = append(self, guardProbe(c.kind, netip.MustParseAddrPort(c.dst)))
	}
	expectProbes(t, "the test process", cases, self, false)

	if n, err := g.Refused(cg.ID); err != nil || n != refused || refused == 0 {
		t.Errorf("refused: %d, %v; the probes saw %d EPERMs", n, err, refused)
	}
	if n, err := g.Refused(sub.ID); err != nil || n != 0 {
		t.Errorf("refused counted for the sub-cgroup: %d, %v (want them on the guarded cgroup)", n, err)
	}
	if ids, err := g.Attached(); err != nil || !slices.Equal(ids, []uint64{cg.ID}) {
		t.Errorf("attached: %v, %v; want [%d]", ids, err, cg.ID)
	}

	if err := g.Release(cg.ID); err != nil {
		t.Fatal(err)
	}
	if n := attachedCount(t, cg); !slices.Equal(n, []int{0, 0, 0, 0}) {
		t.Fatalf("programs attached per hook after release: %v, want none", n)
	}
	expectProbes(t, "released", cases, runProbes(t, cg, cases), false)
	if n, _ := g.Refused(cg.ID); n != 0 {
		t.Errorf("refused after release: %d", n)
	}
	if ids, _ := g.Attached(); len(ids) != 0 {
		t.Errorf("attached after release: %v", ids)
	}
	for name, m := range map[string]*ebpf.Map{"policy": g.objs.GuardPolicy, "dns": g.objs.GuardDnsAllowed, "deny": g.objs.GuardDeny} {
		var k, v []byte
		if it := m.Iterate(); it.Next(&k, &v) {
			t.Errorf("guard %s map not empty after release", name)
		}
	}

	// Without pinning, Close detaches.
	if err := g.Attach(cg.Path, cg.ID); err != nil {
		t.Fatal(err)
	}
	g.Close()
	if n := attachedCount(t, cg); !slices.Equal(n, []int{0, 0, 0, 0}) {
		t.Fatalf("programs attached per hook after an unpinned guard closed: %v, want none", n)
	}
}

// TestGuardPinned: a pinned guard stays in force while no agent runs, and a
// restarted agent finds its attachments, policy and counts, and releases.
func TestGuardPinned(t *testing.T) {
	privtest.Require(t)
	pin := fmt.Sprintf("/sys/fs/bpf/vigil-guard-test-%d", os.Getpid())
	t.Cleanup(func() {
		if err := UnpinGuard(pin); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin dir left behind: %v", err)
		}
	})
	cg := newGuardCgroup(t, fmt.Sprintf("vigil-test-guard-pin-%d", os.Getpid()))
	deniedPort, openPort := listen(t), listen(t)
	cases := guardCases(deniedPort, openPort, closedPort(t))

	g1 := loadGuardT(t, pin)
	if err := g1.Attach(cg.Path, cg.ID); err != nil {
		t.Fatal(err)
	}
	guardPolicy(t, g1, cg.ID, deniedPort)
	refused := expectProbes(t, "first agent", cases, runProbes(t, cg, cases), true)
	g1.Close()

	refused += expectProbes(t, "no agent", cases, runProbes(t, cg, cases), true)

	g2 := loadGuardT(t, pin)
	if ids, err := g2.Attached(); err != nil || !slices.Equal(ids, []uint64{cg.ID}) {
		t.Fatalf("restarted agent: attached %v, %v; want [%d]", ids, err, cg.ID)
	}
	if n, err := g2.Refused(cg.ID); err != nil || n != refused {
		t.Errorf("restarted agent: refused %d, %v; the probes saw %d EPERMs", n, err, refused)
	}
	if err := g2.Attach(cg.Path, cg.ID); err != nil { // idempotent across restarts
		t.Fatal(err)
	}
	if n := attachedCount(t, cg); !slices.Equal(n, []int{1, 1, 1, 1}) {
		t.Fatalf("programs attached per hook after a restart: %v, want one each", n)
	}
	expectProbes(t, "restarted agent", cases, runProbes(t, cg, cases), true)

	if err := g2.Release(cg.ID); err != nil {
		t.Fatal(err)
	}
	if n := attachedCount(t, cg); !slices.Equal(n, []int{0, 0, 0, 0}) {
		t.Fatalf("programs attached per hook after release: %v, want none", n)
	}
	expectProbes(t, "released after restart", cases, runProbes(t, cg, cases), false)
	entries, _ := os.ReadDir(pin)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "link_") {
			t.Errorf("link pin left after release: %s", e.Name())
		}
	}

	// Attached again and unpinned while no agent runs: UnpinGuard detaches.
	if err := g2.Attach(cg.Path, cg.ID); err != nil {
		t.Fatal(err)
	}
	g2.Close()
	if err := UnpinGuard(pin); err != nil {
		t.Fatal(err)
	}
	if n := attachedCount(t, cg); !slices.Equal(n, []int{0, 0, 0, 0}) {
		t.Fatalf("programs attached per hook after UnpinGuard: %v, want none", n)
	}
}

// TestGuardReplacesOtherLayout: a guard pinned with other maps (an older
// vigil) is replaced, not an error.
func TestGuardReplacesOtherLayout(t *testing.T) {
	privtest.Require(t)
	pin := fmt.Sprintf("/sys/fs/bpf/vigil-guard-test-layout-%d", os.Getpid())
	t.Cleanup(func() { UnpinGuard(pin) })
	if err := ensureBPFFS(pin); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Name: "guard_policy", Type: ebpf.Hash, KeySize: 8, ValueSize: 8, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.Pin(filepath.Join(pin, "guard_policy")); err != nil {
		t.Fatal(err)
	}
	g := loadGuardT(t, pin)
	info, err := g.objs.GuardPolicy.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.ValueSize != 4 {
		t.Fatalf("policy map value size %d: the old pinned map was kept", info.ValueSize)
	}
}

// TestGuardCost measures what the guard costs one send from a guarded
// cgroup, without and with a policy (logged, not asserted; the kernel's run
// stats add two clock reads to every run).
func TestGuardCost(t *testing.T) {
	privtest.Require(t)
	g := loadGuardT(t, "")
	cg := newGuardCgroup(t, fmt.Sprintf("vigil-test-guard-cost-%d", os.Getpid()))
	if err := g.Attach(cg.Path, cg.ID); err != nil {
		t.Fatal(err)
	}
	stats, err := EnableRunStats()
	if err != nil {
		t.Skip(err)
	}
	defer stats.Close()
	var cases []guardCase
	for i := 0; i < 2000; i++ {
		cases = append(cases, guardCase{"udp-sendto", "127.0.0.3:53", "ok", "ok"}, guardCase{"udp-sendto", "[::1]:5353", "ok", "ok"})
	}
	progs := []struct {
		name string
		prog *ebpf.Program
	}{{"sendmsg4", g.objs.GuardSendmsg4}, {"sendmsg6", g.objs.GuardSendmsg6}}
	var before [2]RunStats
	for _, policy := range []bool{false, true} {
		if policy {
			guardPolicy(t, g, cg.ID, 1)
		}
		expectProbes(t, "cost", cases, runProbes(t, cg, cases), policy)
		for i, p := range progs {
			s, err := progStats(p.prog)
			if err != nil {
				t.Fatal(err)
			}
			runs, total := s.Runs-before[i].Runs, s.Total-before[i].Total
			t.Logf("%s, policy %v: %d runs, %.0f ns/run", p.name, policy, runs, float64(total.Nanoseconds())/float64(runs))
			before[i] = s
		}
	}
}

// TestGuardReleaseRemovedCgroup: releasing a cgroup that is gone (the
// container ended first) succeeds and removes its pins and entries.
func TestGuardReleaseRemovedCgroup(t *testing.T) {
	privtest.Require(t)
	pin := fmt.Sprintf("/sys/fs/bpf/vigil-guard-test-gone-%d", os.Getpid())
	t.Cleanup(func() { UnpinGuard(pin) })
	g := loadGuardT(t, pin)
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-guard-gone-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Attach(cg.Path, cg.ID); err != nil {
		cg.Remove()
		t.Fatal(err)
	}
	if err := g.Deny(cg.ID, netip.MustParseAddrPort("127.0.0.4:0")); err != nil {
		t.Fatal(err)
	}
	if err := cg.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := g.Release(cg.ID); err != nil {
		t.Fatalf("release a removed cgroup: %v", err)
	}
	if ids, err := g.Attached(); err != nil || len(ids) != 0 {
		t.Fatalf("attached after release: %v, %v", ids, err)
	}
	var k, v []byte
	if g.objs.GuardDeny.Iterate().Next(&k, &v) {
		t.Fatal("deny entries left after release")
	}
}
