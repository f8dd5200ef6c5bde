package bpf

import (
	"encoding/binary"
	"strings"
	"testing"

	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/fuzzseed"
)

func decodeSeeds() []fuzzseed.Seed {
	sin := []byte{2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}
	sin6 := append([]byte{10, 0, 0, 53, 0, 0, 0, 0}, make([]byte, 16)...)
	sin6[len(sin6)-1] = 1
	cut := record(257, 4, "probe", [2]any{byte(sPath), []byte("/etc/passwd")})
	return []fuzzseed.Seed{
		fuzzseed.S("comm", record(110, 0, "probe")),
		fuzzseed.S("path", record(257, 4, "", [2]any{byte(sPath), []byte("/etc/passwd")})),
		fuzzseed.S("two-paths", record(82, 2, "mv", [2]any{byte(sPath), []byte("a")}, [2]any{byte(sPath2), []byte("b")})),
		fuzzseed.S("argv", record(59, 3, "sh", [2]any{byte(sPath), []byte("/bin/sh")}, [2]any{byte(sArgv), []byte("sh\x00-c\x00true\x00")})),
		fuzzseed.S("inet", record(42, 3, "", [2]any{byte(sSock), sin})),
		fuzzseed.S("inet6", record(42, 3, "", [2]any{byte(sSock), sin6})),
		fuzzseed.S("unix-abstract", record(42, 3, "", [2]any{byte(sSock), append([]byte{1, 0, 0}, "vigil"...)})),
		fuzzseed.S("cut", cut[:len(cut)-9]),
		fuzzseed.S("header-only", make([]byte, hdrSize)),
	}
}

// FuzzDecode: any bytes from the ring decode or are refused, never read
// past the record; what decodes says what the header says.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		d := newDecoder()
		var ev event.Event
		if !d.decode(b, &ev) {
			return
		}
		le := binary.LittleEndian
		if ev.KTime != le.Uint64(b[0:]) || ev.CgroupID != le.Uint64(b[8:]) || ev.Seq != le.Uint64(b[16:]) ||
			ev.PID != le.Uint32(b[32:]) || ev.TID != le.Uint32(b[36:]) || ev.Nr != int32(le.Uint32(b[40:])) {
			t.Fatalf("header fields differ from the record's: %+v", ev)
		}
		if len(ev.Comm) > 16 {
			t.Fatalf("comm of %d bytes", len(ev.Comm))
		}
		n := len(ev.Path) + len(ev.Path2) + len(ev.Comm)
		for _, a := range ev.Argv {
			n += len(a)
		}
		if n > len(b) {
			t.Fatalf("decoded %d bytes of strings from a %d-byte record", n, len(b))
		}
		// Decoding is a function of the record and the CPU's comm cache.
		var again event.Event
		if !d.decode(b, &again) || again.Path != ev.Path || again.Seq != ev.Seq || len(again.Argv) != len(ev.Argv) {
			t.Fatalf("second decode differs: %+v vs %+v", again, ev)
		}
	})
}

// FuzzRecordRoundTrip: a record written as syscalls.bpf.c writes it
// decodes to what was written.
func FuzzRecordRoundTrip(f *testing.F) {
	f.Add(int32(257), uint8(4), "probe", "/etc/passwd", "", "")
	f.Add(int32(59), uint8(3), "sh", "/bin/sh", "", "sh\x00-c\x00true\x00")
	f.Add(int32(82), uint8(2), "a-very-long-command-name", "from", "to", "")
	f.Add(int32(-1), uint8(6), "", "", "", "\x00\x00")
	f.Fuzz(func(t *testing.T, nr int32, nargs uint8, comm, path, path2, argv string) {
		nargs %= 7
		var items [][2]any
		if path != "" {
			items = append(items, [2]any{byte(sPath), []byte(path)})
		}
		if path2 != "" {
			items = append(items, [2]any{byte(sPath2), []byte(path2)})
		}
		if argv != "" {
			items = append(items, [2]any{byte(sArgv), []byte(argv)})
		}
		for _, it := range items {
			if len(it[1].([]byte)) > 0xffff {
				return // an item length is a u16
			}
		}
		d := newDecoder()
		var ev event.Event
		if !d.decode(record(nr, int(nargs), comm, items...), &ev) {
			t.Fatal("a well-formed record does not decode")
		}
		wantComm := string(cstring([]byte(comm)[:min(len(comm), 16)]))
		if comm == "" {
			wantComm = "" // no comm sent and none cached
		}
		if ev.Nr != nr || ev.Comm != wantComm || ev.Path != path || ev.Path2 != path2 {
			t.Fatalf("nr %d comm %q path %q path2 %q, want %d %q %q %q", ev.Nr, ev.Comm, ev.Path, ev.Path2, nr, wantComm, path, path2)
		}
		for i := 0; i < 6; i++ {
			want := uint64(0)
			if i < int(nargs) {
				want = uint64(i + 1)
			}
			if ev.Args[i] != want {
				t.Fatalf("arg %d = %d, want %d", i, ev.Args[i], want)
			}
		}
		if argv != "" && strings.Join(ev.Argv, "\x00") != strings.TrimSuffix(argv, "\x00") {
			t.Fatalf("argv %q from %q", ev.Argv, argv)
		}
	})
}

func TestFuzzSeeds(t *testing.T) {
	fuzzseed.Update(t, "FuzzDecode", decodeSeeds())
}
