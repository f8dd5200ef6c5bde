package bpf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/privtest"
)

// TestMain fails the run when a test left pins behind (a tracer or guard
// attached to the host after the tests end), and removes them; it removes
// the test helpers the run compiled.
func TestMain(m *testing.M) {
	code := m.Run()
	// the helpers buildProbe and buildForge compiled, once per run
	for _, p := range []string{probePath, forgePath} {
		if p != "" {
			os.RemoveAll(filepath.Dir(p))
		}
	}
	pid := strconv.Itoa(os.Getpid())
	left, _ := filepath.Glob(filepath.Join(testPinParent, pid+"-*"))
	guards, _ := filepath.Glob("/sys/fs/bpf/vigil-guard-test*-" + pid)
	for _, p := range left {
		Unpin(p)
	}
	for _, p := range guards {
		UnpinGuard(p)
	}
	os.Remove(testPinParent)
	if len(left)+len(guards) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the tests left pins behind (now removed): %s\n", strings.Join(append(left, guards...), " "))
		code = 1
	}
	os.Exit(code)
}

// testPinParent holds the pin dirs of this package's tests.
const testPinParent = DefaultPinDir + "-test"

// testPinDir returns a pin dir of the test's own; when the test ends it is
// unpinned, the parent is removed once empty, and the test fails if a pin
// remains, so that no run leaves a tracer attached to the host.
func testPinDir(t *testing.T) string {
	t.Helper()
	privtest.Require(t)
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	pin := filepath.Join(testPinParent, fmt.Sprintf("%d-%s", os.Getpid(), name))
	Unpin(pin) // left by an interrupted run
	t.Cleanup(func() { unpinTestDir(t, pin) })
	return pin
}

// unpinTestDir removes a test's pins and fails the test if some remain.
func unpinTestDir(t *testing.T, pin string) {
	t.Helper()
	if err := Unpin(pin); err != nil {
		t.Errorf("unpin %s: %v", pin, err)
	}
	os.Remove(testPinParent) // fails while another test's dir is in it
	if _, err := os.Stat(pin); err == nil {
		t.Errorf("pins remain in %s after the test", pin)
	}
}

// pinnedProgs returns, per tracepoint, the id of the program the pinned
// link runs.
func pinnedProgs(t *testing.T, pin string) map[string]ebpf.ProgramID {
	t.Helper()
	out := map[string]ebpf.ProgramID{}
	for _, p := range progs {
		l, err := link.LoadPinnedLink(filepath.Join(pin, "link_"+p.name), nil)
		if err != nil {
			t.Fatalf("pinned link %s: %v", p.name, err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatalf("link info %s: %v", p.name, err)
		}
		out[p.name] = info.Program
	}
	return out
}

// loadedProgs returns, per tracepoint, the id and tag of m's own programs.
func loadedProgs(t *testing.T, m *Monitor) (map[string]ebpf.ProgramID, map[string]string) {
	t.Helper()
	ids, tags := map[string]ebpf.ProgramID{}, map[string]string{}
	for _, p := range progs {
		info, err := p.prog(&m.objs).Info()
		if err != nil {
			t.Fatalf("program info %s: %v", p.name, err)
		}
		id, ok := info.ID()
		if !ok {
			t.Fatalf("program %s: kernel gives no id", p.name)
		}
		ids[p.name], tags[p.name] = id, info.Tag
	}
	return ids, tags
}

// TestPinnedReplace: an agent whose programs differ from the pinned ones
// (another object: simulated by another pinned identity; or other settings)
// replaces them, keeps the counters, and is what runs afterwards; an agent
// with the same programs reuses them.
func TestPinnedReplace(t *testing.T) {
	pin := testPinDir(t)
	m1, err := Load(Config{PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	oldIDs, _ := loadedProgs(t, m1)
	cg, err := NewCgroup(fmt.Sprintf("vigil-test-replace-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Remove()
	if err := m1.Track(cg.ID); err != nil {
		t.Fatal(err)
	}
	run := func() {
		cmd := exec.Command(buildProbe(t), "100", "0", "/proc/self/comm", "9", "0", "0")
		cmd.SysProcAttr = cg.SysProcAttr()
		cmd.Run()
	}
	run()
	before, _ := m1.Counters(cg.ID)
	m1.Close()

	// Another vigil's object was pinned here.
	if err := pinIdentity(pin, [32]byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	m2, err := Load(Config{PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	if !m2.Reused() || len(m2.Replaced()) != len(progs) {
		t.Fatalf("reused %v, replaced %v: want the pinned counters kept and all %d programs replaced", m2.Reused(), m2.Replaced(), len(progs))
	}
	newIDs, newTags := loadedProgs(t, m2)
	for name, id := range pinnedProgs(t, pin) {
		if id != newIDs[name] {
			t.Errorf("%s: the pinned link runs program %d, want the new one %d (old %d)", name, id, newIDs[name], oldIDs[name])
		}
		prog, err := ebpf.NewProgramFromID(id)
		if err != nil {
			t.Fatalf("%s: program %d: %v", name, id, err)
		}
		info, _ := prog.Info()
		prog.Close()
		if info.Tag != newTags[name] {
			t.Errorf("%s: the program in force has tag %s, want %s", name, info.Tag, newTags[name])
		}
		// The old program is detached and, with nothing holding it, gone.
		if !eventually(func() bool { return progGone(oldIDs[name]) }) {
			t.Errorf("%s: the replaced program %d still exists", name, oldIDs[name])
		}
	}
	if id, ok := pinnedIdentity(pin); !ok || id != m2.ident {
		t.Errorf("pinned identity %x, want %x", id, m2.ident)
	}
	run()
	after, err := m2.Counters(cg.ID)
	if err != nil {
		t.Fatalf("the cgroup's counters are lost: %v", err)
	}
	if after.Seen < before.Seen+100 || after.Seen != after.Emitted+after.Dropped {
		t.Fatalf("counters before %+v after %+v: want counting to go on across the replacement", before, after)
	}
	var last uint64
	m2.Run(cancelled(), func(ev *event.Event) {
		if ev.CgroupID == cg.ID {
			last = max(last, ev.Seq)
		}
	})
	if last != after.Seen {
		t.Fatalf("last record seq %d, counters %+v: the new program's records do not carry on the sequence", last, after)
	}
	m2.Close()

	// Same object, same settings: the pinned programs stay.
	m3, err := Load(Config{PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	if !m3.Reused() || len(m3.Replaced()) != 0 {
		t.Fatalf("reused %v, replaced %v: want the pinned programs reused", m3.Reused(), m3.Replaced())
	}
	for name, id := range pinnedProgs(t, pin) {
		if id != newIDs[name] {
			t.Errorf("%s: program %d in force after a restart, want %d kept", name, id, newIDs[name])
		}
	}
	m3.Close()

	// Other settings compiled into the programs: replaced too.
	m4, err := Load(Config{PinDir: pin, WakeInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m4.Close()
	if len(m4.Replaced()) != len(progs) || m4.Identity() == m3.Identity() {
		t.Fatalf("replaced %v, identity %s (was %s): want other settings to replace the programs", m4.Replaced(), m4.Identity(), m3.Identity())
	}
}

// TestUnpinDetaches: after Unpin no pin remains and, once no Monitor holds
// them (raw tracepoint links cannot be detached from under a holder), no
// program is attached.
func TestUnpinDetaches(t *testing.T) {
	pin := testPinDir(t)
	m, err := Load(Config{PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	var links []link.ID
	for _, p := range progs {
		l, err := link.LoadPinnedLink(filepath.Join(pin, "link_"+p.name), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		links = append(links, info.ID)
	}
	m.Close() // the agent stops; the pins keep the tracer attached
	if !eventually(func() bool { return !linkGone(links[0]) }) {
		t.Fatal("the pinned tracer was detached when its Monitor closed")
	}
	if err := Unpin(pin); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin dir after Unpin: %v, want it gone", err)
	}
	for _, id := range links {
		if !eventually(func() bool { return linkGone(id) }) {
			t.Errorf("link %d still exists after Unpin", id)
		}
	}
}

// eventually polls cond for up to 2 s: the kernel frees released links
// and programs after an RCU grace period.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func linkGone(id link.ID) bool {
	l, err := link.NewFromID(id)
	if err != nil {
		return true
	}
	l.Close()
	return false
}

func progGone(id ebpf.ProgramID) bool {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return true
	}
	p.Close()
	return false
}
