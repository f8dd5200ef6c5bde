package bpf

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"testing"
	"unsafe"

	"vigil.dev/vigil/event"
)

// TestDecodeStrings: with a consumer's String the decoder makes every
// string of an event through it, from the record's bytes, and allocates
// nothing; without it, the strings are its own.
func TestDecodeStrings(t *testing.T) {
	un := []byte{1, 0}
	un = append(un, "/run/x.sock\x00"...)
	rec := record(257, 4, "probe", [2]any{byte(sPath), []byte("/etc/passwd")}, [2]any{byte(sPath2), []byte("/etc/shadow")},
		[2]any{byte(sSock), un})
	var arena []byte
	var made []string
	d := newDecoder()
	d.str = func(b []byte) string {
		arena = append(arena[:0], b...)
		s := string(arena)
		made = append(made, s)
		return s
	}
	var ev event.Event
	if !d.decode(rec, &ev) {
		t.Fatal("does not decode")
	}
	if ev.Path != "/etc/passwd" || ev.Path2 != "/etc/shadow" || ev.Addr.Path != "/run/x.sock" || ev.Comm != "probe" {
		t.Fatalf("decoded %q %q %q %q", ev.Path, ev.Path2, ev.Addr.Path, ev.Comm)
	}
	if len(made) != 3 {
		t.Errorf("String made %q, want the three strings", made)
	}

	buf := make([]byte, 0, 1<<10)
	d.str = func(b []byte) string {
		n := len(buf)
		buf = append(buf, b...)
		return unsafe.String(&buf[n], len(b))
	}
	if n := testing.AllocsPerRun(100, func() { buf = buf[:0]; d.decode(rec, &ev) }); n != 0 {
		t.Errorf("decoding with a consumer's String: %v allocations per record, want 0", n)
	}
	d.str = nil
	if n := testing.AllocsPerRun(100, func() { d.decode(rec, &ev) }); n == 0 {
		t.Error("decoding without String allocated nothing: the strings are not the decoder's own")
	}
}

// TestDecodeCommInterned: a CPU that switches between threads sends their
// comms again; the decoder gives each event its thread's comm and, once it
// has seen a name, allocates nothing for it.
func TestDecodeCommInterned(t *testing.T) {
	d := newDecoder()
	recs := []struct {
		tid  uint32
		comm string
	}{{11, "nginx"}, {12, "nginx"}, {13, "worker-2"}, {11, "nginx"}, {14, "worker-2"}}
	var bufs [][]byte
	for _, r := range recs {
		b := record(39, 0, r.comm)
		binary.LittleEndian.PutUint32(b[36:], r.tid)
		bufs = append(bufs, b)
	}
	var ev event.Event
	for i, b := range bufs {
		if !d.decode(b, &ev) || ev.Comm != recs[i].comm || ev.TID != recs[i].tid {
			t.Fatalf("record %d: tid %d comm %q, want %d %q", i, ev.TID, ev.Comm, recs[i].tid, recs[i].comm)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, b := range bufs {
			d.decode(b, &ev)
		}
	}); n != 0 {
		t.Errorf("%v allocations per round of known comms, want 0", n)
	}
	// The table is bounded.
	for i := 0; i < 2*maxComms; i++ {
		d.decode(record(39, 0, fmt.Sprintf("c%d", i)), &ev)
	}
	if len(d.comms) > maxComms {
		t.Errorf("%d comms interned, want at most %d", len(d.comms), maxComms)
	}
}

// TestDecodeIntoUsedSlot: the reader decodes into a batch's slots, which
// hold an earlier event; nothing of it may stay (the decoder clears the
// slot in place before it fills it).
func TestDecodeIntoUsedSlot(t *testing.T) {
	sin := []byte{2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}
	rich := [][]byte{
		record(59, 3, "probe", [2]any{byte(sPath), []byte("/bin/sh")}, [2]any{sArgv, []byte("sh\x00-c\x00true\x00")},
			[2]any{sEnv, []byte("LD_PRELOAD=/x.so\x00")}, [2]any{byte(sPathUser), []byte("sh")}),
		record(42, 3, "", [2]any{byte(sSock), sin}, [2]any{byte(sSockUser), sin}),
		record(435, 2, "", [2]any{sClone, binary.LittleEndian.AppendUint64(nil, 0x10000000)}),
	}
	plain := record(110, 0, "")
	for i, r := range rich {
		d := newDecoder()
		var used, fresh event.Event
		if !d.decode(r, &used) || !d.decode(plain, &used) {
			t.Fatalf("record %d does not decode", i)
		}
		if !d.decode(plain, &fresh) {
			t.Fatal("plain record does not decode")
		}
		if !reflect.DeepEqual(used, fresh) {
			t.Errorf("after record %d, the slot holds %+v, a fresh event %+v", i, used, fresh)
		}
	}
}
