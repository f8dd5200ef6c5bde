package audit

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

func TestConcurrentAppend(t *testing.T) {
	o := testOptions(t)
	o.BatchRecords = 97
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	const per = 2000
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if err := w.Append(KindAction, uint64(900+g), "", map[string]int{"g": g, "i": i}); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		m := newMix()
		ev := &event.Event{}
		for i := 0; i < 3*per; i++ {
			m.next(ev)
			if err := w.AppendEvent(ev); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, o.Dir)
	if len(recs) != 7*per {
		t.Fatalf("read %d records, want %d", len(recs), 7*per)
	}
	cseq := map[uint64]uint64{}
	next := map[uint64]int{}
	for _, r := range recs {
		cseq[r.CgroupID]++
		if r.CSeq != cseq[r.CgroupID] {
			t.Fatalf("cgroup %d: cseq %d, want %d", r.CgroupID, r.CSeq, cseq[r.CgroupID])
		}
		if r.Kind == KindAction { // each goroutine's records stay in its order
			want := fmt.Sprintf(`{"g":%d,"i":%d}`, r.CgroupID-900, next[r.CgroupID])
			if string(r.Body) != want {
				t.Fatalf("body %s, want %s", r.Body, want)
			}
			next[r.CgroupID]++
		}
	}
	if _, err := Verify(o.Dir, o.KeyFile); err != nil {
		t.Fatal(err)
	}
}

func TestFlushIntervalWritesPartialBatches(t *testing.T) {
	o := testOptions(t)
	o.FlushInterval = 20 * time.Millisecond
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < 10; i++ {
		w.Append(KindPolicy, 0, "", map[string]int{"i": i})
	}
	deadline := time.Now().Add(2 * time.Second)
	for w.Stats().Written < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("after 2s, %d of 10 records written; FlushInterval is 20ms", w.Stats().Written)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(readAll(t, o.Dir)); n != 10 {
		t.Fatalf("reader sees %d records of a running writer, want 10", n)
	}
}

func TestReopenContinuesTheStream(t *testing.T) {
	o := testOptions(t)
	var total int
	for run := 0; run < 3; run++ {
		w, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		w.Append(KindAgent, 0, "", Agent{Event: "start"})
		for i := 0; i < 10; i++ {
			w.Append(KindLifecycle, 77, "c1", Lifecycle{Event: "tick"})
		}
		if run == 1 {
			w.Forget(77) // in the open batch: takes effect after it
			w.Append(KindLifecycle, 77, "c1", Lifecycle{Event: "same batch"})
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			w.Append(KindLifecycle, 77, "c1", Lifecycle{Event: "after forget"})
		}
		w.Append(KindAgent, 0, "", Agent{Event: "stop"})
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		total += 12
		if run == 1 {
			total += 2
		}
	}
	recs := readAll(t, o.Dir)
	if len(recs) != total {
		t.Fatalf("%d records, want %d", len(recs), total)
	}
	var cs77 []uint64
	for i, r := range recs {
		if r.Index != uint64(i+1) {
			t.Fatalf("index %d at position %d", r.Index, i)
		}
		if r.CgroupID == 77 {
			cs77 = append(cs77, r.CSeq)
		}
	}
	// run 0: 1..10; run 1: 11..21, forgotten, 1; run 2 continues from the
	// recovered counter: 2..11
	want := "[1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 1 2 3 4 5 6 7 8 9 10 11]"
	if fmt.Sprint(cs77) != want {
		t.Fatalf("cgroup 77 sequence numbers %v", cs77)
	}
	rep, err := Verify(o.Dir, o.KeyFile)
	if err != nil || rep.Segments != 3 || rep.Open || rep.LossRecords != 0 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	// a writer's published head and last index are what verify ends at
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	w.Append(KindAgent, 0, "", Agent{Event: "start"})
	w.Flush()
	st := w.Stats()
	rep, err = VerifyWith(o.Dir, VerifyOptions{KeyFile: o.KeyFile, Live: true})
	if err != nil || rep.Head != st.Head || rep.LastIndex != st.LastIndex || st.LastIndex != uint64(total+1) {
		t.Fatalf("writer head %s index %d, verify head %s index %d (%v)", st.Head, st.LastIndex, rep.Head, rep.LastIndex, err)
	}
	w.Close()
}

func TestReaderFilter(t *testing.T) {
	o := writeLog(t, testOptions(t), 3000)
	all := readAll(t, o.Dir)
	mid := all[len(all)/2].Time
	late := all[len(all)*3/4].Time
	cases := []struct {
		name string
		f    Filter
	}{
		{"kinds", Filter{Kinds: []Kind{KindVerdict}}},
		{"cgroup", Filter{CgroupID: 10_007}},
		{"container prefix", Filter{ContainerID: "c0ffee02"}},
		{"since", Filter{Since: mid}},
		{"until", Filter{Until: mid}},
		{"between", Filter{Since: mid, Until: late}},
		{"syscalls", Filter{Syscalls: []int32{nrExecve, nrConnect}}},
		{"from index", Filter{FromIndex: 1234}},
		{"all of them", Filter{Kinds: []Kind{KindEvent}, ContainerID: "c0ffee01", Since: mid, Syscalls: []int32{nrOpenat}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var want []uint64
			for _, r := range all {
				if tc.f.Match(r) {
					want = append(want, r.Index)
				}
			}
			var got []uint64
			if err := Scan(o.Dir, &tc.f, func(r *Record) error { got = append(got, r.Index); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(want) == 0 || len(want) == len(all) {
				t.Fatalf("the case selects %d of %d records: not a test of the filter", len(want), len(all))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("scan selected %d records, matching all selects %d", len(got), len(want))
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	fsyncs := []struct {
		in   string
		want FsyncPolicy
		err  bool
	}{
		{"batch", FsyncBatch, false}, {"never", FsyncNever, false}, {"100ms", FsyncPolicy(100 * time.Millisecond), false},
		{"-1s", 0, true}, {"often", 0, true},
	}
	for _, tc := range fsyncs {
		t.Run("fsync "+tc.in, func(t *testing.T) {
			got, err := ParseFsync(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("ParseFsync(%q) = %v, %v", tc.in, got, err)
			}
			if err != nil && !strings.Contains(err.Error(), tc.in) {
				t.Fatalf("error %q does not name the value", err)
			}
		})
	}
	bad := []struct {
		name string
		o    Options
		want string
	}{
		{"no dir", Options{}, "Dir"},
		{"on-full", Options{Dir: "x", OnFull: "panic"}, `"panic"`},
		{"tiny segments", Options{Dir: "x", SegmentBytes: 10}, "SegmentBytes 10"},
		{"batch", Options{Dir: "x", BatchRecords: -3}, "BatchRecords -3"},
	}
	for _, tc := range bad {
		t.Run("options "+tc.name, func(t *testing.T) {
			err := tc.o.setDefaults()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
	for _, n := range KindNames() {
		k, err := ParseKind(n)
		if err != nil || k.String() != n {
			t.Fatalf("kind %s: %v %v", n, k, err)
		}
	}
	if _, err := ParseKind("verdicts"); err == nil || !strings.Contains(err.Error(), "verdict") {
		t.Fatalf("ParseKind(verdicts): %v", err)
	}
}

func TestOneWriterPerDirectory(t *testing.T) {
	o := testOptions(t)
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(o); err == nil || !strings.Contains(err.Error(), "in use by another writer") {
		t.Fatalf("a second writer: got %v, want it refused", err)
	}
	w.Close()
	w2, err := Open(o)
	if err != nil {
		t.Fatalf("open after the first writer closed: %v", err)
	}
	w2.Close()
}

func TestRotationByAge(t *testing.T) {
	o := testOptions(t)
	o.SegmentAge, o.FlushInterval = 30*time.Millisecond, 10*time.Millisecond
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		w.Append(KindPolicy, 0, "", map[string]int{"i": i})
		time.Sleep(40 * time.Millisecond)
	}
	w.Close()
	segs, _ := listSegments(o.Dir)
	if len(segs) < 2 {
		t.Fatalf("%d segments after 200ms of records with SegmentAge 30ms, want several", len(segs))
	}
	if rep, err := Verify(o.Dir, o.KeyFile); err != nil || rep.Records != 8 {
		t.Fatalf("verify: %v, %d records", err, rep.Records)
	}
}
