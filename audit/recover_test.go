package audit

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"vigil.dev/vigil/event"
)

func TestRecovery(t *testing.T) {
	cases := []struct {
		name       string
		damage     func(t *testing.T, o Options, last string)
		wantReason string // "" : Open must refuse
		wantErr    string
	}{
		{"a segment cut inside its header", func(t *testing.T, o Options, last string) {
			b, _ := os.ReadFile(last)
			segs, _ := listSegments(o.Dir)
			next := segPath(o, segs[len(segs)-1].num+1)
			os.WriteFile(next, b[:len(fileMagic)+20], 0o600)
		}, "torn-tail", ""},
		{"zeros after the last frame", func(t *testing.T, o Options, last string) {
			f, _ := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(make([]byte, 3000))
			f.Close()
		}, "torn-tail", ""},
		{"garbage in the middle of the last segment", func(t *testing.T, o Options, last string) {
			sp := frameSpans(t, last)
			flipByte(t, last, sp[1].start+framePrefix+batchHeaderLen+3)
		}, "", "does not match its content"},
		{"a last segment signed by another key", func(t *testing.T, o Options, last string) {
			other := writeLog(t, testOptions(t), 100)
			b, _ := os.ReadFile(segPath(other, 1))
			segs, _ := listSegments(o.Dir)
			os.WriteFile(segPath(o, segs[len(segs)-1].num+1), b, 0o600)
		}, "", "not this node's key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t)
			o.BatchRecords, o.SegmentBytes = 50, 1<<20
			// a log whose writer died: no Close, so the last segment is open
			w, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			m := newMix()
			ev := &event.Event{}
			for i := 0; i < 500; i++ {
				m.next(ev)
				w.AppendEvent(ev)
			}
			w.Flush()
			w.io.Lock() // stop it as a crash would: nothing more is written
			w.mu.Lock()
			w.closed = true
			close(w.stop)
			w.lock.Close()
			w.mu.Unlock()
			w.io.Unlock()
			segs, _ := listSegments(o.Dir)
			tc.damage(t, o, segs[len(segs)-1].path)

			w2, err := Open(o)
			if tc.wantReason == "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("open: got %v, want a refusal containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			w2.Close()
			rep, err := Verify(o.Dir, o.KeyFile)
			if err != nil || rep.LossRecords != 1 {
				t.Fatalf("verify after recovery: %v, %d loss records", err, rep.LossRecords)
			}
			var loss Loss
			n := 0
			for _, r := range readAll(t, o.Dir) {
				if r.Kind == KindEvent {
					n++
				}
				if r.Kind == KindLoss {
					json.Unmarshal(r.Body, &loss)
				}
			}
			if n != 500 || loss.Reason != tc.wantReason || loss.Bytes == 0 {
				t.Fatalf("%d events survive (want 500), loss %+v (want %s with bytes)", n, loss, tc.wantReason)
			}
		})
	}
}
