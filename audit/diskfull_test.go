package audit

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vigil.dev/vigil/event"
	"vigil.dev/vigil/internal/privtest"
)

// smallFS mounts a 1 MiB tmpfs in a temp dir (unmounted at cleanup) and
// fills all but about free bytes of it with a file; removing that file
// gives the space back.
func smallFS(t *testing.T, free int64) (dir, filler string) {
	t.Helper()
	privtest.Require(t) // mounts a 1 MiB tmpfs to fill the disk
	dir = t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil { // lazy: a failed test may leave files open
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	filler = filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, (1<<20)-free), 0o600); err != nil {
		t.Fatalf("fill the tmpfs: %v", err)
	}
	return dir, filler
}

func TestDiskFull(t *testing.T) {
	cases := []struct {
		name      string
		policy    FullPolicy
		hold      int
		whileFull int // events appended while the disk is full
	}{
		{"count: keep running and count the loss", FullCount, 0, 3000},
		{"freeze: hold and return ErrFull", FullFreeze, 5000, 1000},
		{"freeze: hold overflows", FullFreeze, 400, 1000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, filler := smallFS(t, 160<<10)
			var alerts []string
			o := Options{Dir: filepath.Join(dir, "log"), KeyFile: filepath.Join(dir, "node.key"), BatchRecords: 100,
				SegmentBytes: 32 << 10, OnFull: tc.policy, HoldRecords: tc.hold, RetryInterval: 20 * time.Millisecond,
				FlushInterval: -1, Fsync: FsyncBatch,
				Logf: func(f string, a ...any) { alerts = append(alerts, f); t.Logf(f, a...) }}
			w, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			m := newMix()
			ev := &event.Event{}
			appended := 0
			var fullErrs int
			add := func() {
				m.next(ev)
				ev.Container = nil // keep the records small and alike
				appended++
				err := w.AppendEvent(ev)
				switch {
				case err == nil:
				case errors.Is(err, ErrFull) && tc.policy == FullFreeze:
					fullErrs++
				default:
					t.Fatalf("append %d: %v", appended, err)
				}
			}
			for i := 0; i < 200000 && !w.Full(); i++ {
				add()
			}
			if !w.Full() {
				t.Fatal("the disk never filled")
			}
			for i := 0; i < tc.whileFull; i++ {
				add()
			}
			st := w.Stats()
			switch {
			case tc.policy == FullCount && (st.Lost == 0 || fullErrs != 0):
				t.Fatalf("count: lost %d, ErrFull %d times; want a counted loss and no error", st.Lost, fullErrs)
			case tc.policy == FullFreeze && (fullErrs == 0 || st.Held == 0):
				t.Fatalf("freeze: ErrFull %d times, %d held; want ErrFull and held records", fullErrs, st.Held)
			case tc.policy == FullFreeze && tc.hold >= tc.whileFull+100 && st.Lost != 0:
				t.Fatalf("freeze with room to hold: %d lost, want 0", st.Lost)
			case tc.policy == FullFreeze && tc.hold < tc.whileFull && st.Lost == 0:
				t.Fatalf("freeze with a small hold: nothing lost, want the overflow counted")
			}
			// Space returns.
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * o.RetryInterval)
			for i := 0; i < 150; i++ {
				add()
			}
			if err := w.Flush(); err != nil {
				t.Fatalf("flush after space returned: %v", err)
			}
			if w.Full() {
				t.Fatal("still full after space returned")
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			lost := w.Stats().Lost
			if len(alerts) == 0 {
				t.Fatal("no alert was logged")
			}
			rep, err := Verify(o.Dir, o.KeyFile)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			events, recorded := 0, int64(0)
			var lastSeq = map[uint64]uint64{}
			for _, r := range readAll(t, o.Dir) {
				switch r.Kind {
				case KindEvent:
					events++
					if r.Event.Seq <= lastSeq[r.CgroupID] {
						t.Fatalf("events out of order")
					}
					lastSeq[r.CgroupID] = r.Event.Seq
				case KindLoss:
					var l Loss
					json.Unmarshal(r.Body, &l)
					recorded += l.Records
				}
			}
			// Nothing silently lost: every event is on disk or counted in a
			// loss record, and the counts agree with Stats.
			if int64(events)+recorded != int64(appended) || uint64(recorded) != lost || rep.LostRecords != recorded {
				t.Fatalf("appended %d = %d on disk + %d in loss records? Stats.Lost %d, verify counts %d", appended, events, recorded, lost, rep.LostRecords)
			}
			t.Logf("appended %d: %d on disk, %d lost and recorded, ErrFull returned %d times", appended, events, recorded, fullErrs)
		})
	}
}
