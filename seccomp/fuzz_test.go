package seccomp

import (
	"encoding/json"
	"net"
	"os"
	"reflect"
	"slices"
	"testing"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"vigil.dev/vigil/internal/fuzzseed"
)

func stateSeeds() []fuzzseed.Seed {
	st := specs.ContainerProcessState{Version: specs.Version, Fds: []string{specs.SeccompFdName}, Pid: 42,
		Metadata: "m", State: specs.State{Version: specs.Version, ID: "c1", Status: specs.StateCreating, Pid: 42, Bundle: "/run/b",
			Annotations: map[string]string{"vigil.dev/seccomp": "notify"}}}
	good, _ := json.Marshal(st)
	return []fuzzseed.Seed{
		fuzzseed.S("runc", good, uint8(1), uint16(0)),
		fuzzseed.S("runc-split", good, uint8(1), uint16(17)),
		fuzzseed.S("no-fd", good, uint8(0), uint16(0)),
		fuzzseed.S("two-fds", []byte(`{"fds":["a","seccompFd"],"state":{"id":"x"}}`), uint8(2), uint16(3)),
		fuzzseed.S("not-json", []byte("seccompFd"), uint8(1), uint16(0)),
		fuzzseed.S("empty", []byte{}, uint8(0), uint16(0)),
	}
}

func rightsSeeds() []fuzzseed.Seed {
	two := append(unix.UnixRights(3), unix.UnixRights(4, 5)...)
	creds := unix.UnixCredentials(&unix.Ucred{Pid: 1, Uid: 0, Gid: 0})
	// SCM_RIGHTS with 5 bytes of data: not a whole number of fds.
	odd := unix.UnixRights(3)
	(*unix.Cmsghdr)(unsafe.Pointer(&odd[0])).SetLen(unix.CmsgLen(5))
	return []fuzzseed.Seed{
		fuzzseed.S("one", unix.UnixRights(7)),
		fuzzseed.S("two-messages", two),
		fuzzseed.S("credentials", append(creds, unix.UnixRights(9)...)),
		fuzzseed.S("odd-length", odd),
		fuzzseed.S("short", []byte{1, 2, 3}),
	}
}

// FuzzParseRights: any control message bytes parse or fail, never read
// past them; the fds parsed encode back to themselves. (The fds are only
// numbers here: they are not closed.)
func FuzzParseRights(f *testing.F) {
	f.Fuzz(func(t *testing.T, oob []byte) {
		fds, err := parseRights(oob)
		if err != nil {
			return
		}
		if len(fds)*4 > len(oob) {
			t.Fatalf("%d fds from %d bytes", len(fds), len(oob))
		}
		if len(fds) == 0 {
			return
		}
		back, err := parseRights(unix.UnixRights(fds...))
		if err != nil || !slices.Equal(back, fds) {
			t.Fatalf("fds %v encode and parse back as %v (%v)", fds, back, err)
		}
	})
}

// openFds counts this process's open fds.
func openFds(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// unixConn makes fd a *net.UnixConn (and closes fd: the conn holds a dup).
func unixConn(t *testing.T, fd int) *net.UnixConn {
	c, err := fileConn(fd)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fileConn(fd int) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), "state")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// FuzzReadState: any message runc could send (in any split) with any
// number of fds gives the state and every fd, or an error and no fd left
// open; the state read is the JSON sent.
func FuzzReadState(f *testing.F) {
	// Start the runtime's network poller now: its fds would count as leaks.
	if pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err == nil {
		unix.Close(pair[0])
		if c, err := fileConn(pair[1]); err == nil {
			c.Close()
		}
	}
	f.Fuzz(func(t *testing.T, msg []byte, nfds uint8, split uint16) {
		nfds %= 4
		if len(msg) > 64<<10 {
			return
		}
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		var rights []byte
		if nfds > 0 {
			var fds []int
			for i := 0; i < int(nfds); i++ {
				fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(fd)
				fds = append(fds, fd)
			}
			rights = unix.UnixRights(fds...)
		}
		before := openFds(t) - 2 // after the pair is closed
		cut := 0
		if len(msg) > 0 {
			cut = int(split) % (len(msg) + 1)
		}
		if err := unix.Sendmsg(pair[0], msg[:cut], rights, nil, 0); err != nil && cut > 0 {
			t.Fatal(err)
		}
		if cut < len(msg) {
			if _, err := unix.Write(pair[0], msg[cut:]); err != nil {
				t.Fatal(err)
			}
		}
		unix.Close(pair[0])
		c := unixConn(t, pair[1])
		st, fds, err := readState(c)
		c.Close()
		if err != nil {
			if n := openFds(t); n > before {
				t.Fatalf("error %v left %d fds open", err, n-before)
			}
			return
		}
		defer closeAll(fds)
		if cut > 0 && len(fds) != int(nfds) {
			t.Fatalf("sent %d fds, got %d", nfds, len(fds))
		}
		var want specs.ContainerProcessState
		if err := json.Unmarshal(msg, &want); err != nil {
			t.Fatalf("readState accepted what is not a state: %v", err)
		}
		if !reflect.DeepEqual(*st, want) {
			t.Fatalf("state %+v, want %+v", *st, want)
		}
	})
}

func TestFuzzSeeds(t *testing.T) {
	fuzzseed.Update(t, "FuzzReadState", stateSeeds())
	fuzzseed.Update(t, "FuzzParseRights", rightsSeeds())
}
