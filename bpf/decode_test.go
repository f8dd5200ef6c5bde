package bpf

import (
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
