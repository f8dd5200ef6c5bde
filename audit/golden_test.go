package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/event"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenLog writes a small log deterministically: a key from a fixed seed,
// a fixed clock, explicit flushes. Format version 1 must produce these
// exact bytes forever (or bump the version).
func goldenLog(t *testing.T, dir string) (keyFile string) {
	t.Helper()
	keyFile = filepath.Join(filepath.Dir(dir), "golden.key")
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { clock = clock.Add(time.Millisecond); return clock }
	o := Options{Dir: dir, KeyFile: keyFile, Fsync: FsyncNever, BatchRecords: 40, FlushInterval: -1, SegmentAge: -1,
		SegmentBytes: 4096, Now: now, Logf: t.Logf}
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	m := newMix()
	ev := &event.Event{}
	w.Append(KindAgent, 0, "", Agent{Event: "start", Version: "golden"})
	w.Append(KindLifecycle, 10_000, m.conts[0].ID, Lifecycle{Event: "start", ID: m.conts[0].ID, Pod: "shop-7f9c"})
	for i := 0; i < 300; i++ {
		m.next(ev)
		w.AppendEvent(ev)
		if i%97 == 0 {
			w.Append(KindVerdict, ev.CgroupID, ev.Container.ID, map[string]any{"id": fmt.Sprintf("v%d", i), "rule": "golden"})
		}
	}
	w.AppendGap(10_007, m.conts[1].ID, 77, 5)
	w.Append(KindAgent, 0, "", Agent{Event: "stop"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return keyFile
}

// render is a stable text form of every record, for the golden file.
func render(t *testing.T, dir string) []byte {
	var b bytes.Buffer
	for _, r := range readAll(t, dir) {
		fmt.Fprintf(&b, "%d %s cg=%d c=%q cs=%d seg=%d t=%s ", r.Index, r.Kind, r.CgroupID, r.ContainerID, r.CSeq, r.Segment, r.Time.UTC().Format(time.RFC3339Nano))
		if r.Event != nil {
			b.Write(r.Event.AppendJSON(nil))
		} else {
			b.Write(r.Body)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func TestGoldenFormat(t *testing.T) {
	golden := filepath.Join("testdata", "golden")
	dir := filepath.Join(t.TempDir(), "log")
	keyFile := goldenLog(t, dir)
	if *update {
		os.RemoveAll(golden)
		os.MkdirAll(golden, 0o755)
		segs, _ := listSegments(dir)
		for _, s := range segs {
			b, _ := os.ReadFile(s.path)
			os.WriteFile(filepath.Join(golden, filepath.Base(s.path)), b, 0o644)
		}
		pub, _ := LoadPublicKey(keyFile)
		WritePublicKey(filepath.Join(golden, "golden.pub"), pub)
		os.WriteFile(filepath.Join(golden, "records.txt"), render(t, dir), 0o644)
		b, _ := os.ReadFile(filepath.Join(dir, headName)) // signed at a time of its own: not compared below
		os.WriteFile(filepath.Join(golden, headName), b, 0o644)
	}
	// The same input makes the same bytes as the committed log.
	want, _ := filepath.Glob(filepath.Join(golden, segPrefix+"*"))
	got, _ := listSegments(dir)
	if len(want) < 2 || len(got) != len(want) {
		t.Fatalf("%d segments written, %d golden (run with -update after a deliberate format change)", len(got), len(want))
	}
	for i, s := range got {
		a, _ := os.ReadFile(s.path)
		b, _ := os.ReadFile(want[i])
		if !bytes.Equal(a, b) {
			t.Fatalf("segment %s differs from the golden one: the on-disk format (or the synthetic mix in bench.go, the golden input) changed: bump formatVersion and keep reading version 1, then -update", filepath.Base(s.path))
		}
	}
	// The committed log verifies with its public key and reads back as recorded.
	rep, err := Verify(golden, filepath.Join(golden, "golden.pub"))
	if err != nil || rep.Records == 0 {
		t.Fatalf("golden log: %v", err)
	}
	wantText, _ := os.ReadFile(filepath.Join(golden, "records.txt"))
	if gotText := render(t, golden); !bytes.Equal(gotText, wantText) {
		gl, wl := strings.Split(string(gotText), "\n"), strings.Split(string(wantText), "\n")
		for i := range gl {
			if i >= len(wl) || gl[i] != wl[i] {
				t.Fatalf("record line %d:\ngot  %s\nwant %s", i+1, gl[i], wl[min(i, len(wl)-1)])
			}
		}
		t.Fatalf("records differ: %d lines, want %d", len(gl), len(wl))
	}
}
