package replay

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"vigil.dev/vigil/audit"
	"vigil.dev/vigil/event"
)

// base is the wall clock of the first test event.
var base = time.Date(2026, 11, 28, 21, 0, 0, 0, time.UTC)

// call is one syscall of a test: what a process did and what came back.
type call struct {
	pid   uint32
	comm  string
	name  string // syscall name
	ret   int64
	path  string
	path2 string
	argv  []string
	addr  string // ip:port of connect
	arg0  uint64
	noret bool
}

// events turns calls into the events a tracer would have sent for the
// cgroup cg of container c: sequence numbers from 1, one ms apart.
func events(t testing.TB, cg uint64, c *event.Container, calls []call) []event.Event {
	t.Helper()
	out := make([]event.Event, len(calls))
	for i, cl := range calls {
		nr, ok := event.SyscallNr(cl.name)
		if !ok {
			t.Fatalf("no syscall %q", cl.name)
		}
		ev := event.Event{Seq: uint64(i + 1), KTime: uint64(i+1) * 1e6, Time: base.Add(time.Duration(i) * time.Millisecond),
			CgroupID: cg, Container: c, PID: cl.pid, TID: cl.pid, Comm: cl.comm, Nr: int32(nr), Ret: cl.ret,
			Path: cl.path, Path2: cl.path2, Argv: cl.argv}
		ev.Args[0] = cl.arg0
		if cl.noret {
			ev.Flags |= event.NoReturn
		}
		if cl.addr != "" {
			ap := netip.MustParseAddrPort(cl.addr)
			ev.Addr = event.Addr{Family: event.AFInet, IP: ap.Addr(), Port: ap.Port()}
		}
		out[i] = ev
	}
	return out
}

// recordTime is the time of the records other than events (the writer's
// clock), fixed so that output can be compared with golden files.
var recordTime = base.Add(time.Hour)

// writeLog makes an audit log in a temporary directory, lets fill append
// to it, closes it and returns its directory.
func writeLog(t testing.TB, fill func(w *audit.Writer)) string {
	t.Helper()
	d := t.TempDir()
	dir := filepath.Join(d, "audit")
	w, err := audit.Open(audit.Options{Dir: dir, KeyFile: audit.DefaultKeyFile(dir), Fsync: audit.FsyncNever,
		Now: func() time.Time { return recordTime }, Logf: func(format string, args ...any) { t.Logf(format, args...) }})
	if err != nil {
		t.Fatal(err)
	}
	fill(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mustAppend appends a record or fails the test.
func mustAppend(t testing.TB, w *audit.Writer, kind audit.Kind, cg uint64, id string, body any) {
	t.Helper()
	if err := w.Append(kind, cg, id, body); err != nil {
		t.Fatal(err)
	}
}

// mustAppendEvent appends an event or fails the test.
func mustAppendEvent(t testing.TB, w *audit.Writer, ev *event.Event) {
	t.Helper()
	if err := w.AppendEvent(ev); err != nil {
		t.Fatal(err)
	}
}
