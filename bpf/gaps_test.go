package bpf

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/event"
)

// buildGaps compiles testdata/gaps.c statically into the test's temp dir.
func buildGaps(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gaps")
	if out, err := exec.Command("gcc", "-static", "-O1", "-pthread", "-o", path, "testdata/gaps.c").CombinedOutput(); err != nil {
		t.Fatalf("build gaps: gcc: %v: %s", err, out)
	}
	return path
}

// TestClone3Flags: clone3's flags live in a struct clone_args in user
// memory; the parent's record of a clone3 carries them (the child's
// return has none: the tracer does not read memory the parent may have
// reused by then), so CLONE_NEWUSER through clone3 is as visible as
// through clone. glibc's pthread_create uses clone3: its record has CLONE_THREAD.
func TestClone3Flags(t *testing.T) {
	m := loadMonitor(t, Config{})
	gaps := buildGaps(t)
	flags := uint64(unix.CLONE_NEWUSER | unix.CLONE_NEWNS)
	evs, lines, _ := tracedOutput(t, m, gaps, "clone3", strconv.FormatUint(flags, 16))
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "clone3 ") || strings.HasPrefix(lines[0], "clone3 -") {
		t.Fatalf("output %q: want the child's pid", lines)
	}
	child, _ := strconv.Atoi(strings.TrimPrefix(lines[0], "clone3 "))
	var parent, inChild int
	for _, e := range evs {
		if e.Name() != "clone3" {
			continue
		}
		if got, ok := e.CloneFlagsOf(); e.Ret != 0 && (!ok || got&^0xff != flags) {
			t.Errorf("clone3 record (ret %d): flags %#x, want %#x", e.Ret, got, flags)
		} else if e.Ret == 0 && (ok || e.CloneFlags != 0) {
			t.Errorf("clone3 record of the child: flags %#x, want none (read from memory the parent may have reused)", e.CloneFlags)
		}
		if e.CloneFlags&0xff != 0 {
			t.Errorf("clone3 record: flags %#x carry a signal: exit_signal is its own field", e.CloneFlags)
		}
		switch {
		case e.Ret == int64(child):
			parent++
		case e.Ret == 0 && e.PID == uint32(child):
			inChild++
		}
	}
	if parent != 1 || inChild != 1 {
		t.Fatalf("clone3 records: %d of the parent, %d of the child; want one each", parent, inChild)
	}

	evs, lines, _ = tracedOutput(t, m, gaps, "thread")
	if !slices.Equal(lines, []string{"thread"}) {
		t.Fatalf("output %q", lines)
	}
	var threads int
	for _, e := range evs {
		if e.Name() == "clone3" && e.Ret > 0 {
			threads++
			if e.CloneFlags&unix.CLONE_THREAD == 0 || e.CloneFlags&unix.CLONE_NEWUSER != 0 {
				t.Errorf("pthread_create's clone3: flags %#x, want CLONE_THREAD and no namespace", e.CloneFlags)
			}
		}
	}
	if threads != 1 {
		t.Fatalf("%d clone3 records of pthread_create, want 1", threads)
	}
}

// TestSendmmsgAddr: an unconnected UDP socket's sendmmsg carries its
// destination in each message's msg_name; the record has the first one's.
// A connected socket's sendmmsg (glibc's resolver connects, then sends its
// A and AAAA queries in one sendmmsg) has none: its connect has it.
func TestSendmmsgAddr(t *testing.T) {
	m := loadMonitor(t, Config{})
	gaps := buildGaps(t)
	l, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.LocalAddr().(*net.UDPAddr).Port
	want := fmt.Sprintf("127.0.0.1:%d", port)

	evs, lines, _ := tracedOutput(t, m, gaps, "sendmmsg", strconv.Itoa(port))
	if !slices.Equal(lines, []string{"sendmmsg 2"}) {
		t.Fatalf("output %q", lines)
	}
	sends := mainCalls(t, evs, "sendmmsg")
	if len(sends) != 1 || sends[0].Addr.String() != want {
		t.Fatalf("sendmmsg records %+v: want one to %s", sends, want)
	}

	evs, lines, _ = tracedOutput(t, m, gaps, "connected", strconv.Itoa(port))
	if !slices.Equal(lines, []string{"connected 2"}) {
		t.Fatalf("output %q", lines)
	}
	conns, sends := mainCalls(t, evs, "connect"), mainCalls(t, evs, "sendmmsg")
	if len(conns) != 1 || conns[0].Addr.String() != want || len(sends) != 1 || !sends[0].Addr.IsZero() {
		t.Fatalf("connect %+v, sendmmsg %+v: want the connect to %s, the sendmmsg without an address", conns, sends, want)
	}
}

// TestExecLoaderEnv: a successful exec's record carries the entries of the
// new environment that set LD_PRELOAD, LD_AUDIT or LD_LIBRARY_PATH, wherever
// they are among the others: after many entries, after a long one. Other
// variables, and names that only start alike, are not taken.
func TestExecLoaderEnv(t *testing.T) {
	m := loadMonitor(t, Config{})
	gaps := buildGaps(t)
	loader := []string{"LD_PRELOAD=/tmp/x/inject.so", "LD_AUDIT=/tmp/a.so", "LD_LIBRARY_PATH=/opt/lib"}
	many := make([]string, 300)
	for i := range many {
		many[i] = fmt.Sprintf("SERVICE_%d_PORT=tcp://10.0.0.%d:80", i, i%250)
	}
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"none", []string{"PATH=/usr/bin", "HOME=/root"}, nil},
		{"loader", append([]string{"PATH=/usr/bin"}, loader...), loader},
		{"alike", []string{"LD_PRELOAD", "LD_PRELOADX=1", "LD_BIND_NOW=1", "XLD_PRELOAD=/x.so", "LD_=1"}, nil},
		{"after many", append(many, "LD_PRELOAD=/dev/shm/p.so"), []string{"LD_PRELOAD=/dev/shm/p.so"}},
		{"after a long one", []string{"BLOB=" + strings.Repeat("x", 8000), "LD_AUDIT=/tmp/a.so"}, []string{"LD_AUDIT=/tmp/a.so"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, _, _ := tracedOutputEnv(t, m, tc.env, gaps, "nop")
			if len(evs) == 0 || evs[0].Name() != "execve" {
				t.Fatalf("no exec record")
			}
			if ev := evs[0]; !slices.Equal(ev.Env, tc.want) || ev.Flags&event.Truncated != 0 {
				t.Fatalf("exec env %q, flags %v; want %q, not truncated", ev.Env, ev.Flags, tc.want)
			}
		})
	}
	t.Run("bound", func(t *testing.T) {
		var env []string // exec.Cmd keeps one entry per name
		for i := range 600 {
			env = append(env, fmt.Sprintf("V%d=1", i))
		}
		env = append(env, "LD_PRELOAD=/dev/shm/p.so")
		evs, _, _ := tracedOutputEnv(t, m, env, gaps, "nop")
		if len(evs) == 0 || evs[0].Name() != "execve" || evs[0].Flags&event.Truncated == 0 {
			t.Fatalf("exec past the bound of entries: want its record marked truncated")
		}
	})
}
