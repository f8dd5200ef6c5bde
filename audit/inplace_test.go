package audit

import (
	"encoding/binary"
	"strings"
	"testing"

	"vigil.dev/vigil/event"
)

// TestRecordsEncodedInPlace: records encoded in place in the batch payload
// are framed as before, each its minimal uvarint length and then its
// bytes, on both sides of the one- and two-byte lengths (records of 127
// and 128 bytes, 16,383 and 16,384), with records of other kinds between
// them, and decode back to what was appended.
func TestRecordsEncodedInPlace(t *testing.T) {
	enc := newEncoder()
	var evs []event.Event
	for _, n := range []int{0, 1, 90, 100, 105, 110, 115, 120, 130, 16300, 16370, 16380, 16390, 16400, 70000} {
		evs = append(evs, event.Event{Seq: uint64(len(evs) + 1), CgroupID: 9, PID: 4, TID: 4, Comm: "tar", Nr: 257,
			Path: strings.Repeat("p", n)})
	}
	var lens []int
	for i := range evs {
		start := len(enc.raw)
		enc.appendEvent(&evs[i])
		lens = append(lens, len(enc.raw)-start)
		if i%4 == 3 {
			enc.appendOther(KindAgent, 0, "", 5, []byte(`{"event":"x"}`))
		}
	}
	for _, r := range [][2]int{{110, 128}, {129, 150}, {16300, 16385}, {16387, 16500}} {
		found := false
		for _, l := range lens {
			found = found || (l >= r[0] && l <= r[1])
		}
		if !found {
			t.Fatalf("no event record framed in %d-%d bytes: %v", r[0], r[1], lens)
		}
	}
	// walk the framing: every length is the minimal uvarint of the record
	p := enc.raw
	records := 0
	for len(p) > 0 {
		n, k := binary.Uvarint(p)
		if k <= 0 || uint64(len(p)-k) < n {
			t.Fatalf("record %d: bad length at %d bytes from the end", records, len(p))
		}
		if k != len(binary.AppendUvarint(nil, n)) {
			t.Fatalf("record %d: length %d in %d bytes, not minimal", records, n, k)
		}
		p = p[k+int(n):]
		records++
	}
	if want := len(evs) + len(evs)/4; records != want {
		t.Fatalf("%d records framed, want %d", records, want)
	}
	var d decoder
	d.reset(enc.raw)
	got := 0
	for {
		var r Record
		done, err := d.next(&r)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		if r.Kind != KindEvent {
			continue
		}
		if !eventsEqual(&evs[got], r.Event) {
			t.Fatalf("event %d (path of %d bytes) decoded as %+v", got, len(evs[got].Path), *r.Event)
		}
		got++
	}
	if got != len(evs) {
		t.Fatalf("decoded %d events, want %d", got, len(evs))
	}
}
