package audit

import (
	"encoding/json"
	"reflect"
	"testing"

	"vigil.dev/vigil/event"
)

func eventsEqual(a, b *event.Event) bool {
	if !a.Time.Equal(b.Time) {
		return false
	}
	x, y := *a, *b
	x.Time, y.Time = b.Time, b.Time
	if (x.Container == nil) != (y.Container == nil) || x.Container != nil && !reflect.DeepEqual(*x.Container, *y.Container) {
		return false
	}
	x.Container, y.Container = nil, nil
	if len(x.Argv) == 0 && len(y.Argv) == 0 {
		x.Argv, y.Argv = nil, nil
	}
	return reflect.DeepEqual(x, y)
}

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name  string
		batch int
		seg   int64
		n     int
		comp  Compression
	}{
		{"one batch", 0, 0, 1000, ""},
		{"many batches", 64, 0, 5000, ""},
		{"many segments", 100, 8 << 10, 6000, ""},
		{"batch of one", 1, 0, 50, ""},
		{"zstd", 64, 8 << 10, 3000, CompressZstd},
		{"no compression", 64, 8 << 10, 3000, CompressNone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t)
			o.BatchRecords, o.SegmentBytes, o.Compression = tc.batch, tc.seg, tc.comp
			w, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			m := newMix()
			var want []event.Event
			ev := &event.Event{}
			for i := 0; i < tc.n; i++ {
				m.next(ev)
				want = append(want, *ev)
				if err := w.AppendEvent(ev); err != nil {
					t.Fatal(err)
				}
				if i%250 == 0 {
					if err := w.Append(KindVerdict, ev.CgroupID, ev.Container.ID, map[string]any{"id": i, "rule": "test"}); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.seg != 0 && w.Stats().Segments < 3 {
				t.Fatalf("want several segments, got %d", w.Stats().Segments)
			}
			recs := readAll(t, o.Dir)
			cseq := map[uint64]uint64{}
			var got []*event.Event
			verdicts := 0
			for i, r := range recs {
				if r.Index != uint64(i+1) {
					t.Fatalf("record %d has index %d", i, r.Index)
				}
				cseq[r.CgroupID]++
				if r.CSeq != cseq[r.CgroupID] {
					t.Fatalf("record %d: cseq %d, want %d", r.Index, r.CSeq, cseq[r.CgroupID])
				}
				switch r.Kind {
				case KindEvent:
					got = append(got, r.Event)
				case KindVerdict:
					var b struct{ ID int }
					if err := json.Unmarshal(r.Body, &b); err != nil || b.ID != verdicts*250 {
						t.Fatalf("verdict body %s, want id %d", r.Body, verdicts*250)
					}
					verdicts++
				default:
					t.Fatalf("unexpected record kind %s", r.Kind)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("read %d events, wrote %d", len(got), len(want))
			}
			for i := range want {
				if !eventsEqual(&want[i], got[i]) {
					t.Fatalf("event %d differs:\nwrote %+v\nread  %+v", i, want[i], *got[i])
				}
			}
			if rep, err := Verify(o.Dir, o.KeyFile); err != nil || rep.Records != uint64(len(recs)) {
				t.Fatalf("verify: %v (%d records, want %d)", err, rep.Records, len(recs))
			}
		})
	}
}

func TestRoundTripOddEvents(t *testing.T) {
	evs := []event.Event{
		{Seq: 1, CgroupID: 0, Comm: "", Nr: 0},
		{Seq: 2, CgroupID: 1, Path: "bad\xffutf8\n\"quoted\"", Path2: "/x", Argv: []string{"", "a b"}, Ret: -4095},
		{Seq: 1 << 62, CgroupID: 1, Args: [6]uint64{^uint64(0), 1, 0, 0, 0, 1 << 63}, Ret: 1 << 62, Flags: event.Lost, Count: 77},
		{Seq: 3, CgroupID: 1, Addr: event.Addr{Family: event.AFUnix, Path: "@abstract\x00name"}},
		{Seq: 4, CgroupID: 1, Addr: event.Addr{Family: 17}},
		{Seq: 5, CgroupID: 2, Container: &event.Container{ID: "x"}, Nr: -1},
		{Seq: 6, CgroupID: 2, Container: nil},
		{Seq: 7, CgroupID: 2, Nr: 435, CloneFlags: 0x10020000},
		{Seq: 8, CgroupID: 2, Nr: 59, Path: "/bin/ls", Argv: []string{"ls"}, Env: []string{"LD_PRELOAD=/tmp/x.so", ""}},
	}
	o := testOptions(t)
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if err := w.AppendEvent(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, o.Dir)
	if len(recs) != len(evs) {
		t.Fatalf("read %d, wrote %d", len(recs), len(evs))
	}
	for i := range evs {
		if !eventsEqual(&evs[i], recs[i].Event) {
			t.Errorf("event %d differs:\nwrote %+v\nread  %+v", i, evs[i], *recs[i].Event)
		}
	}
}

func TestAppendEventAllocatesNothing(t *testing.T) {
	o := testOptions(t)
	o.BatchRecords = 512
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	m := newMix()
	ev := &event.Event{}
	for i := 0; i < 5000; i++ { // grow buffers and the cgroup map
		m.next(ev)
		w.AppendEvent(ev)
	}
	evs := make([]event.Event, 4096)
	for i := range evs {
		m.next(&evs[i])
	}
	i := 0
	allocs := testing.AllocsPerRun(4000, func() {
		w.AppendEvent(&evs[i%len(evs)])
		i++
	})
	// A batch write every 512 events may allocate inside zstd or the
	// signature; per event that must round to zero.
	if allocs > 0.05 {
		t.Fatalf("AppendEvent allocates %.3f times per event, want 0", allocs)
	}
}
